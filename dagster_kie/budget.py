"""Spend control: never let a run spend more credits than the user allowed.

A :class:`SpendGuard` reserves the expected cost of each submission before it is sent and settles
it with what the task really consumed. When the next submission would cross the run's or the day's
budget, :meth:`SpendGuard.reserve` raises :class:`~dagster_kie.errors.BudgetExceededError` and
nothing is sent; tasks already in flight still finish and are stored.

The day's spend is shared by every run through S3 (one small object per run under
``{prefix}/_spend/{YYYY-MM-DD}/``), so concurrent runs on different machines add up. A run writes
its total at most every ``write_interval_s`` (and at :meth:`SpendGuard.flush`) and re-reads the
others' at most every ``refresh_interval_s``, so concurrent runs see each other's spend that much
late: the day budget is exact for runs that follow each other, and within those few seconds of
submissions per concurrent run otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dagster_kie.errors import BudgetExceededError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CreditBudget", "DailySpendLog", "SpendGuard"]

_TOLERANCE = 1e-6
"""Credits are sums of floats (1.6 * 3 = 4.800000000000001): a budget is crossed only beyond it."""


@dataclass(frozen=True)
class CreditBudget:
    """Limits on credits spent.

    Args:
        per_run: Most credits one run may spend (``None``: no limit).
        per_day: Most credits all runs together may spend in one UTC day (``None``: no limit).
        credits_per_image: Expected cost of one image before any task has reported its cost
            (kie.ai's price list; the guard learns the real cost from finished tasks).
    """

    per_run: float | None = None
    per_day: float | None = None
    credits_per_image: float = 1.6

    @property
    def enabled(self) -> bool:
        """True when any limit is set."""
        return self.per_run is not None or self.per_day is not None


class DailySpendLog:
    """Credits spent per UTC day by every run, kept in S3 (one object per run and day)."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "kie") -> None:
        self._client = client
        self._bucket = bucket
        self._root = f"{prefix.strip('/')}/_spend"

    @staticmethod
    def today() -> str:
        """Today's UTC date, ISO format."""
        return datetime.now(timezone.utc).date().isoformat()

    def spent_by_others(self, day: str, run_id: str) -> float:
        """Credits every other run recorded for ``day``."""
        total = 0.0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{self._root}/{day}/"):
            for item in page.get("Contents", []):
                if item["Key"].endswith(f"/{run_id}.json"):
                    continue
                body = self._client.get_object(Bucket=self._bucket, Key=item["Key"])["Body"]
                total += float(json.loads(body.read()).get("credits", 0.0))
        return total

    def record(self, day: str, run_id: str, credits: float) -> None:
        """Write this run's total for ``day`` (a whole-object PUT; only this run writes it)."""
        self._client.put_object(
            Bucket=self._bucket,
            Key=f"{self._root}/{day}/{run_id}.json",
            Body=json.dumps({"run_id": run_id, "credits": credits}).encode(),
            ContentType="application/json",
        )


@dataclass
class SpendGuard:
    """Reserves and settles credits for one run against a :class:`CreditBudget` (thread-safe).

    Args:
        budget: The limits.
        run_id: This run's id (names its spend record).
        log: Where the day's spend is shared; required for a ``per_day`` limit.
        balance: The account balance read from the credits endpoint at the start, if known;
            submissions stop before they would need more than it.
        refresh_interval_s: Least time between two reads of the other runs' spend today.
        write_interval_s: Least time between two writes of this run's spend today.
    """

    budget: CreditBudget
    run_id: str = "local"
    log: DailySpendLog | None = None
    balance: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    refresh_interval_s: float = 10.0
    write_interval_s: float = 2.0
    _per_image: float = field(init=False)
    _others_today: float = field(init=False, default=0.0)
    _day: str = field(init=False, default="")
    _refreshed_at: float = field(init=False, default=0.0)
    _written_at: float = field(init=False, default=0.0)
    _unwritten: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._per_image = self.budget.credits_per_image
        if self.budget.per_day is not None:
            if self.log is None:
                raise ValueError("a per_day budget needs a DailySpendLog to share the day's spend")
            self._day = self.log.today()
            self._refresh_others()

    def _refresh_others(self) -> None:
        assert self.log is not None
        others = self.log.spent_by_others(self._day, self.run_id)
        with self._lock:
            self._others_today = others
            self._refreshed_at = time.monotonic()

    def estimate(self, num_images: int) -> float:
        """Expected credits of a request with ``num_images`` images."""
        return self._per_image * num_images

    def reserve(self, num_images: int) -> float:
        """Reserve the expected cost of one submission, or raise if it would cross a limit.

        Returns:
            The amount reserved (pass it to :meth:`settle`).

        Raises:
            BudgetExceededError: naming the limit, what was spent and what the next one needs.
        """
        cost = self.estimate(num_images)
        if (
            self.budget.per_day is not None
            and time.monotonic() - self._refreshed_at >= self.refresh_interval_s
        ):
            self._refresh_others()
        with self._lock:
            committed = self.spent + self.reserved
            if (
                self.budget.per_run is not None
                and committed + cost > self.budget.per_run + _TOLERANCE
            ):
                raise BudgetExceededError(
                    f"credit budget per run of {self.budget.per_run:g} reached: "
                    f"{self.spent:g} spent, {self.reserved:g} in flight, next request needs "
                    f"~{cost:g}"
                )
            if self.budget.per_day is not None:
                today = self._others_today + committed
                if today + cost > self.budget.per_day + _TOLERANCE:
                    raise BudgetExceededError(
                        f"credit budget per day of {self.budget.per_day:g} reached: "
                        f"{today:g} spent or in flight today, next request needs ~{cost:g}"
                    )
            if self.balance is not None and committed + cost > self.balance + _TOLERANCE:
                raise BudgetExceededError(
                    f"account balance of {self.balance:g} credits would be exceeded: "
                    f"{committed:g} committed in this run, next request needs ~{cost:g}"
                )
            self.reserved += cost
            return cost

    def settle(self, reserved: float, actual: float | None, num_images: int) -> None:
        """Replace a reservation with what the task really cost (``None``/0 for a failed task)."""
        with self._lock:
            self.reserved = max(0.0, self.reserved - reserved)
            if actual:
                self.spent += actual
                self._per_image = max(self._per_image, actual / max(num_images, 1))
                self._unwritten = True
        if time.monotonic() - self._written_at >= self.write_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write this run's spend today to the shared log now, if it changed (call at the end)."""
        if self.log is None or self.budget.per_day is None:
            return
        with self._lock:
            if not self._unwritten:
                return
            self._unwritten = False
            self._written_at = time.monotonic()
            spent = self.spent
        self.log.record(self._day, self.run_id, spent)

    def summary(self) -> dict[str, Any]:
        """Figures for metadata."""
        return {
            "kie.budget_per_run": self.budget.per_run,
            "kie.budget_per_day": self.budget.per_day,
            "kie.credits_spent": self.spent,
        }
