"""How many S3 calls the batch engine makes, counted on a real SeaweedFS with the real emulator.

The batch's ledger entries and manifests are read in bulk before any createTask (a LIST page per
1,000 objects, then GETs of what exists only), and the run's ledger writes are PUTs on the entry
it holds, never a GET first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from dagster_kie.batch import BatchReport, BatchRunner
from dagster_kie.client import AsyncKieClient
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.ledger import TaskLedger
from dagster_kie.local_s3 import LocalS3Server
from dagster_kie.prompts import ParsedRequest, parse_prompt_file
from dagster_kie.rate_limit import RateLimits
from dagster_kie.storage import ImageStore

PREFIX = "calls"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """Short tasks and limits high enough for 1,000 createTasks in about a second."""
    with EmulatorProcess(
        task_duration=0.2, create_limit=2000, create_window=1.0, query_limit=2000
    ) as process:
        yield process


class S3Calls:
    """Counts a client's S3 operations, and snapshots them when the first createTask is sent."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.all: Counter[str] = Counter()
        self.before_first_create: Counter[str] | None = None
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.all[model.name] += 1

    def first_create(self) -> None:
        if self.before_first_create is None:
            self.before_first_create = Counter(self.all)

    def reset(self) -> None:
        self.all.clear()
        self.before_first_create = None


@pytest.fixture
def calls(local_s3: LocalS3Server) -> Iterator[tuple[S3Calls, str]]:
    """A fresh bucket and a client of its own whose S3 calls are counted."""
    client = local_s3.client(max_pool_connections=24)
    bucket = f"calls-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    counter = S3Calls(client)
    counter.reset()
    yield counter, bucket
    client.close()


def requests_of(count: int) -> list[ParsedRequest]:
    tag = uuid.uuid4().hex[:8]
    text = "".join(f"a red fox number {n} {tag}\n" for n in range(count))
    batch = parse_prompt_file("batch.txt", text.encode())
    assert len(batch.parsed) == count
    return list(batch.parsed)


def run_batch(
    emulator: EmulatorProcess,
    counter: S3Calls,
    bucket: str,
    requests: list[ParsedRequest],
    *,
    submit_only: bool = False,
    prepare: Callable[[AsyncKieClient, BatchRunner], Awaitable[None]] | None = None,
    **runner_options: Any,
) -> BatchReport:
    """Run ``requests`` through a BatchRunner on ``counter``'s client; ``prepare`` runs first."""

    async def go() -> BatchReport:
        limits = RateLimits(create_per_window=2000, create_window_s=1.0, queries_per_second=2000)
        async with AsyncKieClient(**emulator.client_options(rate_limits=limits)) as client:
            create_task = client.create_task

            async def counted_create(*args: Any, **kwargs: Any) -> Any:
                counter.first_create()
                return await create_task(*args, **kwargs)

            client.create_task = counted_create  # type: ignore[method-assign]
            runner = BatchRunner(
                client=client,
                store=ImageStore(counter.client, bucket, PREFIX),
                ledger=TaskLedger(counter.client, bucket, PREFIX),
                **runner_options,
            )
            if prepare is not None:
                await prepare(client, runner)
            return await runner.run(requests, submit_only=submit_only)

    return asyncio.run(go())


def test_a_new_batch_of_1000_reads_s3_in_pages_before_its_first_create(
    emulator: EmulatorProcess, calls: tuple[S3Calls, str]
) -> None:
    counter, bucket = calls
    requests = requests_of(1000)
    report = run_batch(emulator, counter, bucket, requests, submit_only=True)

    assert report.count("submitted") == 1000 and report.tasks_created == 1000
    before = counter.before_first_create
    assert before is not None
    # one LIST of the model's folder and one of the ledger, both empty; then the first intent
    # (and the intents written meanwhile on the submit pool: these limits let all 1,000 queue
    # at once, yet far fewer than 1,000 start before the first createTask)
    assert before["ListObjectsV2"] == 2, before
    assert before["GetObject"] == 0 and before["HeadObject"] == 0, before
    assert before["PutObject"] < 100, before
    # afterwards: the intent and the task id, one PUT each, no GET
    assert counter.all == Counter({"ListObjectsV2": 2, "PutObject": 2000}), counter.all


def test_a_full_run_makes_five_puts_per_request_and_a_rerun_reads_in_bulk(
    emulator: EmulatorProcess, calls: tuple[S3Calls, str]
) -> None:
    counter, bucket = calls
    requests = requests_of(40)
    report = run_batch(emulator, counter, bucket, requests)

    assert report.count("stored") == 40, [o.error for o in report.failures]
    # intent, task id, image, manifest, succeeded: one PUT each; the image through PutObject
    # (no multipart upload for a small image), and no GET of the ledger before a write
    assert counter.all == Counter({"ListObjectsV2": 2, "PutObject": 5 * 40}), counter.all

    counter.reset()
    again = run_batch(emulator, counter, bucket, requests)
    assert again.count("already_stored") == 40 and again.tasks_created == 0
    # the model's folder is listed once, each manifest read once; the ledger is not needed
    assert counter.all == Counter({"ListObjectsV2": 1, "GetObject": 40}), counter.all
    assert [o.images for o in again.outcomes] == [o.images for o in report.outcomes]
    assert [o.manifest_uri for o in again.outcomes] == [o.manifest_uri for o in report.outcomes]


def test_ledger_entries_found_in_bulk_resume_their_tasks(
    emulator: EmulatorProcess, calls: tuple[S3Calls, str]
) -> None:
    counter, bucket = calls
    requests = requests_of(30)
    submitted = run_batch(emulator, counter, bucket, requests, submit_only=True)
    assert submitted.tasks_created == 30

    counter.reset()
    finished = run_batch(emulator, counter, bucket, requests)
    assert finished.count("stored") == 30 and finished.tasks_created == 0
    assert [o.task_id for o in finished.outcomes] == [o.task_id for o in submitted.outcomes]
    # LIST both folders, GET the 30 entries found (not once per request and write)
    assert counter.all["ListObjectsV2"] == 2 and counter.all["GetObject"] == 30, counter.all
    assert counter.all["PutObject"] == 3 * 30, counter.all  # image, manifest, succeeded


def test_a_task_recorded_while_the_run_resubmits_is_resumed_not_paid_again(
    emulator: EmulatorProcess, calls: tuple[S3Calls, str]
) -> None:
    """resubmit_unconfirmed: the receiver records the task of an unconfirmed request after the
    run stopped waiting for it and before its new intent; the run resumes that task."""
    counter, bucket = calls
    [item] = requests_of(1)
    ledger = TaskLedger(counter.client, bucket, PREFIX)
    ledger.record_intent(item.request_id, item.request.model)  # an earlier run's lost reply

    made: list[str] = []

    async def prepare(client: AsyncKieClient, runner: BatchRunner) -> None:
        made.append(await client.create_task(item.request))  # the task that earlier run made

        async def late_callback(*_: Any) -> None:
            # what the receiver does when that task's callback finally arrives
            ledger.record_submitted(item.request_id, item.request.model, made[0])
            return None

        runner._confirm = late_callback  # type: ignore[method-assign]

    creates = emulator.admin.stats()["create_calls"]
    report = run_batch(
        emulator, counter, bucket, [item], prepare=prepare, resubmit_unconfirmed=True
    )
    task_id = made[0]
    [outcome] = report.outcomes
    assert outcome.status == "stored", outcome.error
    assert outcome.task_id == task_id and not outcome.created_task
    assert emulator.admin.stats()["create_calls"] == creates + 1  # only the earlier run's
