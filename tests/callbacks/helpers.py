"""Shared helpers of the callback tests: an in-memory ledger and callback bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

MODEL = "ideogram/v3-text-to-image"
KEY = "test-webhook-key-0123456789"


@dataclass(frozen=True)
class Entry:
    """A ledger entry (the shape of ``dagster_kie.ledger.LedgerEntry``)."""

    request_id: str
    model: str
    state: str
    task_id: str | None


class FakeLedger:
    """The two ledger calls the receiver makes, in memory, with a call log."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.recorded: list[tuple[str, str, str]] = []

    def add(
        self, request_id: str, task_id: str | None, state: str = "submitted", model: str = MODEL
    ) -> None:
        self.entries[request_id] = Entry(request_id, model, state, task_id)

    def get(self, request_id: str) -> Entry | None:
        return self.entries.get(request_id)

    def record_submitted(self, request_id: str, model: str, task_id: str) -> None:
        self.recorded.append((request_id, model, task_id))
        self.entries[request_id] = replace(
            self.entries[request_id], state="submitted", task_id=task_id
        )


def record_data(task_id: str, state: str = "success", **extra: Any) -> dict[str, Any]:
    """recordInfo-shaped ``data`` of a finished task."""
    data: dict[str, Any] = {
        "taskId": task_id,
        "model": MODEL,
        "state": state,
        "param": json.dumps({"model": MODEL, "input": {"prompt": "a fox"}}),
        "resultJson": json.dumps({"resultUrls": [f"https://files.example/{task_id}/0.png"]})
        if state == "success"
        else None,
        "failCode": None if state == "success" else "500",
        "failMsg": None if state == "success" else "internal error",
        "costTime": 1200,
        "completeTime": 1_765_180_600_000,
        "createTime": 1_765_180_586_443,
        "updateTime": 1_765_180_600_000,
        "creditsConsumed": 3.5,
        "remainedCredits": 996.5,
    }
    data.update(extra)
    return data


def callback_body(task_id: str, state: str = "success", **extra: Any) -> dict[str, Any]:
    """A whole callback payload as kie.ai sends it."""
    ok = state == "success"
    return {
        "code": 200 if ok else 501,
        "msg": "Playground task completed successfully." if ok else "Playground task failed.",
        "data": record_data(task_id, state, **extra),
    }
