"""The benchmark's yardsticks: the wall-time limit and the added-latency floor."""

from __future__ import annotations

import random

import pytest

from bench.limit import latency_floor, limit_seconds


def test_the_limit_is_the_last_end_when_every_window_starts_on_time() -> None:
    # windows of 2 every 10 s: requests 0-1 at 0 s, 2-3 at 10 s, 4 at 20 s
    assert limit_seconds([5.0, 7.0, 1.0, 3.0, 2.0], 2, 10.0) == 22.0
    assert limit_seconds([30.0, 1.0, 1.0], 2, 10.0) == 30.0
    assert limit_seconds([], 2, 10.0) == 0.0


def test_the_latency_floor_is_a_quarter_round_of_each_window() -> None:
    # 200 tasks a window, 100 queries a second: a round takes 2 s, a task waits 0.5 s on average
    assert latency_floor([6.0] * 1000, 200, 100.0) == pytest.approx(0.5 / 6.0)
    # 100 tasks in one window: 0.25 s each
    assert latency_floor([6.0] * 100, 200, 100.0) == pytest.approx(0.25 / 6.0)
    # the last window is partial: (200² + 50²) / 400 task-seconds over 250 × 6 s
    assert latency_floor([6.0] * 250, 200, 100.0) == pytest.approx(106.25 / 1500.0)
    assert latency_floor([], 200, 100.0) is None


def test_round_robin_with_every_query_lands_just_above_the_floor() -> None:
    """Poll the tasks of one window in turn, 100 a second, the best a client can do for tasks
    it cannot tell apart: the lag lands a little above the floor, since a task that ended but
    was not seen yet also waits for its turn."""
    rng = random.Random(5)
    n, qps = 200, 100.0
    durations = [rng.lognormvariate(1.67, 0.5) for _ in range(n)]
    pending = sorted(range(n))
    clock, lags = 0.0, []
    while pending:
        still = []
        for task in pending:  # one round: each running task once, 1/qps apart
            clock += 1.0 / qps
            if clock >= durations[task]:
                lags.append(clock - durations[task])
            else:
                still.append(task)
        pending = still
    mean_lag = sum(lags) / n
    floor = latency_floor(durations, n, qps)
    assert floor is not None
    assert floor < mean_lag / (sum(durations) / n) < 1.3 * floor
