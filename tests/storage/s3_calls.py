"""Counting a boto3 client's S3 operations (shared by the storage tests)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def count_calls(client: Any) -> Counter[str]:
    """A live count of ``client``'s S3 operations by name."""
    counts: Counter[str] = Counter()

    def on_call(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call.s3", on_call)
    return counts
