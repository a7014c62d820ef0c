"""The benchmark's judging of rows and its end → stored latency from manifests."""

from __future__ import annotations

from typing import Any

from bench.report import Row, _cells, _targets
from bench.timeline import stored_latency


def row(**fields: Any) -> Row:
    values: dict[str, Any] = {
        "size": 1000,
        "contender": "dagster-kie Dagster, callbacks",
        "limit_s": 60.0,
        "wall_s": 63.0,
        "completed": 1000,
        "images_reported": 1000,
        "images_stored": 1000,
        "tasks_created": 1000,
        "rate_limited": 0,
        "polls_median": 0.0,
        "polls_mean": 0.2,
        "added_latency": 0.06,
        "cpu_s": 20.0,
        "peak_rss": 200 * 1024 * 1024,
        "returncode": 0,
        "callbacks": True,
    }
    return Row(**{**values, **fields})


def test_a_callbacks_row_is_judged_on_queries_per_task_not_on_polling() -> None:
    assert "queries≤1/task ✓" in _targets(row())
    assert "queries≤1/task ✗" in _targets(row(polls_mean=1.5))
    assert not any(mark.startswith(("polls≤3", "latency≤10%")) for mark in _targets(row()))
    assert "≤ 6.0% (end → stored)" in _cells(row())


def test_a_polling_row_is_judged_on_polls_and_latency() -> None:
    marks = _targets(row(contender="dagster-kie Dagster", callbacks=False, polls_median=3.0))
    assert "polls≤3 ✓" in marks and "latency≤10% ✓" in marks
    assert not any(mark.startswith("queries") for mark in marks)


def test_stored_latency_is_the_summed_lag_over_the_summed_durations() -> None:
    manifests = [
        {  # 4 s task, stored 0.5 s after its end
            "created_at": "2026-01-01T00:00:00+00:00",
            "completed_at": "2026-01-01T00:00:04+00:00",
            "stored_at": "2026-01-01T00:00:04.500000+00:00",
        },
        {  # 6 s task, stored 1.5 s after its end
            "created_at": "2026-01-01T00:00:00+00:00",
            "completed_at": "2026-01-01T00:00:06+00:00",
            "stored_at": "2026-01-01T00:00:07.500000+00:00",
        },
        {"created_at": "2026-01-01T00:00:00+00:00"},  # not finished: left out
    ]
    assert stored_latency(manifests) == 2.0 / 10.0
    assert stored_latency([]) is None
