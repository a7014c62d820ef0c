"""Task durations kept in S3 between runs (``DurationHistory``), on a real SeaweedFS: the next
run's batch engine polls on a learned plan from its first task."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dagster_kie.batch import BatchReport, BatchRunner
from dagster_kie.client import AsyncKieClient
from dagster_kie.duration_history import DURATIONS_KEY, DurationHistory
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.ledger import TaskLedger
from dagster_kie.polling import DurationEstimator
from dagster_kie.prompts import parse_prompt_file
from dagster_kie.rate_limit import RateLimits
from dagster_kie.storage import ImageStore

MODEL = "ideogram/v3-text-to-image"
PREFIX = "team/kie"


@pytest.fixture(autouse=True)
def _fast_polling(fast_polling: None) -> None:
    """kie.ai's fixed schedule at a tenth of its intervals: 0.2–0.3 s between polls."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """Tasks of 2 s (± 5 %), limits that let a whole batch start at once."""
    with EmulatorProcess(
        task_duration=2.0, task_jitter=0.05, create_limit=1000, create_window=1.0, query_limit=1000
    ) as process:
        yield process


def estimator_with(model: str, durations: list[float]) -> DurationEstimator:
    estimator = DurationEstimator()
    for seconds in durations:
        estimator.record(model, seconds)
    return estimator


def stored(s3: Any, bucket: str) -> dict[str, Any]:
    reply = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/{DURATIONS_KEY}")
    data: dict[str, Any] = json.loads(reply["Body"].read())
    return data


def test_saved_durations_load_into_a_new_estimator(s3_bucket: tuple[Any, str]) -> None:
    s3, bucket = s3_bucket
    history = DurationHistory(s3, bucket, PREFIX)
    assert history.load() == {} and history.seed(DurationEstimator(), [MODEL]) == {}

    assert history.save(estimator_with(MODEL, [10.0, 12.5, 11.25]), [MODEL], {})
    assert stored(s3, bucket)["models"][MODEL]["seconds"] == [10.0, 12.5, 11.25]

    fresh = DurationEstimator()
    loaded = history.seed(fresh, [MODEL, "ideogram/v3-remix"])
    assert loaded == {MODEL: [10.0, 12.5, 11.25]}
    assert fresh.recent(MODEL) == [10.0, 12.5, 11.25]
    estimate = fresh.estimate(MODEL)
    assert estimate is not None and estimate.p50 == 11.25
    # nothing new learned: nothing written
    assert not history.save(fresh, [MODEL], loaded)


def test_saving_one_model_keeps_the_others_and_the_newest_durations(
    s3_bucket: tuple[Any, str],
) -> None:
    s3, bucket = s3_bucket
    history = DurationHistory(s3, bucket, PREFIX, keep=3)
    history.save(estimator_with("ideogram/v3-remix", [30.0]), ["ideogram/v3-remix"], {})
    history.save(estimator_with(MODEL, [1.0, 2.0, 3.0, 4.0, 5.0]), [MODEL], {})
    assert history.load() == {"ideogram/v3-remix": [30.0], MODEL: [3.0, 4.0, 5.0]}


def test_stale_malformed_or_foreign_objects_mean_a_cold_start(
    s3_bucket: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    s3, bucket = s3_bucket
    history = DurationHistory(s3, bucket, PREFIX, max_age_s=3600)
    history.save(estimator_with(MODEL, [5.0]), [MODEL], {})
    assert history.load() == {MODEL: [5.0]}
    assert history.load(now=datetime.now(timezone.utc) + timedelta(hours=2)) == {}

    key = f"{PREFIX}/{DURATIONS_KEY}"
    now = datetime.now(timezone.utc).isoformat()
    bodies = [
        b"{not json",
        b"[1, 2]",
        json.dumps({"version": 2, "models": {MODEL: {"updated_at": now, "seconds": [5]}}}),
        json.dumps({"version": 1, "models": {MODEL: {"updated_at": now, "seconds": "5"}}}),
        json.dumps({"version": 1, "models": {MODEL: {"seconds": [5.0]}}}),
    ]
    with caplog.at_level(logging.WARNING, logger="dagster_kie"):
        for body in bodies:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            assert history.load() == {}, body
    assert sum("ignoring s3://" in r.getMessage() for r in caplog.records) == 3

    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(
            {"version": 1, "models": {MODEL: {"updated_at": now, "seconds": [4, True, -1, 6.5]}}}
        ),
    )
    assert history.load() == {MODEL: [4.0, 6.5]}


def run_batch(
    emulator: EmulatorProcess, s3: Any, bucket: str, count: int, *, remember: bool
) -> tuple[BatchReport, list[int]]:
    """``count`` new requests through a BatchRunner on a new client (as a new Dagster run has);
    returns the report and the kie.ai polls each task needed."""
    tag = uuid.uuid4().hex[:8]
    text = "".join(f"a lighthouse in fog, take {n} {tag}\n" for n in range(count))
    requests = list(parse_prompt_file("batch.txt", text.encode()).parsed)

    async def go() -> tuple[BatchReport, list[int]]:
        limits = RateLimits(create_per_window=1000, create_window_s=1.0, queries_per_second=1000)
        async with AsyncKieClient(**emulator.client_options(rate_limits=limits)) as client:
            runner = BatchRunner(
                client=client,
                store=ImageStore(s3, bucket, PREFIX),
                ledger=TaskLedger(s3, bucket, PREFIX),
                durations=DurationHistory(s3, bucket, PREFIX) if remember else None,
            )
            report = await runner.run(requests)
            return report, list(client.polling_stats.polls)

    return asyncio.run(go())


def test_the_next_run_polls_on_what_the_last_one_learned(
    emulator: EmulatorProcess, s3_bucket: tuple[Any, str]
) -> None:
    s3, bucket = s3_bucket
    cold, cold_polls = run_batch(emulator, s3, bucket, 20, remember=True)
    assert cold.count("stored") == 20
    # every task started before any ended: the scouts poll on kie.ai's fixed schedule, a poll
    # every 0.2–0.3 s, until what they learn plans the others' polls
    assert max(cold_polls) >= 5, cold_polls
    learned = stored(s3, bucket)["models"][MODEL]["seconds"]
    assert len(learned) == 20 and all(1.5 < s < 2.6 for s in learned), learned

    warm, warm_polls = run_batch(emulator, s3, bucket, 20, remember=True)
    assert warm.count("stored") == 20
    # the first poll of each task comes near its expected end
    assert statistics.median(warm_polls) <= 2, warm_polls
    assert len(stored(s3, bucket)["models"][MODEL]["seconds"]) == 40

    # the same run without the stored durations starts cold again
    _, again_cold = run_batch(emulator, s3, bucket, 20, remember=False)
    assert max(again_cold) >= 5, again_cold
    assert sum(again_cold) >= 2 * sum(warm_polls), (again_cold, warm_polls)
