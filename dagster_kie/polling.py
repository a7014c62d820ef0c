"""When to ask kie.ai whether a task is done: a fixed schedule that learns.

:class:`PollingPolicy` starts from kie.ai's own advice (every 2–3 s for the first 30 s, every
5–10 s up to two minutes, every 15–30 s after that, give up after 15 minutes) and adds learning:
a :class:`DurationEstimator`, shared by every call of one client, records how long finished tasks
took per model. Once a model has a few samples, the first poll is scheduled at the expected
completion time (a quantile of the recent durations) and later polls follow densely, each at most
``step_ratio`` (10 %) of the elapsed time apart — so a task is typically seen done at its first or
second poll, and noticing the end late adds at most about 10 % to its wall time.

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

import itertools
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
    "PollSchedule",
    "PollingPolicy",
    "PollingStats",
]

POLL_SCALE_ENV = "KIE_POLL_INTERVAL_SCALE"
"""Environment variable scaling every polling interval (float, default 1)."""

ANY_MODEL = "*"


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
    """What recent tasks of one model took, in seconds.

    Attributes:
        samples: How many durations this is based on.
        p25: 25th percentile.
        p50: Median.
        p75: 75th percentile.
        p90: 90th percentile.
    """

    samples: int
    p25: float
    p50: float
    p75: float
    p90: float

    def quantile(self, q: float) -> float:
        """A quantile between the stored ones (linear between p25, p50, p75, p90)."""
        points = ((0.0, self.p25), (0.25, self.p25), (0.5, self.p50), (0.75, self.p75),
                  (0.9, self.p90), (1.0, self.p90))  # fmt: skip
        for (q0, v0), (q1, v1) in itertools.pairwise(points):
            if q <= q1:
                return v0 if q1 == q0 else v0 + (v1 - v0) * (q - q0) / (q1 - q0)
        return self.p90


class DurationEstimator:
    """Recent task durations per model (thread-safe), shared by the calls of one client.

    Args:
        min_samples: Durations needed before an estimate is given.
        history: Durations kept per model (the most recent ones).
    """

    def __init__(self, *, min_samples: int = 3, history: int = 64) -> None:
        if min_samples < 1 or history < min_samples:
            raise ValueError("need 1 <= min_samples <= history")
        self.min_samples = min_samples
        self.history = history
        self._lock = threading.Lock()
        self._durations: dict[str, deque[float]] = {}

    def record(self, model: str | None, seconds: float) -> None:
        """Remember that a task of ``model`` took ``seconds`` (also counted for any model)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        with self._lock:
            for key in {model or ANY_MODEL, ANY_MODEL}:
                self._durations.setdefault(key, deque(maxlen=self.history)).append(seconds)

    def estimate(self, model: str | None) -> DurationEstimate | None:
        """Quantiles of the recent durations of ``model`` (or of any model when unknown).

        Returns:
            ``None`` until ``min_samples`` durations were recorded.
        """
        with self._lock:
            samples = self._durations.get(model or ANY_MODEL)
            if not samples and model:
                samples = self._durations.get(ANY_MODEL)
            if samples is None or len(samples) < self.min_samples:
                return None
            ordered = sorted(samples)
        return DurationEstimate(
            samples=len(ordered),
            p25=_quantile(ordered, 0.25),
            p50=_quantile(ordered, 0.5),
            p75=_quantile(ordered, 0.75),
            p90=_quantile(ordered, 0.9),
        )

    def models(self) -> list[str]:
        """Models with recorded durations (``"*"`` is every model together)."""
        with self._lock:
            return sorted(self._durations)

    def __repr__(self) -> str:
        with self._lock:
            counts = {key: len(values) for key, values in self._durations.items()}
        return f"DurationEstimator({counts})"


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
        first_poll_quantile: Quantile of recent durations at which the first poll is made.
        step_ratio: After that, polls are at most this fraction of the elapsed time apart
            (and never further apart than the fixed schedule).
        min_interval_s: Shortest interval between two polls.
        jitter: Relative random spread added to learned intervals (fixed intervals are drawn
            from their (min, max) range).
        external_fallback_factor: With an ``external`` source (callbacks), the first kie.ai
            poll comes only after the expected duration times this factor ...
        external_fallback_min_s: ... and not before this many seconds.
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
    history: int = 64
    first_poll_quantile: float = 0.5
    step_ratio: float = 0.1
    min_interval_s: float = 0.5
    jitter: float = 0.05
    external_fallback_factor: float = 2.0
    external_fallback_min_s: float = 60.0
    interval_scale: float | None = None

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        for name in ("early_interval_s", "middle_interval_s", "late_interval_s"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max")
        if not 0 < self.first_poll_quantile < 1:
            raise ValueError("first_poll_quantile must be between 0 and 1")
        if self.step_ratio <= 0 or self.min_interval_s <= 0 or self.jitter < 0:
            raise ValueError("step_ratio and min_interval_s must be positive, jitter >= 0")

    @property
    def scale(self) -> float:
        """The interval scale in effect (``interval_scale`` or ``KIE_POLL_INTERVAL_SCALE``)."""
        return _env_scale() if self.interval_scale is None else self.interval_scale

    def new_estimator(self) -> DurationEstimator:
        """A :class:`DurationEstimator` with this policy's sample settings."""
        return DurationEstimator(min_samples=self.min_samples, history=self.history)

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
        rng: random.Random | None = None,
    ) -> PollSchedule:
        """The poll times of one task, given what tasks of its model took recently."""
        return PollSchedule(
            self, estimate if self.learn else None, self.scale, rng or random.Random()
        )


class PollSchedule:
    """Poll times of one task, as seconds since it was submitted.

    Args:
        policy: The policy.
        estimate: Recent durations of the model (``None``: the fixed schedule).
        scale: Interval scale.
        rng: Random source for jitter.
    """

    def __init__(
        self,
        policy: PollingPolicy,
        estimate: DurationEstimate | None,
        scale: float,
        rng: random.Random,
    ) -> None:
        self.policy = policy
        self.estimate = estimate
        self.scale = scale
        self.rng = rng

    @property
    def expected_s(self) -> float | None:
        """The expected completion time (the first learned poll), if learned."""
        if self.estimate is None:
            return None
        return self.estimate.quantile(self.policy.first_poll_quantile)

    def next_poll_at(self, elapsed: float) -> float:
        """When (seconds since submission) to poll next, given it is ``elapsed`` now."""
        expected = self.expected_s
        fixed = self.policy.fixed_interval(elapsed, self.rng)
        if expected is None:
            return elapsed + fixed
        if elapsed < expected:
            return expected
        dense = max(self.policy.min_interval_s * self.scale, self.policy.step_ratio * elapsed)
        dense *= 1.0 + self.rng.uniform(0.0, self.policy.jitter)
        return elapsed + min(fixed, dense)

    def first_fallback_at(self) -> float:
        """With an external source of results, when the first kie.ai poll is due."""
        expected = self.expected_s
        floor = self.policy.external_fallback_min_s * self.scale
        if expected is None:
            return floor
        return max(expected * self.policy.external_fallback_factor, floor)

    def fallback_interval(self, elapsed: float) -> float:
        """With an external source, seconds between two kie.ai fallback polls."""
        return max(self.policy.fixed_interval(elapsed, self.rng), self.first_fallback_at() / 2)
