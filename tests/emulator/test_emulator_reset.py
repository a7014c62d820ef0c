"""``EmulatorState.reset`` rewinds the seeded draws, so a reset emulator repeats itself."""

from __future__ import annotations

from dagster_kie.emulator.config import EmulatorSettings
from dagster_kie.emulator.state import EmulatorState


def _draws(state: EmulatorState) -> tuple[list[float], str]:
    return [state.sample_duration() for _ in range(5)], state.new_remix_id()


def test_reset_repeats_seeded_durations_and_ids() -> None:
    state = EmulatorState(EmulatorSettings(random_seed=7, task_duration=6.0, task_jitter=0.5))
    first = _draws(state)
    state.reset()
    assert _draws(state) == first
    assert len(set(first[0])) == 5  # really drawn, not a fixed duration


def test_reset_without_seed_keeps_drawing() -> None:
    state = EmulatorState(EmulatorSettings(random_seed=None, task_jitter=0.5))
    first = _draws(state)
    state.reset()
    assert _draws(state)[0] != first[0]
