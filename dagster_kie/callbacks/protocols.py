"""What the receiver needs from the task ledger (``dagster_kie.ledger.TaskLedger`` fits)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["LedgerEntryLike", "LedgerLike"]


class LedgerEntryLike(Protocol):
    """One request in the ledger."""

    @property
    def request_id(self) -> str:
        """The request's id."""
        ...

    @property
    def model(self) -> str:
        """The kie.ai model id."""
        ...

    @property
    def state(self) -> str:
        """``submitting``, ``submitted``, ``succeeded`` or ``failed``."""
        ...

    @property
    def task_id(self) -> str | None:
        """The kie.ai task id, once known."""
        ...


class LedgerLike(Protocol):
    """Reads a request's entry and records its task id."""

    def get(self, request_id: str) -> LedgerEntryLike | None:
        """The entry of ``request_id``, or ``None``."""
        ...

    def record_submitted(self, request_id: str, model: str, task_id: str) -> object:
        """Record that ``request_id`` was submitted as ``task_id``."""
        ...
