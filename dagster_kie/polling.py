"""When to ask kie.ai whether a task is done: a fixed schedule that learns.

:class:`PollingPolicy` starts from kie.ai's own advice (every 2–3 s for the first 30 s, every
5–10 s up to two minutes, every 15–30 s after that, give up after 15 minutes) and adds learning:
a :class:`DurationEstimator`, shared by every call of one client, records how long finished tasks
took per model (createTime → completeTime). Once a model has a few samples, :func:`plan_polls`
picks, from the recent durations, up to three poll times at quantiles of them (say when 15 %,
40 % and 60 % of recent tasks had ended) and how densely to poll after those (each later poll a
fixed fraction of the elapsed time after the previous one): the cheapest plan whose median is at
most 3 polls per task (mean at most 5) and whose added latency (time between a task's end and
its detection, summed over tasks, relative to their summed durations) stays under the target,
or the one that adds the least latency within those budgets when none does. Tight durations give
one poll per task; wider ones spread three over the likely end times. Waiting tasks follow the
newest plan (a burst's first plans come from its shortest tasks; later ones correct them); a task
still on the fixed schedule when learning starts switches if the plan has polls ahead of it.
While nothing is learned, only ``cold_scouts`` tasks of a model poll on the fixed schedule; the
rest of a burst holds its polls until the scouts' ends give a plan. A task
that outlives most of its model's tasks (*overdue*, judged with :class:`WaitingTasks`: tasks
still running count as not done) is polled from a share of the query budget instead, which is
what ends a batch soon after its last task. An estimator can also start from durations learned
elsewhere (:meth:`DurationEstimator.seed`): the batch engine keeps each model's recent durations
in S3 between runs (:mod:`dagster_kie.duration_history`), so a run's first tasks are polled on
the learned plan too.

``KIE_POLL_INTERVAL_SCALE`` (a float, default 1) scales every interval, as replicate-python's
``REPLICATE_POLL_INTERVAL`` does; tests set it low. Learned completion times are not scaled: they
are measured.

Example:
    >>> policy = PollingPolicy(interval_scale=1.0)
    >>> estimator = DurationEstimator()
    >>> for seconds in (20.0, 21.0, 22.0):
    ...     estimator.record("ideogram/v3-text-to-image", seconds)
    >>> schedule = policy.schedule(estimator.estimate("ideogram/v3-text-to-image"))
    >>> schedule.next_poll_at(0.0)
    21.0
"""

from __future__ import annotations

import bisect
import math
import os
import random
import statistics
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "POLL_SCALE_ENV",
    "DurationEstimate",
    "DurationEstimator",
    "PollPlan",
    "PollSchedule",
    "PollingPolicy",
    "PollingStats",
    "WaitingTasks",
    "plan_polls",
]

POLL_SCALE_ENV = "KIE_POLL_INTERVAL_SCALE"
"""Environment variable scaling every polling interval (float, default 1)."""

ANY_MODEL = "*"
_PEER_SLACK = 0.1

# One generator for every schedule's jitter: seeding a new one per task cost 1 % of a batch's CPU.
_JITTER = random.Random()


def _env_scale() -> float:
    raw = os.environ.get(POLL_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{POLL_SCALE_ENV} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{POLL_SCALE_ENV} must be a finite number >= 0, got {raw!r}")
    return value


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending sequence."""
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class DurationEstimate:
    """What recent tasks of one model took.

    Attributes:
        durations: The recent durations in seconds, ascending.
    """

    durations: tuple[float, ...]

    @property
    def samples(self) -> int:
        """How many durations this is based on."""
        return len(self.durations)

    def quantile(self, q: float) -> float:
        """A quantile (linear interpolation) of the durations."""
        return _quantile(self.durations, q)

    @property
    def p50(self) -> float:
        """The median duration."""
        return self.quantile(0.5)

    @property
    def p90(self) -> float:
        """The 90th percentile."""
        return self.quantile(0.9)


@dataclass(frozen=True)
class PollPlan:
    """Learned poll times: at ``offsets``, then every ``tail_ratio`` of the elapsed time.

    Attributes:
        offsets: Seconds after submission of the planned polls, ascending.
        tail_ratio: After the last offset, each poll comes this fraction of the elapsed time
            after the previous one.
        expected_polls: Mean polls per task this plan needs on the recent durations.
        expected_added_latency: Summed delay between the tasks' ends and their detection,
            relative to their summed durations, on the recent durations.
    """

    offsets: tuple[float, ...]
    tail_ratio: float
    expected_polls: float
    expected_added_latency: float

    @property
    def first_s(self) -> float:
        """Seconds after submission of the first poll."""
        return self.offsets[0]

    def next_after(self, elapsed: float, min_interval: float) -> float | None:
        """The first planned offset after ``elapsed`` (``None`` past the last one)."""
        index = bisect.bisect_right(self.offsets, elapsed)
        if index == len(self.offsets):
            return None
        return max(self.offsets[index], elapsed + min_interval)


def _plan_offsets(
    ordered: Sequence[float], quantiles: Sequence[float], min_interval: float
) -> tuple[float, ...]:
    """Durations at ``quantiles``, dropping any closer than ``min_interval`` to the previous."""
    offsets: list[float] = []
    for q in quantiles:
        value = _quantile(ordered, q)
        if not offsets or value >= offsets[-1] + min_interval:
            offsets.append(value)
    return tuple(offsets)


def _score(
    durations: Sequence[float], offsets: Sequence[float], ratio: float, min_interval: float
) -> tuple[float, float, float]:
    """(60th-percentile polls, mean polls, added latency) of a plan on ascending durations."""
    counts: list[int] = []
    lag = 0.0
    for duration in durations:
        index = bisect.bisect_left(offsets, duration)
        if index < len(offsets):
            counts.append(index + 1)
            lag += offsets[index] - duration
            continue
        at, polls = offsets[-1], len(offsets)
        while at < duration:
            at += max(min_interval, ratio * at)
            polls += 1
        counts.append(polls)
        lag += at - duration
    # counts follow the ascending durations; the 60th percentile, not the median: a little
    # slack for sampling noise
    return _quantile(counts, 0.6), statistics.fmean(counts), lag / max(sum(durations), 1e-9)


def plan_polls(
    durations: Sequence[float],
    *,
    target_added_latency: float,
    poll_budget: float,
    mean_poll_budget: float = math.inf,
    quantiles: Sequence[float],
    quantile_steps: Sequence[float],
    tail_ratios: Sequence[float],
    min_interval: float = 0.5,
) -> PollPlan | None:
    """The cheapest plan that keeps both goals: median polls within the budget (and mean polls
    within ``mean_poll_budget``), added latency within the target.

    A plan polls at ``poll_budget`` quantiles of the recent durations (the first one from
    ``quantiles``, each next one a step from ``quantile_steps`` further), then every
    ``tail_ratio`` of the elapsed time. Every combination is scored on the recent durations, in
    closed form: a tight distribution gets one poll near its end and little else; a wider one
    spreads its polls over the likely end times. When the spread is too wide for both goals,
    the poll budget wins (kie.ai's 10 queries per second are shared by every task in flight) and
    the plan with the least added latency within it is used.

    Returns:
        ``None`` when there are no positive durations.
    """
    ordered = sorted(d for d in durations if d > 0)
    if not ordered:
        return None
    budget = max(1, math.floor(poll_budget))
    best: tuple[tuple[int, float, float], PollPlan] | None = None
    seen: set[tuple[tuple[float, ...], float]] = set()
    for first in quantiles:
        for step in quantile_steps:
            points = [q for q in (first + i * step for i in range(budget)) if q < 1]
            offsets = _plan_offsets(ordered, points, min_interval)
            # sparsest first: when no recent duration lies past the planned polls (a burst's
            # first plans), every tail scores the same, and the densest would poll those tasks
            # every half second
            for ratio in sorted(tail_ratios, reverse=True):
                if (offsets, ratio) in seen:
                    continue
                seen.add((offsets, ratio))
                median, mean, added = _score(ordered, offsets, ratio, min_interval)
                within_budget = median <= poll_budget and mean <= mean_poll_budget
                if within_budget and added <= target_added_latency:
                    key = (0, mean, added)
                elif within_budget:
                    key = (1, added, mean)
                else:
                    key = (2, median, added)
                if best is None or key < best[0]:
                    best = (key, PollPlan(offsets, ratio, mean, added))
    return None if best is None else best[1]


class DurationEstimator:
    """Recent task durations per model (thread-safe), shared by the calls of one client.

    Args:
        min_samples: Durations needed before an estimate is given.
        history: Durations kept per model (the most recent ones).
    """

    def __init__(self, *, min_samples: int = 3, history: int = 256) -> None:
        if min_samples < 1 or history < min_samples:
            raise ValueError("need 1 <= min_samples <= history")
        self.min_samples = min_samples
        self.history = history
        self._lock = threading.Lock()
        self._durations: dict[str, deque[float]] = {}
        self._versions: dict[str, int] = {}
        self._plans: dict[str, tuple[int, PollingPolicy, PollPlan | None]] = {}
        # every poll asks for one (overdue check, learning started): sort once per new duration
        self._estimates: dict[str, tuple[int, DurationEstimate]] = {}

    def record(self, model: str | None, seconds: float) -> None:
        """Remember that a task of ``model`` took ``seconds`` (also counted for any model)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        with self._lock:
            for key in {model or ANY_MODEL, ANY_MODEL}:
                self._durations.setdefault(key, deque(maxlen=self.history)).append(seconds)
                self._versions[key] = self._versions.get(key, 0) + 1

    def recent(self, model: str | None) -> list[float]:
        """The durations recorded for exactly ``model`` (``"*"``: every model), oldest first."""
        with self._lock:
            return list(self._durations.get(model or ANY_MODEL, ()))

    def seed(self, model: str, durations: Sequence[float]) -> int:
        """Start ``model`` from durations learned elsewhere (say, by an earlier run), unless it
        already has some of its own; returns how many were taken."""
        if model == ANY_MODEL or self.recent(model):
            return 0
        for seconds in durations:
            self.record(model, seconds)
        return len(self.recent(model))

    def _key(self, model: str | None) -> str | None:
        key = model or ANY_MODEL
        if len(self._durations.get(key, ())) >= self.min_samples:
            return key
        if len(self._durations.get(ANY_MODEL, ())) >= self.min_samples:
            return ANY_MODEL
        return None

    def estimate(self, model: str | None) -> DurationEstimate | None:
        """The recent durations of ``model`` (or of any model while it has too few).

        Returns:
            ``None`` until ``min_samples`` durations were recorded.
        """
        with self._lock:
            key = self._key(model)
            if key is None:
                return None
            version = self._versions[key]
            cached = self._estimates.get(key)
            if cached is None or cached[0] != version:
                cached = (version, DurationEstimate(tuple(sorted(self._durations[key]))))
                self._estimates[key] = cached
            return cached[1]

    def plan(self, model: str | None, policy: PollingPolicy) -> PollPlan | None:
        """The learned poll plan of ``model`` under ``policy`` (cached; refreshed as durations
        arrive, every time while there are few and every eighth of the history later)."""
        with self._lock:
            key = self._key(model)
            if key is None:
                return None
            version = self._versions[key]
            cached = self._plans.get(key)
            count = len(self._durations[key])
            fresh = cached is not None and version - cached[0] < max(1, count // 8)
            if cached is not None and fresh and cached[1] == policy:
                return cached[2]
            durations = tuple(self._durations[key])
        plan = policy.plan(durations)
        with self._lock:
            self._plans[key] = (version, policy, plan)
        return plan

    def models(self) -> list[str]:
        """Models with recorded durations (``"*"`` is every model together)."""
        with self._lock:
            return sorted(self._durations)

    def __repr__(self) -> str:
        with self._lock:
            counts = {key: len(values) for key, values in self._durations.items()}
        return f"DurationEstimator({counts})"


class WaitingTasks:
    """The tasks one client is waiting for: when each was submitted, and which are overdue
    (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._origins: dict[str, list[float]] = {}
        self._overdue = 0
        self._scouts: dict[str, int] = {}

    def add(self, model: str | None, origin: float) -> None:
        """Start counting a wait for a task of ``model`` submitted at ``origin``."""
        with self._lock:
            bisect.insort(self._origins.setdefault(model or ANY_MODEL, []), origin)

    def remove(self, model: str | None, origin: float, *, overdue: bool) -> None:
        """Stop counting a wait added with :meth:`add` (``overdue``: it was marked overdue)."""
        with self._lock:
            origins = self._origins.get(model or ANY_MODEL, [])
            index = bisect.bisect_left(origins, origin)
            if index < len(origins) and origins[index] == origin:
                del origins[index]
            self._overdue -= overdue

    def started_by(self, model: str | None, origin: float) -> int:
        """Waits for tasks of ``model`` submitted at or before ``origin``."""
        with self._lock:
            return bisect.bisect_right(self._origins.get(model or ANY_MODEL, []), origin)

    def peers(self, model: str | None, origin: float, age: float) -> int:
        """Waits for tasks of ``model`` that count as peers of one submitted at ``origin`` and
        ``age`` seconds old: started no later than it, or within a tenth of its age after it.
        Within a burst the order of creation is noise; without the slack, the first-created
        tasks would count few peers still running and be judged overdue early."""
        return self.started_by(model, origin + _PEER_SLACK * age)

    def try_scout(self, model: str | None, limit: int) -> bool:
        """Count one more scout of ``model`` (a wait polling on kie.ai's schedule while nothing
        is learned) if fewer than ``limit`` are waiting; returns whether it was counted."""
        key = model or ANY_MODEL
        with self._lock:
            if self._scouts.get(key, 0) >= limit:
                return False
            self._scouts[key] = self._scouts.get(key, 0) + 1
            return True

    def end_scout(self, model: str | None) -> None:
        """Stop counting a scout counted by :meth:`try_scout`."""
        key = model or ANY_MODEL
        with self._lock:
            self._scouts[key] = max(0, self._scouts.get(key, 0) - 1)

    def mark_overdue(self) -> int:
        """Count one more overdue wait; returns how many there are."""
        with self._lock:
            self._overdue += 1
            return self._overdue

    @property
    def overdue(self) -> int:
        """Waits marked overdue and not removed yet."""
        with self._lock:
            return self._overdue


@dataclass
class PollingStats:
    """How many kie.ai polls each finished wait needed (thread-safe); for benchmarks.

    Attributes:
        polls: Polls per finished wait, in order.
        external_checks: ``external`` callable checks per finished wait.
    """

    polls: list[int] = field(default_factory=list)
    external_checks: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, polls: int, external_checks: int = 0) -> None:
        """Count one finished wait."""
        with self._lock:
            self.polls.append(polls)
            self.external_checks.append(external_checks)

    @property
    def tasks(self) -> int:
        """Finished waits counted."""
        return len(self.polls)

    @property
    def total_polls(self) -> int:
        """kie.ai polls made by all counted waits."""
        return sum(self.polls)

    @property
    def median_polls(self) -> float:
        """Median polls per task (0.0 before any)."""
        with self._lock:
            return float(statistics.median(self.polls)) if self.polls else 0.0

    @property
    def mean_polls(self) -> float:
        """Mean polls per task (0.0 before any)."""
        with self._lock:
            return statistics.fmean(self.polls) if self.polls else 0.0

    def summary(self) -> dict[str, float]:
        """``{"tasks", "polls", "median_polls", "mean_polls", "max_polls"}``."""
        return {
            "tasks": self.tasks,
            "polls": self.total_polls,
            "median_polls": self.median_polls,
            "mean_polls": self.mean_polls,
            "max_polls": max(self.polls, default=0),
        }


@dataclass(frozen=True)
class PollingPolicy:
    """When to poll a task, and for how long at most.

    Attributes:
        deadline_s: Give up waiting after this many seconds (``WaitTimeoutError``).
        early_phase_s: Length of the first phase.
        early_interval_s: (min, max) seconds between polls in the first phase.
        middle_phase_s: End of the middle phase (seconds since submission).
        middle_interval_s: (min, max) seconds between polls in the middle phase.
        late_interval_s: (min, max) seconds between polls after the middle phase.
        learn: Schedule polls from the durations of earlier tasks of the same model.
        min_samples: Finished tasks needed before learning applies.
        history: Durations kept per model.
        target_added_latency: Summed delay between the tasks' ends and their detection,
            relative to their summed durations, that a learned plan aims for (5 %, leaving room
            under 10 % for queueing at the query limit and request time).
        poll_budget: Median polls per task a learned plan may use (and how many polls it
            plans); when durations spread too widely for both goals, this one wins ...
        mean_poll_budget: ... with this many polls per task on average at most: at the rate
            limit kie.ai allows 5 queries per task (10 per second, 2 new tasks per second), and
            more only queue behind each other. (4 added 0.3–0.8 points of latency in benchmark
            runs of one create window that started learned, for no gain at 1,000 tasks.)
        first_poll_quantiles: Quantiles of recent durations tried for the first poll.
        quantile_steps: Steps between the quantiles of the next planned polls, tried.
        tail_ratios: Fractions of the elapsed time tried as the spacing of polls after the
            planned ones.
        min_interval_s: Shortest interval between two polls.
        jitter: Relative random spread added to learned intervals (fixed intervals are drawn
            from their (min, max) range).
        overdue_quantile: A task is *overdue* once this share of the tasks of its model that
            started no later than it (or within a tenth of its age after it) are known to have
            taken less time than it has run (recent finished tasks, and tasks still running,
            which count as not yet done): the plan has spent its polls on the tasks that finish
            earlier, so the median is kept whatever an overdue task costs ...
        overdue_query_share: ... and overdue tasks are polled as often as this share of the
            client's query rate allows, split between them (never more often than
            ``min_interval_s``). The last tasks of a batch are overdue ones: this is what ends
            a batch close to its last task's end. ``0`` turns it off.
        cold_scouts: While nothing is learned about a model, only this many of its waits poll
            on kie.ai's schedule (*scouts*); the others hold their polls until the scouts' ends
            give a plan (then they follow it, with no polls spent yet), a scout's place is free,
            or ``cold_hold_s`` passed. A burst of identical tasks then learns from a few of them
            instead of polling all of them every 2–3 s. ``0`` turns holding off.
        cold_hold_s: The longest a wait holds its polls for lack of a plan (scaled like the
            intervals).
        external_fallback_factor: With an ``external`` source (callbacks), the first kie.ai
            poll comes only after the expected duration times this factor ...
        external_fallback_min_s: ... and not before this many seconds.
        external_check_interval_s: With an ``external`` source, seconds between two looks at it,
            so a finished task is seen soon after its callback lands. The batch engine's looks
            (``CallbackInbox.aget_next``) share one S3 LIST per half second; an ``external`` that
            makes a request per look (``CallbackInbox.get``) makes four a second per task.
        interval_scale: Multiplies every interval; ``None`` reads ``KIE_POLL_INTERVAL_SCALE``
            (default 1) when a schedule is made.
    """

    deadline_s: float = 900.0
    early_phase_s: float = 30.0
    early_interval_s: tuple[float, float] = (2.0, 3.0)
    middle_phase_s: float = 120.0
    middle_interval_s: tuple[float, float] = (5.0, 10.0)
    late_interval_s: tuple[float, float] = (15.0, 30.0)
    learn: bool = True
    min_samples: int = 3
    # Not much less: submissions come in bursts, and the last few dozen tasks to finish from one
    # burst all took about as long (the time since the burst), which hides the real spread.
    history: int = 256
    target_added_latency: float = 0.05
    poll_budget: float = 3.0
    mean_poll_budget: float = 5.0
    first_poll_quantiles: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    quantile_steps: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25)
    tail_ratios: tuple[float, ...] = (0.06, 0.1, 0.15, 0.25)
    min_interval_s: float = 0.5
    jitter: float = 0.02
    overdue_quantile: float = 0.6
    overdue_query_share: float = 0.5
    cold_scouts: int = 10
    cold_hold_s: float = 30.0
    external_fallback_factor: float = 2.0
    external_fallback_min_s: float = 60.0
    external_check_interval_s: float = 0.25
    interval_scale: float | None = None

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        for name in ("early_interval_s", "middle_interval_s", "late_interval_s"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max")
        if not self.first_poll_quantiles or not all(0 < q < 1 for q in self.first_poll_quantiles):
            raise ValueError("first_poll_quantiles must be numbers between 0 and 1")
        if not self.quantile_steps or not all(0 < q < 1 for q in self.quantile_steps):
            raise ValueError(
                f"quantile_steps must be numbers between 0 and 1, got {self.quantile_steps!r}"
            )
        if not self.tail_ratios or not all(r > 0 for r in self.tail_ratios):
            raise ValueError(f"tail_ratios must be positive numbers, got {self.tail_ratios!r}")
        if self.min_interval_s <= 0 or self.target_added_latency <= 0:
            raise ValueError("min_interval_s and target_added_latency must be positive")
        if self.external_check_interval_s <= 0:
            raise ValueError(
                "external_check_interval_s must be positive, "
                f"got {self.external_check_interval_s!r}"
            )
        if not 1 <= self.poll_budget <= self.mean_poll_budget:
            raise ValueError(
                "need 1 <= poll_budget <= mean_poll_budget, got "
                f"{self.poll_budget!r} and {self.mean_poll_budget!r}"
            )
        if self.cold_scouts < 0 or self.cold_hold_s < 0:
            raise ValueError(
                "cold_scouts and cold_hold_s must not be negative, "
                f"got {self.cold_scouts!r} and {self.cold_hold_s!r}"
            )
        if self.jitter < 0:
            raise ValueError("jitter must not be negative")
        if not 0 < self.overdue_quantile < 1:
            raise ValueError(
                "overdue_quantile must be between 0 and 1 (exclusive), "
                f"got {self.overdue_quantile!r}"
            )
        if not 0 <= self.overdue_query_share <= 1:
            raise ValueError(
                "overdue_query_share must be between 0 and 1 (0 turns overdue polling off), "
                f"got {self.overdue_query_share!r}"
            )

    @property
    def scale(self) -> float:
        """The interval scale in effect (``interval_scale`` or ``KIE_POLL_INTERVAL_SCALE``)."""
        return _env_scale() if self.interval_scale is None else self.interval_scale

    def new_estimator(self) -> DurationEstimator:
        """A :class:`DurationEstimator` with this policy's sample settings."""
        return DurationEstimator(min_samples=self.min_samples, history=self.history)

    def plan(self, durations: Sequence[float]) -> PollPlan | None:
        """The learned plan for these recent durations (see :func:`plan_polls`)."""
        return plan_polls(
            durations,
            target_added_latency=self.target_added_latency,
            poll_budget=self.poll_budget,
            mean_poll_budget=self.mean_poll_budget,
            quantiles=self.first_poll_quantiles,
            quantile_steps=self.quantile_steps,
            tail_ratios=self.tail_ratios,
            min_interval=self.min_interval_s * self.scale,
        )

    def is_overdue(self, estimate: DurationEstimate | None, age: float, older_running: int) -> bool:
        """Whether a task running for ``age`` seconds is overdue (see ``overdue_quantile``).

        Args:
            estimate: Recent durations of the task's model.
            age: Seconds since the task was submitted.
            older_running: Tasks of the model still running that started no later than this one
                (itself included). Without them, the first tasks to finish from a burst (the
                short ones) would make every other task of the burst look overdue.
        """
        if not self.learn or self.overdue_query_share <= 0 or estimate is None:
            return False
        done = bisect.bisect_right(estimate.durations, age)
        return done >= self.overdue_quantile * (estimate.samples + older_running)

    def overdue_interval(self, overdue_tasks: int, queries_per_second: float) -> float:
        """Seconds between polls of one overdue task when ``overdue_tasks`` share
        ``overdue_query_share`` of ``queries_per_second`` (``inf`` when that share is 0)."""
        if self.overdue_query_share <= 0:
            return math.inf
        shared = max(1, overdue_tasks) / (queries_per_second * self.overdue_query_share)
        return max(self.min_interval_s * self.scale, shared)

    def fixed_interval(self, elapsed: float, rng: random.Random | None = None) -> float:
        """kie.ai's advice: seconds until the next poll of a task ``elapsed`` seconds old."""
        if elapsed < self.early_phase_s:
            low, high = self.early_interval_s
        elif elapsed < self.middle_phase_s:
            low, high = self.middle_interval_s
        else:
            low, high = self.late_interval_s
        return (rng or random).uniform(low, high) * self.scale

    def schedule(
        self,
        estimate: DurationEstimate | None,
        *,
        plan: PollPlan | None = None,
        rng: random.Random | None = None,
    ) -> PollSchedule:
        """The poll times of one task, given what tasks of its model took recently.

        Args:
            estimate: Recent durations (``None``: the fixed schedule).
            plan: A plan already learned from them (computed when not given).
            rng: Random source for jitter.
        """
        if not self.learn or estimate is None:
            estimate, plan = None, None
        elif plan is None:
            plan = self.plan(estimate.durations)
        return PollSchedule(self, estimate, plan, self.scale, rng or _JITTER)

    def schedule_for(
        self, estimator: DurationEstimator, model: str | None, *, rng: random.Random | None = None
    ) -> PollSchedule:
        """The schedule of a task of ``model``, learned from ``estimator`` (plans are cached)."""
        if not self.learn:
            return self.schedule(None, rng=rng)
        estimate = estimator.estimate(model)
        plan = estimator.plan(model, self) if estimate is not None else None
        return self.schedule(estimate, plan=plan, rng=rng)


class PollSchedule:
    """Poll times of one task, as seconds since it was submitted.

    Args:
        policy: The policy.
        estimate: Recent durations of the model (``None``: the fixed schedule).
        plan: The learned plan (``None``: the fixed schedule).
        scale: Interval scale.
        rng: Random source for jitter.
    """

    def __init__(
        self,
        policy: PollingPolicy,
        estimate: DurationEstimate | None,
        plan: PollPlan | None,
        scale: float,
        rng: random.Random,
    ) -> None:
        self.policy = policy
        self.estimate = estimate
        self.plan = plan
        self.scale = scale
        self.rng = rng

    @property
    def learned(self) -> bool:
        """True when poll times come from learned durations."""
        return self.plan is not None

    def next_poll_at(self, elapsed: float) -> float:
        """When (seconds since submission) to poll next, given it is ``elapsed`` now."""
        fixed = self.policy.fixed_interval(elapsed, self.rng)
        if self.plan is None:
            return elapsed + fixed
        min_interval = self.policy.min_interval_s * self.scale
        planned = self.plan.next_after(elapsed, min_interval)
        if planned is not None:
            return planned
        dense = max(min_interval, self.plan.tail_ratio * elapsed)
        dense *= 1.0 + self.rng.uniform(0.0, self.policy.jitter)
        return elapsed + min(fixed, dense)

    def first_fallback_at(self) -> float:
        """With an external source of results, when the first kie.ai poll is due."""
        floor = self.policy.external_fallback_min_s * self.scale
        if self.estimate is None:
            return floor
        return max(self.estimate.p50 * self.policy.external_fallback_factor, floor)

    def external_check_interval(self) -> float:
        """With an external source, seconds between two looks at it."""
        return self.policy.external_check_interval_s * self.scale

    def fallback_interval(self, elapsed: float) -> float:
        """With an external source, seconds between two kie.ai fallback polls."""
        return max(self.policy.fixed_interval(elapsed, self.rng), self.first_fallback_at() / 2)
