"""Poll schedule, learning estimator, and ``wait`` on a scripted kie.ai with a fake clock."""

from __future__ import annotations

import itertools
import logging
import math
import random
import statistics
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dagster_kie.errors import GenerationFailedError, WaitTimeoutError
from dagster_kie.models import TaskRecord
from dagster_kie.polling import (
    DurationEstimate,
    DurationEstimator,
    PollingPolicy,
    WaitingTasks,
    plan_polls,
)

from .helpers import Api, FakeClock, Script, record, reply

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
BODY = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a red fox"}}


# --- the fixed schedule --------------------------------------------------------------------------


def test_fixed_schedule_follows_kie_advice() -> None:
    policy = PollingPolicy(interval_scale=1.0)
    schedule = policy.schedule(None, rng=random.Random(1))
    for elapsed, low, high in (
        (0, 2, 3),
        (29, 2, 3),
        (30, 5, 10),
        (119, 5, 10),
        (120, 15, 30),
        (600, 15, 30),
    ):
        for _ in range(50):
            gap = schedule.next_poll_at(elapsed) - elapsed
            assert low <= gap <= high


def test_interval_scale_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.1")
    schedule = PollingPolicy().schedule(None)
    assert 0.2 <= schedule.next_poll_at(0.0) <= 0.3
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "fast")
    with pytest.raises(ValueError, match="KIE_POLL_INTERVAL_SCALE"):
        PollingPolicy().schedule(None)


def test_explicit_scale_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.01")
    assert PollingPolicy(interval_scale=2.0).scale == 2.0


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        PollingPolicy(early_interval_s=(3.0, 2.0))
    with pytest.raises(ValueError):
        PollingPolicy(deadline_s=0)
    with pytest.raises(ValueError, match=r"overdue_quantile must be between 0 and 1.*got 1\.5"):
        PollingPolicy(overdue_quantile=1.5)
    with pytest.raises(ValueError, match=r"overdue_query_share must be between 0 and 1.*got -0\.1"):
        PollingPolicy(overdue_query_share=-0.1)
    with pytest.raises(ValueError, match=r"poll_budget <= mean_poll_budget, got 3\.0 and 2\.0"):
        PollingPolicy(mean_poll_budget=2.0)
    with pytest.raises(ValueError, match=r"tail_ratios must be positive numbers, got \(0\.0,\)"):
        PollingPolicy(tail_ratios=(0.0,))
    with pytest.raises(ValueError, match=r"quantile_steps must be numbers between 0 and 1"):
        PollingPolicy(quantile_steps=(1.5,))
    with pytest.raises(ValueError, match=r"external_check_interval_s must be positive, got 0"):
        PollingPolicy(external_check_interval_s=0)
    with pytest.raises(ValueError, match=r"cold_scouts and cold_hold_s must not be negative"):
        PollingPolicy(cold_scouts=-1)


# --- the estimator and the learned plan ----------------------------------------------------------


def test_estimator_needs_a_few_samples_then_learns_per_model() -> None:
    estimator = DurationEstimator(min_samples=3)
    estimator.record("a", 10.0)
    estimator.record("a", 12.0)
    assert estimator.estimate("a") is None
    estimator.record("a", 14.0)
    estimate = estimator.estimate("a")
    assert estimate is not None
    assert estimate.samples == 3
    assert estimate.p50 == 12.0
    # an unknown model falls back to every model's durations
    fallback = estimator.estimate("b")
    assert fallback is not None and fallback.p50 == 12.0


def test_estimator_keeps_only_recent_history() -> None:
    estimator = DurationEstimator(min_samples=1, history=4)
    for seconds in (100.0, 100.0, 100.0, 100.0, 1.0, 1.0, 1.0, 1.0):
        estimator.record("m", seconds)
    estimate = estimator.estimate("m")
    assert estimate is not None and estimate.durations == (1.0, 1.0, 1.0, 1.0)


def test_estimator_ignores_nonsense() -> None:
    estimator = DurationEstimator(min_samples=1)
    for bad in (-1.0, math.nan, math.inf):
        estimator.record("m", bad)
    assert estimator.estimate("m") is None


def test_estimator_seeded_from_elsewhere_plans_at_once_but_never_over_its_own_durations() -> None:
    estimator = DurationEstimator(min_samples=3, history=4)
    assert estimator.seed("m", [9.0, math.nan, -1.0, 10.0, 11.0, 12.0, 13.0]) == 4
    assert estimator.recent("m") == [10.0, 11.0, 12.0, 13.0]
    assert estimator.plan("m", PollingPolicy(interval_scale=1.0)) is not None
    # a model that learned something itself keeps it
    estimator.record("n", 1.0)
    assert estimator.seed("n", [50.0, 60.0, 70.0]) == 0
    assert estimator.recent("n") == [1.0]
    assert estimator.seed("*", [1.0, 2.0, 3.0]) == 0
    assert estimator.seed("o", []) == 0 and estimator.recent("o") == []


def test_estimator_is_thread_safe() -> None:
    estimator = DurationEstimator(min_samples=1, history=200)

    def worker() -> None:
        for i in range(500):
            estimator.record("m", float(i + 1))
            if i % 50 == 0:
                assert estimator.plan("m", PollingPolicy(interval_scale=1.0)) is not None

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    estimate = estimator.estimate("m")
    assert estimate is not None and estimate.samples == 200


def test_tight_durations_give_one_poll_at_the_expected_time() -> None:
    plan = plan_polls(
        [20.0] * 10,
        target_added_latency=0.08,
        poll_budget=3,
        quantiles=(0.25, 0.5),
        quantile_steps=(0.1,),
        tail_ratios=(0.1,),
    )
    assert plan is not None
    assert plan.offsets == (20.0,)  # three equal quantiles are one poll
    assert plan.expected_polls == 1.0
    assert plan.expected_added_latency == 0.0


def test_wide_durations_spread_the_planned_polls_over_the_likely_ends() -> None:
    """Lognormal, sigma 0.5 around 6 s: no plan within 3 polls adds under 5 %, so the one that
    adds least within the poll budgets is used: three polls between the 10th and 70th
    percentiles, then a dense tail."""
    rng = random.Random(7)
    durations = [rng.lognormvariate(math.log(6.0) - 0.125, 0.5) for _ in range(256)]
    policy = PollingPolicy(interval_scale=1.0)
    plan = policy.plan(durations)
    assert plan is not None
    ordered = sorted(durations)
    assert len(plan.offsets) == 3
    assert ordered[len(ordered) // 50] <= plan.offsets[0] < statistics.median(ordered)
    assert plan.offsets[-1] >= statistics.median(ordered)  # the median task is found by poll 3
    assert plan.expected_polls <= policy.mean_poll_budget
    # better than the best plan with one poll, which the budgets would also allow
    one_poll = plan_polls(
        durations,
        target_added_latency=0.05,
        poll_budget=1,
        quantiles=policy.first_poll_quantiles,
        quantile_steps=(0.1,),
        tail_ratios=(plan.tail_ratio,),
    )
    assert one_poll is not None
    assert plan.expected_added_latency < one_poll.expected_added_latency


def test_the_mean_poll_budget_bounds_the_plan() -> None:
    rng = random.Random(8)
    durations = [rng.lognormvariate(math.log(6.0) - 0.32, 0.8) for _ in range(256)]
    generous = PollingPolicy(interval_scale=1.0, mean_poll_budget=8.0).plan(durations)
    frugal = PollingPolicy(interval_scale=1.0, mean_poll_budget=3.5).plan(durations)
    assert generous is not None and frugal is not None
    assert frugal.expected_polls <= 3.5 < generous.expected_polls
    assert generous.expected_added_latency < frugal.expected_added_latency


def test_a_plan_with_nothing_past_its_polls_keeps_the_sparsest_tail() -> None:
    """A burst's first plans come from its shortest tasks, all before the planned polls: every
    tail scores the same on them, and the sparsest is taken, not a poll every half second."""
    policy = PollingPolicy(interval_scale=1.0)
    plan = policy.plan([10.0, 10.0, 10.0])
    assert plan is not None
    assert plan.tail_ratio == max(policy.tail_ratios)


def test_planned_polls_keep_the_minimum_interval() -> None:
    plan = plan_polls(
        [10.0, 10.1, 10.2, 10.3, 12.0],
        target_added_latency=0.01,
        poll_budget=3,
        quantiles=(0.1,),
        quantile_steps=(0.2,),
        tail_ratios=(0.1,),
        min_interval=0.5,
    )
    assert plan is not None
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(plan.offsets))
    assert plan.next_after(0.0, 0.5) == plan.offsets[0]
    # a poll that went out late is not followed by another one at once
    assert plan.next_after(plan.offsets[-1] - 0.1, 0.5) == pytest.approx(plan.offsets[-1] + 0.4)
    assert plan.next_after(plan.offsets[-1], 0.5) is None


def test_learned_schedule_polls_first_near_completion_then_densely() -> None:
    policy = PollingPolicy(interval_scale=1.0, jitter=0.0)
    estimator = policy.new_estimator()
    for seconds in (19.0, 20.0, 21.0, 22.0):
        estimator.record("m", seconds)
    schedule = policy.schedule_for(estimator, "m")
    assert schedule.learned
    first = schedule.next_poll_at(0.0)
    assert 15.0 <= first <= 22.0
    gap = schedule.next_poll_at(first) - first
    assert gap <= 0.3 * first  # dense: a fraction of the elapsed time, not 2-3 s blindly
    assert gap <= 3.0


def simulate(
    draw: Callable[[random.Random], float], *, tasks: int = 400, seed: int = 3
) -> tuple[float, float]:
    """Median polls per task and mean relative added latency of the learned schedule."""
    rng = random.Random(seed)
    policy = PollingPolicy(interval_scale=1.0)
    estimator = policy.new_estimator()
    polls: list[int] = []
    added: list[float] = []
    for index in range(tasks):
        duration = draw(rng)
        schedule = policy.schedule_for(estimator, "m", rng=rng)
        elapsed, count = 0.0, 0
        while elapsed < duration:
            elapsed = schedule.next_poll_at(elapsed)
            count += 1
        estimator.record("m", duration)  # kie.ai's createTime -> completeTime
        if index >= 20:  # after the first few tasks
            polls.append(count)
            added.append((elapsed - duration) / duration)
    return statistics.median(polls), statistics.fmean(added)


@pytest.mark.parametrize(
    "draw",
    [
        pytest.param(lambda r: 20.0, id="fixed-20s"),
        pytest.param(lambda r: r.uniform(18.0, 22.0), id="uniform-20s-10pc"),
        pytest.param(lambda r: r.uniform(14.0, 26.0), id="uniform-20s-30pc"),
        pytest.param(lambda r: 20.0 * math.exp(r.gauss(0.0, 0.15)), id="lognormal-0.15"),
        pytest.param(lambda r: 20.0 * math.exp(r.gauss(0.0, 0.25)), id="lognormal-0.25"),
        pytest.param(lambda r: 60.0 * math.exp(r.gauss(0.0, 0.25)), id="lognormal-60s"),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learning_meets_the_polling_goals(
    draw: Callable[[random.Random], float], seed: int
) -> None:
    """Goal: median <= 3 polls per task with <= 10 % added latency."""
    median_polls, added = simulate(draw, seed=seed)
    assert median_polls <= 3
    assert added <= 0.10


def test_wide_durations_keep_the_poll_budget() -> None:
    """Too wide for both goals (30 % spread): the poll budget holds, latency stays close."""
    median_polls, added = simulate(lambda r: 20.0 * math.exp(r.gauss(0.0, 0.3)))
    assert median_polls <= 3
    assert added <= 0.13


def test_fixed_schedule_alone_needs_many_more_polls() -> None:
    rng = random.Random(1)
    schedule = PollingPolicy(interval_scale=1.0, learn=False).schedule(None, rng=rng)
    elapsed, count = 0.0, 0
    while elapsed < 20.0:
        elapsed = schedule.next_poll_at(elapsed)
        count += 1
    assert count >= 7


# --- overdue tasks --------------------------------------------------------------------------------


def test_a_burst_is_not_overdue_until_most_of_it_has_finished() -> None:
    """100 tasks sent together: the 3 that finished first are the short ones, which says little
    about the 97 still running. The running ones count as not done."""
    policy = PollingPolicy(interval_scale=1.0)
    early = DurationEstimate((2.0, 2.1, 2.2))
    assert not policy.is_overdue(early, age=3.0, older_running=97)
    most = DurationEstimate(tuple(2.0 + i * 0.05 for i in range(60)))
    assert not policy.is_overdue(most, age=4.0, older_running=40)  # 41 of 100 done by 4.0 s
    assert policy.is_overdue(most, age=5.0, older_running=40)  # all 60 done by 5.0 s
    assert not policy.is_overdue(None, age=99.0, older_running=1)
    assert not PollingPolicy(overdue_query_share=0).is_overdue(most, 5.0, 1)
    assert not PollingPolicy(learn=False).is_overdue(most, 5.0, 1)


def test_overdue_tasks_share_part_of_the_query_budget() -> None:
    policy = PollingPolicy(interval_scale=1.0, overdue_query_share=0.5)
    assert policy.overdue_interval(1, 10.0) == 0.5  # never below min_interval_s
    assert policy.overdue_interval(20, 10.0) == pytest.approx(4.0)  # 20 tasks share 5 polls/s
    assert policy.overdue_interval(20, 100.0) == pytest.approx(0.5)
    assert PollingPolicy(overdue_query_share=0).overdue_interval(1, 10.0) == math.inf


def test_waiting_tasks_counts_older_waits_and_overdue_ones() -> None:
    waiting = WaitingTasks()
    for origin in (3.0, 1.0, 2.0, 2.0):
        waiting.add("m", origin)
    waiting.add("other", 0.5)
    assert waiting.started_by("m", 2.0) == 3
    assert waiting.started_by("m", 0.9) == 0
    assert waiting.peers("m", 2.0, 10.0) == 4  # started by 2.0 + a tenth of 10 s
    assert waiting.mark_overdue() == 1
    waiting.remove("m", 2.0, overdue=True)
    waiting.remove("m", 3.0, overdue=False)
    assert waiting.started_by("m", 5.0) == 2
    assert waiting.overdue == 0


def test_waiting_tasks_counts_scouts_per_model() -> None:
    waiting = WaitingTasks()
    assert waiting.try_scout("m", 2) and waiting.try_scout("m", 2)
    assert not waiting.try_scout("m", 2)
    assert waiting.try_scout("other", 2)  # each model has its own scouts
    waiting.end_scout("m")
    assert waiting.try_scout("m", 2)
    assert not waiting.try_scout("m", 0)  # 0: no scouts, nobody holds


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_an_overdue_task_is_seen_soon_after_it_ends(
    make_api: Callable[..., Api], script: Script, clock: FakeClock, share: float
) -> None:
    """Steady 20 s tasks teach the plan to poll once at 20 s. A task that takes 60 s is overdue
    after that poll: it is polled as often as the spare query budget allows (every 0.5 s for one
    task), so its end is seen within 0.5 s. Without that, the plan steps by a fraction of the
    elapsed time (over a second here)."""
    api = make_api(polling=PollingPolicy(interval_scale=1.0, overdue_query_share=share))
    tasks = Tasks(script, clock, duration=20.0)
    for _ in range(8):
        api.wait(api.create_task(BODY))
    tasks.duration = 60.0
    task_id = api.create_task(BODY)
    api.wait(task_id)
    times = tasks.poll_times[task_id]
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]  # after the first poll
    if share:
        assert max(gaps) <= 0.5 + 0.01
        assert 60.0 <= times[-1] - tasks.created[task_id] <= 60.5 + 0.01
    else:
        assert min(gaps) > 0.75
    assert api.client._core.waiting.overdue == 0  # the finished wait left the count


# --- wait() on a scripted kie.ai -----------------------------------------------------------------


class Tasks:
    """A scripted kie.ai whose tasks end ``duration`` seconds (fake clock) after creation."""

    def __init__(
        self, script: Script, clock: FakeClock, duration: float = 20.0, state: str = "success"
    ) -> None:
        self.clock = clock
        self.duration = duration
        self.final = state
        self.created: dict[str, float] = {}
        self.polls: dict[str, int] = {}
        self.poll_times: dict[str, list[float]] = {}
        script.on("POST", CREATE, self.create)
        script.on("GET", RECORD, self.info)

    def create(self, request: httpx.Request) -> httpx.Response:
        task_id = f"task_{len(self.created) + 1}"
        self.created[task_id] = self.clock.now
        return reply({"taskId": task_id})

    def info(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.params["taskId"]
        self.polls[task_id] = self.polls.get(task_id, 0) + 1
        self.poll_times.setdefault(task_id, []).append(self.clock.now)
        start = self.created.get(task_id, self.clock.now - 1000.0)
        age = self.clock.now - start
        ms = int((self.clock.epoch + start) * 1000)
        if age >= self.duration:
            extra: dict[str, Any] = {"completeTime": ms + int(self.duration * 1000)}
            if self.final == "fail":
                extra.update(failCode="400", failMsg="content policy violation")
            return reply(record(task_id, self.final, createTime=ms, **extra))
        state = "waiting" if age < 0.2 * self.duration else "generating"
        return reply(record(task_id, state, createTime=ms))


def test_wait_polls_until_success_and_reports_state_changes(
    api: Api, script: Script, clock: FakeClock
) -> None:
    tasks = Tasks(script, clock, duration=20.0)
    task_id = api.create_task(BODY)
    seen: list[str] = []
    result = api.wait(task_id, on_update=lambda rec: seen.append(rec.state))
    assert result.succeeded
    assert result.result_urls == ["https://cdn.example/a.png"]
    assert seen[-1] == "success"
    assert seen == sorted(set(seen), key=seen.index)  # one call per change
    assert "generating" in seen
    assert 20.0 <= clock.now - tasks.created[task_id] <= 23.0
    assert api.client.polling_stats.tasks == 1


def test_wait_learns_and_needs_one_poll_per_task_for_steady_durations(
    api: Api, script: Script, clock: FakeClock
) -> None:
    tasks = Tasks(script, clock, duration=20.0)
    for _ in range(8):
        task_id = api.create_task(BODY)
        api.wait(task_id)
    later = [tasks.polls[f"task_{i}"] for i in range(5, 9)]
    assert later == [1, 1, 1, 1]
    assert tasks.polls["task_1"] >= 7  # before learning: kie.ai's fixed advice
    summary = api.client.polling_stats.summary()
    assert summary["tasks"] == 8


def test_a_wait_started_before_learning_switches_to_the_learned_plan(
    api: Api, script: Script, clock: FakeClock
) -> None:
    """The first tasks of a burst start on kie.ai's fixed schedule (every 2-3 s). When other
    tasks of the model end while they wait, they switch to the learned plan at their next poll
    instead of polling every 2-3 s for a minute."""
    tasks = Tasks(script, clock, duration=60.0)
    estimator = api.client._core.estimator

    def others_end(record: TaskRecord) -> None:
        if record.state == "waiting":  # the first poll: learning has not started yet
            for seconds in (58.0, 60.0, 62.0):
                estimator.record(None, seconds)

    task_id = api.create_task(BODY)
    assert api.wait(task_id, on_update=others_end).succeeded
    times = [t - tasks.created[task_id] for t in tasks.poll_times[task_id]]
    # the fixed schedule, until the poll after the one that saw others end ...
    assert times[1] <= 6.0
    assert times[2] >= 55.0  # ... then the plan: nothing until the learned end times
    assert len(times) <= 5  # the fixed schedule alone polls about 24 times in 60 s


def test_a_plan_already_behind_a_waiting_task_is_not_used_for_it(
    make_api: Callable[..., Api], script: Script, clock: FakeClock
) -> None:
    """Learning that starts while a burst waits comes from its shortest tasks: a plan whose
    polls are all behind the task would leave it to the dense tail (every 0.5 s here). It keeps
    kie.ai's schedule instead. (Overdue polling, which would also poll it densely here, is off:
    in a real burst the tasks still running keep it from being overdue.)"""
    api = make_api(polling=PollingPolicy(interval_scale=1.0, overdue_query_share=0.0))
    tasks = Tasks(script, clock, duration=20.0)
    estimator = api.client._core.estimator

    def short_ones_end(record: TaskRecord) -> None:
        if record.state == "waiting":
            for seconds in (1.0, 1.1, 1.2):
                estimator.record(None, seconds)

    task_id = api.create_task(BODY)
    assert api.wait(task_id, on_update=short_ones_end).succeeded
    times = tasks.poll_times[task_id]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 2.0
    assert len(times) <= 10


def test_a_learned_wait_follows_the_newest_plan(
    make_api: Callable[..., Api], script: Script, clock: FakeClock
) -> None:
    """Plans learned while a burst runs come from the tasks that ended first. A wait follows the
    plan as it is refreshed: when longer durations arrive, its next poll moves to the new
    likely end times instead of the old plan's dense tail (a poll every 1-3 s from 11 s)."""
    api = make_api(polling=PollingPolicy(interval_scale=1.0, overdue_query_share=0.0))
    tasks = Tasks(script, clock, duration=30.0)
    estimator = api.client._core.estimator
    for seconds in (10.0, 10.5, 11.0):
        estimator.record(BODY["model"], seconds)

    def longer_ones_end(record: TaskRecord) -> None:
        if len(tasks.polls) == 1 and tasks.polls["task_1"] == 1:
            for seconds in (29.0, 29.5, 30.0, 30.0, 30.5, 31.0, 31.5, 32.0):
                estimator.record(BODY["model"], seconds)

    task_id = api.create_task(BODY)
    assert api.wait(task_id, on_update=longer_ones_end).succeeded
    times = [t - tasks.created[task_id] for t in tasks.poll_times[task_id]]
    assert times[0] < 12.0  # the first plan's first poll
    assert len(times) <= 4
    assert max(b - a for a, b in itertools.pairwise(times)) >= 15.0


class HookClock(FakeClock):
    """A fake clock that calls ``hooks`` once it passes their times (other tasks ending)."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[tuple[float, Callable[[], None]]] = []

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        due = [hook for hook in self.hooks if hook[0] <= self.now]
        for hook in due:
            self.hooks.remove(hook)
            hook[1]()


@pytest.fixture
def cold(make_api: Callable[..., Api], script: Script) -> tuple[Api, HookClock, Tasks]:
    """A client whose two scout places are taken by other waits of the model, and a 20 s task."""
    hook_clock = HookClock()
    api = make_api(
        clock=hook_clock,
        polling=PollingPolicy(interval_scale=1.0, cold_scouts=2, overdue_query_share=0.0),
    )
    waiting = api.client._core.waiting
    assert waiting.try_scout(BODY["model"], 2) and waiting.try_scout(BODY["model"], 2)
    return api, hook_clock, Tasks(script, hook_clock, duration=20.0)


def wait_while_others_end(
    cold: tuple[Api, HookClock, Tasks], *, at: float, durations: tuple[float, ...]
) -> list[float]:
    """Wait for a new task while other tasks of the model, ``durations`` long, end ``at``
    seconds after it was created; its poll times, in seconds after its creation."""
    api, clock, tasks = cold
    estimator = api.client._core.estimator
    task_id = api.create_task(BODY)
    start = tasks.created[task_id]

    def others_end() -> None:
        for seconds in durations:
            estimator.record(BODY["model"], seconds)

    clock.hooks.append((start + at, others_end))
    assert api.wait(task_id).succeeded
    return [t - start for t in tasks.poll_times[task_id]]


def test_a_cold_wait_beyond_the_scouts_holds_its_polls_until_they_learn(
    cold: tuple[Api, HookClock, Tasks],
) -> None:
    """While nothing is learned, waits beyond ``cold_scouts`` do not poll every 2-3 s: they hold
    until the scouts' ends give a plan, then follow it with no polls spent."""
    times = wait_while_others_end(cold, at=8.0, durations=(19.5, 20.0, 20.5))
    assert times[0] >= 8.0  # nothing before the plan ...
    assert len(times) <= 2  # ... then the plan's polls at the learned end times
    assert times[-1] <= 21.0


def test_a_cold_wait_takes_a_free_scout_place(cold: tuple[Api, HookClock, Tasks]) -> None:
    """A scout that ends without teaching anything (say, its task failed) frees its place: a
    holding wait takes it and polls on kie.ai's schedule."""
    api, clock, tasks = cold
    waiting = api.client._core.waiting
    task_id = api.create_task(BODY)
    start = tasks.created[task_id]
    clock.hooks.append((start + 5.0, lambda: waiting.end_scout(BODY["model"])))
    assert api.wait(task_id).succeeded
    times = [t - start for t in tasks.poll_times[task_id]]
    assert 5.0 <= times[0] <= 6.0
    assert all(2.0 <= b - a <= 3.0 for a, b in itertools.pairwise(times))
    # the wait gave its place back: of the two, only the test's remaining one is taken
    assert waiting.try_scout(BODY["model"], 2)
    assert not waiting.try_scout(BODY["model"], 2)


def test_a_cold_wait_polls_after_holding_for_cold_hold_s(
    cold: tuple[Api, HookClock, Tasks],
) -> None:
    """With no plan and no free scout place, a wait polls once it held for ``cold_hold_s``."""
    api, _clock, tasks = cold
    task_id = api.create_task(BODY)
    assert api.wait(task_id).succeeded
    times = [t - tasks.created[task_id] for t in tasks.poll_times[task_id]]
    assert times == [pytest.approx(30.0, abs=0.6)]


def test_a_task_created_just_before_its_burst_is_not_overdue_early(
    api: Api, script: Script, clock: FakeClock
) -> None:
    """Tasks created a moment after a task are its peers: the first-created task of a burst is
    not judged overdue (and polled every half second) while most of the burst still runs."""
    tasks = Tasks(script, clock, duration=20.0)
    core = api.client._core
    for _ in range(10):
        core.estimator.record(BODY["model"], 5.0)
    task_id = api.create_task(BODY)
    for _ in range(20):  # the rest of the burst, created 0.3 s later and still running
        core.waiting.add(BODY["model"], clock.now + 0.3)
    assert api.wait(task_id).succeeded
    assert tasks.polls[task_id] <= 10  # overdue from 5 s, it would be polled about 30 times
    assert core.waiting.overdue == 0


def test_a_holding_wait_whose_plan_is_all_behind_it_looks_once_then_keeps_kies_schedule(
    cold: tuple[Api, HookClock, Tasks],
) -> None:
    """The first plans of a burst come from its shortest tasks. A holding wait older than all of
    the plan's polls looks at once, then polls on kie.ai's schedule, not the plan's dense tail."""
    times = wait_while_others_end(cold, at=8.0, durations=(1.0, 1.1, 1.2))
    assert 8.0 <= times[0] <= 8.6
    assert all(2.0 <= b - a <= 3.0 for a, b in itertools.pairwise(times))


def test_failed_task_raises_generation_failed(api: Api, script: Script, clock: FakeClock) -> None:
    Tasks(script, clock, duration=5.0, state="fail")
    events: list[tuple[str, Any]] = []
    api.client._core.on_event = lambda event, value: events.append((event, value))
    task_id = api.create_task(BODY)
    with pytest.raises(GenerationFailedError) as caught:
        api.wait(task_id)
    error = caught.value
    assert error.task_id == task_id
    assert error.fail_code == "400"
    assert error.fail_msg == "content policy violation"
    assert error.retryable is False  # a policy rejection fails again
    assert [event for event, _ in events] == ["task_created", "task_finished"]


def test_generate_creates_and_waits(api: Api, script: Script, clock: FakeClock) -> None:
    Tasks(script, clock, duration=3.0)
    assert api.generate(BODY).succeeded


def test_deadline_raises_wait_timeout(api: Api, script: Script, clock: FakeClock) -> None:
    Tasks(script, clock, duration=10_000.0)
    task_id = api.create_task(BODY)
    started = clock.now
    with pytest.raises(WaitTimeoutError) as caught:
        api.wait(task_id, timeout=60.0)
    assert caught.value.retryable
    assert caught.value.task_id == task_id
    assert clock.now - started == pytest.approx(60.0, abs=0.5)


def test_unknown_task_is_polled_at_once(api: Api, script: Script, clock: FakeClock) -> None:
    Tasks(script, clock)
    started = clock.now
    assert api.wait("task_from_an_earlier_run").succeeded
    assert clock.now == started


def test_external_source_answers_without_polling_kie(
    api: Api, script: Script, clock: FakeClock
) -> None:
    tasks = Tasks(script, clock, duration=20.0)
    task_id = api.create_task(BODY)
    done_at = clock.now + 20.0

    def external(tid: str) -> TaskRecord | None:
        if clock.now < done_at:
            return None
        return TaskRecord.model_validate(record(tid, "success"))

    assert api.wait(task_id, external=external).succeeded
    assert tasks.polls.get(task_id, 0) == 0


def test_external_source_is_looked_at_every_check_interval(
    make_api: Callable[..., Api], script: Script, clock: FakeClock
) -> None:
    """Looks at an external source are cheap: a task is seen within one interval of its callback,
    not at the next kie.ai poll time."""
    api = make_api(polling=PollingPolicy(interval_scale=1.0, external_check_interval_s=0.5))
    Tasks(script, clock, duration=20.0)
    task_id = api.create_task(BODY)
    done_at = clock.now + 7.3
    checks: list[float] = []

    def external(tid: str) -> TaskRecord | None:
        checks.append(clock.now)
        if clock.now < done_at:
            return None
        return TaskRecord.model_validate(record(tid, "success"))

    assert api.wait(task_id, external=external).succeeded
    gaps = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert gaps and all(gap == pytest.approx(0.5, abs=0.01) for gap in gaps)
    assert done_at <= clock.now <= done_at + 0.5


def test_external_source_makes_kie_polls_a_sparse_fallback(
    api: Api, script: Script, clock: FakeClock
) -> None:
    tasks = Tasks(script, clock, duration=100.0)
    task_id = api.create_task(BODY)
    checks: list[float] = []

    def external(tid: str) -> None:
        checks.append(clock.now)

    assert api.wait(task_id, external=external).succeeded
    assert len(checks) > tasks.polls[task_id]
    assert tasks.polls[task_id] <= 4
    first_poll_allowed = tasks.created[task_id] + 60.0
    assert clock.now >= first_poll_allowed


def test_broken_external_source_falls_back_to_polling(
    api: Api, script: Script, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    Tasks(script, clock, duration=5.0)
    task_id = api.create_task(BODY)
    looks: list[float] = []

    def external(tid: str) -> None:
        looks.append(clock.now)
        raise OSError("S3 is down")

    with caplog.at_level(logging.WARNING, logger="dagster_kie"):
        assert api.wait(task_id, external=external).succeeded
    warnings = [r for r in caplog.records if "external check failed" in r.getMessage()]
    # many looks, one warning for the failing streak
    assert len(looks) > 10 and len(warnings) == 1
    assert "S3 is down" in warnings[0].getMessage()


def test_an_external_source_that_returns_garbage_is_not_trusted(
    api: Api, script: Script, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = Tasks(script, clock, duration=5.0)
    task_id = api.create_task(BODY)

    with caplog.at_level(logging.WARNING, logger="dagster_kie"):
        record = api.wait(task_id, external=lambda tid: {"state": "success"})
    assert record.succeeded and tasks.polls[task_id] >= 1  # kie.ai answered, not the garbage
    assert any("invalid record" in r.getMessage() for r in caplog.records)


def test_submitted_at_places_the_schedule(api: Api, script: Script, clock: FakeClock) -> None:
    tasks = Tasks(script, clock, duration=20.0)
    tasks.created["task_old"] = clock.now - 19.0
    for _ in range(4):  # learn 20 s durations
        api.wait(api.create_task(BODY))
    started = clock.now
    api.wait("task_old", submitted_at=clock.time() - 19.0, model=BODY["model"])
    assert clock.now - started <= 3.0
    assert tasks.polls["task_old"] <= 2
