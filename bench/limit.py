"""The fastest any client could finish N requests under kie.ai's rate limits, and the least
latency any polling client could add.

Request ``i`` (0-based, in creation order) may be created at ``floor(i / create_limit) *
create_window`` at the earliest and ends ``duration_i`` later; the limit is the latest of those
ends. The durations are the ones the emulator will draw: it seeds one ``random.Random`` per task
from ``(random_seed, task sequence number)``, so we ask the emulator's own state object for them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from dagster_kie.emulator.config import EmulatorSettings
from dagster_kie.emulator.state import EmulatorState

__all__ = ["emulator_durations", "latency_floor", "limit_seconds"]


def emulator_durations(settings: EmulatorSettings, count: int, *, offset: int = 0) -> list[float]:
    """The durations of tasks ``offset + 1 .. offset + count`` of an emulator with ``settings``.

    Uses :meth:`EmulatorState.sample_duration` itself (exact when ``random_seed`` is set; without a
    seed the draws are random and these are only a sample of the same distribution).
    """
    with tempfile.TemporaryDirectory(prefix="kie-bench-limit-") as folder:
        state = EmulatorState(settings.replace(upload_dir=folder))
        for _ in range(offset):
            state.sample_duration()
        return [state.sample_duration() for _ in range(count)]


def limit_seconds(durations: Sequence[float], create_limit: int, create_window: float) -> float:
    """``max_i(floor(i / create_limit) * create_window + durations[i])`` (0 for no requests)."""
    return max(
        ((i // create_limit) * create_window + d for i, d in enumerate(durations)), default=0.0
    )


def latency_floor(
    durations: Sequence[float], create_limit: int, queries_per_second: float
) -> float | None:
    """The least added latency (Σ detection lags / Σ durations) a polling client can reach when
    requests are created ``create_limit`` at a time, as fast as the create limit allows.

    The ``n`` tasks of one window start together, alike as far as a client can tell, so it can
    do no better than poll those still running in turn with every query it has: ``n(t)`` tasks
    share ``queries_per_second``, and a task ending at ``t`` waits half a round, ``n(t) / 2q``,
    on average. With ``n(t) = n (1 - F(t))``, that is ``n / 4q`` per task, whatever the
    durations (``F`` is their distribution). Windows that overlap only share the queries more.
    Polling is still bound by its budget of polls per task; callbacks have no such floor.
    """
    total = sum(durations)
    if total <= 0 or queries_per_second <= 0:
        return None
    sizes = [
        min(create_limit, len(durations) - start)
        for start in range(0, len(durations), create_limit)
    ]
    return sum(n * n / (4.0 * queries_per_second) for n in sizes) / total
