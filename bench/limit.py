"""The fastest any client could finish N requests under kie.ai's create rate limit.

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

__all__ = ["emulator_durations", "limit_seconds"]


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
