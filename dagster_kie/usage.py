"""What a client's calls cost, for materialization metadata (``kie.tasks``, ``kie.credits``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from dagster_kie.models import TaskRecord

__all__ = ["UsageTracker"]


@dataclass
class UsageTracker:
    """Collects task ids and credits from a client's ``on_event`` hook (thread-safe).

    The client calls it as ``tracker("task_created", task_id)`` and
    ``tracker("task_finished", record)``.
    """

    task_ids: list[str] = field(default_factory=list)
    credits: float = 0.0
    finished: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: str, value: Any) -> None:
        with self._lock:
            if event == "task_created":
                self.task_ids.append(str(value))
            elif event == "task_finished" and isinstance(value, TaskRecord):
                self.finished += 1
                if value.succeeded:
                    self.credits += value.credits_consumed or 0.0
                else:
                    self.failed += 1

    @property
    def has_usage(self) -> bool:
        """True when any task was created or finished."""
        return bool(self.task_ids or self.finished)

    def metadata(self) -> dict[str, Any]:
        """Namespaced metadata for ``add_output_metadata``."""
        return {
            "kie.tasks": len(self.task_ids),
            "kie.task_ids": self.task_ids[:200],
            "kie.tasks_finished": self.finished,
            "kie.tasks_failed": self.failed,
            "kie.credits": self.credits,
        }

    def summary(self) -> str:
        """One line for a log."""
        return (
            f"{len(self.task_ids)} tasks created, {self.finished} finished "
            f"({self.failed} failed), {self.credits:g} credits"
        )
