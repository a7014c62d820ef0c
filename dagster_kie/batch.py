"""The batch engine: submit, wait, download and store many requests at the API's pace.

No Dagster here: the assets call it, the benchmarks call it directly. Each request runs its own
pipeline (resolve inputs → createTask → wait → download → S3 → manifest), all of them concurrently,
so a batch of 1,000 is limited by kie.ai's rate limits and task durations, not by this process.

The money rules, in order:

1. A request whose manifest is already in S3 is done: nothing is sent.
2. A request the ledger knows a task for resumes waiting on that task: nothing is paid again.
3. Otherwise the intent is written to the ledger *before* ``createTask`` (at the client's
   createTask pace, so only requests really about to be sent have one) and the task id right
   after it returns. A crash between the two (or a createTask whose reply was lost after it was
   sent) leaves an entry in state ``submitting``; it is not resent blindly (the task may exist):
   with callbacks on, the receiver records its task id from the callback (``callBackUrl`` names
   the request) and the run waits for that, up to ``confirm_timeout_s`` after the intent;
   otherwise it is reported as ``unconfirmed`` (not retried, never paid twice) until the user
   allows a resubmission.
4. A task that failed (not charged by kie.ai) is resubmitted only if its error was retryable.

S3 traffic: before any request starts, the run reads the whole batch's state in bulk (the ledger
and each model's folder listed in pages, then only the entries and manifests that exist are
read), so a new batch of 1,000 costs a few calls, not two per request. The run owns its request
ids, so its ledger writes build on the entry it last read or wrote (one PUT each, see
:mod:`dagster_kie.ledger`); the intent and the task id are written on their own small thread pool,
so that uploads queued in the main one never delay a createTask. Threads are capped by the S3
client's connection pool (``max_pool_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image

from dagster_kie.budget import SpendGuard
from dagster_kie.callbacks import CallbackInbox, callback_url_for
from dagster_kie.client import AsyncKieClient
from dagster_kie.duration_history import DurationHistory
from dagster_kie.errors import GenerationFailedError, KieError, TransportError
from dagster_kie.ledger import LedgerConflictError, LedgerEntry, TaskLedger
from dagster_kie.models import TaskRecord, image_sources, with_image_sources
from dagster_kie.prompts import ParsedRequest
from dagster_kie.rate_limit import SlidingWindow
from dagster_kie.storage import ImageStore, UnsafeKeyError, connection_pool_size, parse_s3_uri

__all__ = ["BatchReport", "BatchRunner", "RequestOutcome", "StoredImage", "is_transient_error"]

logger = logging.getLogger("dagster_kie")

CRASH_AFTER_CREATE_ENV = "DAGSTER_KIE_TEST_CRASH_AFTER_CREATE"
"""Test hook: ``n`` makes the run ``kill -9`` its own process group right after the n-th
createTask of the run returned and before its task id is written to the ledger (the hardest crash
window). Never set it outside the crash tests."""

Status = Literal["stored", "already_stored", "submitted", "failed", "unconfirmed"]
T = TypeVar("T")

_SPOOL_BYTES = 2 * 1024 * 1024
_SUBMIT_THREADS = 4
_CONTENT_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class StoredImage:
    """One image stored in S3."""

    index: int
    key: str
    uri: str
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    source_url: str


@dataclass
class RequestOutcome:
    """What happened to one request in this run."""

    request_id: str
    model: str
    file: str
    line: int
    expected_images: int
    expected_size: tuple[int, int] | None
    status: Status = "submitted"
    task_id: str | None = None
    created_task: bool = False
    images: list[StoredImage] = field(default_factory=list)
    manifest_uri: str | None = None
    credits: float | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool | None = None
    wait_seconds: float | None = None
    reserved_credits: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the request's images are in S3 (now or from an earlier run)."""
        return self.status in ("stored", "already_stored")


@dataclass
class BatchReport:
    """Outcomes of one batch, with the figures the assets put in metadata."""

    outcomes: list[RequestOutcome]
    elapsed_seconds: float

    def count(self, *statuses: Status) -> int:
        """How many outcomes have one of these statuses."""
        return sum(1 for outcome in self.outcomes if outcome.status in statuses)

    @property
    def tasks_created(self) -> int:
        """createTask calls that created a task in this run."""
        return sum(1 for outcome in self.outcomes if outcome.created_task)

    @property
    def credits_spent(self) -> float:
        """Credits consumed by tasks that finished in this run."""
        return sum(
            outcome.credits or 0.0 for outcome in self.outcomes if outcome.status == "stored"
        )

    @property
    def failures(self) -> list[RequestOutcome]:
        """Requests that failed or could not be confirmed."""
        return [o for o in self.outcomes if o.status in ("failed", "unconfirmed")]

    @property
    def all_retryable(self) -> bool:
        """True when every failure may succeed if the partition is run again."""
        return all(o.retryable for o in self.failures)

    @property
    def any_retryable(self) -> bool:
        """True when some failure may succeed if the partition is run again."""
        return any(o.retryable for o in self.failures)


class BatchRunner:
    """Runs a batch of requests through kie.ai into S3, at most once per request.

    Args:
        client: An open :class:`AsyncKieClient` (its rate limiter paces every call).
        store: Where images and manifests go.
        ledger: The durable request → task map.
        inbox: Callback payloads stored by the receiver; with it, waiting reads S3 first.
        callback_url: The receiver's public URL; sent as ``callBackUrl`` with each task.
        max_in_flight: Requests processed at once (waiting costs nothing, keep it high).
        max_downloads: Concurrent downloads/uploads (bounds memory and threads).
        resubmit_unconfirmed: Resend requests left in state ``submitting`` by a crash. This may
            pay twice for them; only set it when you know those tasks were never created.
        spend: Credit budget guard; when the next submission would cross it, no more tasks are
            created (those in flight still finish).
        confirm_timeout_s: With callbacks on, how long after an unconfirmed createTask (state
            ``submitting``) to wait for the receiver to record its task id.
        on_progress: Called with a one-line summary now and then.
        durations: Where recent task durations are kept between runs: loaded before the first
            request (so polling follows a learned plan from the first task) and saved at the end.
    """

    def __init__(
        self,
        *,
        client: AsyncKieClient,
        store: ImageStore,
        ledger: TaskLedger,
        inbox: CallbackInbox | None = None,
        callback_url: str | None = None,
        max_in_flight: int = 2000,
        max_downloads: int = 16,
        resubmit_unconfirmed: bool = False,
        spend: SpendGuard | None = None,
        confirm_timeout_s: float = 900.0,
        on_progress: Callable[[str], None] | None = None,
        durations: DurationHistory | None = None,
    ) -> None:
        self._spend = spend
        self._confirm_timeout_s = confirm_timeout_s
        self._creates_returned = 0
        self._crash_after_create = int(os.environ.get(CRASH_AFTER_CREATE_ENV) or 0)
        # Intents are written at the client's createTask pace, just before each send: a crash then
        # leaves at most the few requests really in flight in state 'submitting', not every
        # request still queued behind the rate limit.
        create_window = client.rate_limiter.create
        self._intent_pace = SlidingWindow(create_window.limit, create_window.window_s)
        self._client = client
        self._store = store
        self._ledger = ledger
        self._inbox = inbox
        self._callback_url = callback_url
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._downloads = asyncio.Semaphore(max_downloads)
        # No more threads than the S3 clients have connections (extra ones only queue on
        # urllib3's pool lock), and a few of them kept for the ledger writes around createTask,
        # so that the rate limiter, not the queue of uploads, paces createTask.
        connections = min(connection_pool_size(store.client), connection_pool_size(ledger.client))
        submit_threads = max(1, min(_SUBMIT_THREADS, connections // 4))
        io_threads = max(1, min(max_downloads + 8, connections - submit_threads))
        self._io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="kie-s3")
        self._submit_io = ThreadPoolExecutor(
            max_workers=submit_threads, thread_name_prefix="kie-s3-submit"
        )
        self._io_threads = io_threads
        # The ledger entry of each request as last read or written by this run: the run owns its
        # request ids, so its writes build on these instead of reading the entry again.
        self._entries: dict[str, LedgerEntry | None] = {}
        self._manifests: dict[str, list[dict[str, Any]]] = {}
        self._resubmit_unconfirmed = resubmit_unconfirmed
        self._on_progress = on_progress or (lambda line: logger.info(line))
        self._done = 0
        self._durations = durations

    async def _io_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    async def _submit_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._submit_io, lambda: fn(*args, **kwargs))

    async def run(
        self, requests: Sequence[ParsedRequest], *, submit_only: bool = False
    ) -> BatchReport:
        """Process every request; never raises for one request's failure (see the report).

        Args:
            requests: Validated requests (deduplicated by request id).
            submit_only: Stop after each task exists (for materializing only the tasks asset).
        """
        started = time.monotonic()
        try:
            await self._read_state(requests)
            # only requests not already stored will wait for a task
            models = sorted({r.request.model for r in requests if r.request_id in self._entries})
            loaded = await self._seed_durations(models)
            total = len(requests)
            progress = asyncio.create_task(self._report_progress(total))
            try:
                outcomes = await asyncio.gather(
                    *(self._process(item, submit_only) for item in requests)
                )
            finally:
                progress.cancel()
                if self._durations is not None:
                    await self._io_call(
                        self._durations.save, self._client.estimator, models, loaded
                    )
        finally:
            self._io.shutdown(wait=False)
            self._submit_io.shutdown(wait=False)
        report = BatchReport(outcomes=list(outcomes), elapsed_seconds=time.monotonic() - started)
        self._on_progress(
            f"kie batch done in {report.elapsed_seconds:.1f}s: "
            f"{report.tasks_created} tasks created, "
            f"{report.count('stored')} stored, {report.count('already_stored')} already stored, "
            f"{len(report.failures)} failed"
        )
        return report

    async def _seed_durations(self, models: list[str]) -> dict[str, list[float]]:
        """Start the client's duration estimator from the durations earlier runs stored."""
        if self._durations is None:
            return {}
        loaded = await self._io_call(self._durations.seed, self._client.estimator, models)
        learned = {m: len(loaded[m]) for m in models if m in loaded}
        if learned:
            self._on_progress(
                "kie batch: polling starts from task durations of earlier runs ("
                + ", ".join(f"{m}: {n}" for m, n in learned.items())
                + ")"
            )
        return loaded

    async def _read_state(self, requests: Sequence[ParsedRequest]) -> None:
        """Read the ledger entries and manifests of the whole batch in bulk, before any request.

        A LIST page names up to 1,000 objects, so a new batch costs a few calls whatever its size
        instead of a GET and a LIST per request; only the manifests and entries that exist are
        read, and the ledger only for requests not already stored.
        """
        by_model: dict[str, list[str]] = {}
        for item in requests:
            by_model.setdefault(item.request.model, []).append(item.request_id)
        for found in await asyncio.gather(
            *(self._io_call(self._manifests_of, model, group) for model, group in by_model.items())
        ):
            self._manifests.update(found)
        pending = [
            item.request_id
            for item in requests
            if not _complete(self._manifests.get(item.request_id), item.request.num_images)
        ]
        entries = await self._io_call(self._ledger.get_many, pending)
        self._entries = {request_id: entries.get(request_id) for request_id in pending}

    def _manifests_of(self, model: str, request_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The manifests of one model's requests; none known if the bulk read fails.

        Requests left out read their own manifests when they start, so that an unsafe model id
        or a malformed manifest fails those requests alone, as it would without the bulk read.
        """
        try:
            return self._store.find_manifests_many(model, request_ids, max_workers=self._io_threads)
        except UnsafeKeyError:
            return {}
        except (OSError, ValueError, BotoCoreError, ClientError) as error:
            logger.warning("bulk manifest read for %s failed, reading one by one: %s", model, error)
            return {}

    async def _report_progress(self, total: int) -> None:
        while True:
            await asyncio.sleep(15)
            self._on_progress(f"kie batch: {self._done}/{total} requests finished")

    async def _process(self, item: ParsedRequest, submit_only: bool) -> RequestOutcome:
        request = item.request
        outcome = RequestOutcome(
            request_id=item.request_id,
            model=request.model,
            file=item.file,
            line=item.line,
            expected_images=request.num_images,
            expected_size=_expected_size(request.image_size),
        )
        async with self._in_flight:
            try:
                await self._advance(item, outcome, submit_only)
            except KieError as error:
                outcome.status = "failed"
                outcome.error = str(error)
                outcome.error_type = type(error).__name__
                outcome.retryable = error.retryable
            except (OSError, ValueError, BotoCoreError, ClientError) as error:
                outcome.status = "failed"
                outcome.error = f"{type(error).__name__}: {error}"
                outcome.error_type = type(error).__name__
                outcome.retryable = is_transient_error(error)
            finally:
                self._done += 1
        return outcome

    async def _advance(
        self, item: ParsedRequest, outcome: RequestOutcome, submit_only: bool
    ) -> None:
        request = item.request
        manifests = self._manifests.pop(item.request_id, None)
        if manifests is None:
            manifests = await self._io_call(
                self._store.find_manifests, request.model, item.request_id
            )
        complete = _complete(manifests, request.num_images)
        if complete:
            outcome.status = "already_stored"
            outcome.task_id = complete[0].get("task_id")
            outcome.manifest_uri = complete[0].get("manifest_uri")
            outcome.images = [_image_from_manifest(image) for image in complete[0]["images"]]
            return

        task_id = await self._task_for(item, outcome)
        if task_id is None:
            return
        outcome.task_id = task_id
        if submit_only:
            outcome.status = "submitted"
            return

        waited = time.monotonic()
        external = self._inbox.aget_next if self._inbox is not None else None
        try:
            record = await self._client.wait(task_id, model=request.model, external=external)
        except GenerationFailedError as error:
            self._settle(outcome, None)
            await self._record(
                self._io_call,
                self._ledger.record_failed,
                item.request_id,
                str(error),
                error.retryable,
            )
            raise
        outcome.wait_seconds = time.monotonic() - waited
        outcome.credits = record.credits_consumed
        self._settle(outcome, record.credits_consumed)
        await self._store_results(item, record, outcome)

    async def _task_for(self, item: ParsedRequest, outcome: RequestOutcome) -> str | None:
        """The task to wait on: a recorded one, or a new one created now."""
        entry = self._entries.get(item.request_id)
        if entry is not None and entry.task_id and entry.state in ("submitted", "succeeded"):
            return entry.task_id
        if entry is not None and entry.state == "failed" and not entry.retryable:
            outcome.status = "failed"
            outcome.error = f"an earlier task failed permanently: {entry.error}"
            outcome.retryable = False
            outcome.task_id = entry.task_id
            return None
        if entry is not None and entry.state == "submitting":
            # The receiver may have learned the task id from a callback since we last looked.
            task_id = await self._confirm(item, _epoch(entry.updated_at))
            if task_id is not None:
                return task_id
            if not self._resubmit_unconfirmed:
                self._unconfirmed(
                    outcome,
                    "a createTask for this request may have been sent before an earlier run "
                    "stopped, and its task id was never recorded",
                )
                return None
        return await self._create(item, outcome)

    async def _confirm(self, item: ParsedRequest, since: float) -> str | None:
        """The task id the receiver recorded for an unconfirmed createTask, if it does in time.

        Without callbacks nobody can record it: one look at the ledger, no waiting.
        """
        deadline = since + self._confirm_timeout_s if self._callback_url else 0.0
        delay = 0.5
        while True:
            fresh = await self._io_call(self._ledger.get, item.request_id)
            self._entries[item.request_id] = fresh
            if fresh is not None and fresh.task_id and fresh.state in ("submitted", "succeeded"):
                return fresh.task_id
            left = deadline - time.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 1.5, 5.0)

    def _unconfirmed(self, outcome: RequestOutcome, why: str) -> None:
        outcome.status = "unconfirmed"
        outcome.retryable = False
        outcome.error_type = "Unconfirmed"
        if self._callback_url:
            hint = (
                f"no callback named its task within {self._confirm_timeout_s:g} s either, so "
                "kie.ai probably never created it"
            )
        else:
            hint = (
                "without callbacks (callback_url) its task id cannot be found; if kie.ai "
                "created it, it is paid for and its images are not stored"
            )
        rid = outcome.request_id
        where = f"--bucket {self._ledger.bucket} --prefix {self._ledger.prefix}"
        outcome.error = (
            f"{why}; {hint}. It is not resent, so that it is never paid twice. If you find its "
            f"task (kie.ai dashboard logs), 'dagster-kie ledger confirm {rid} <task id> {where}' "
            "makes the next run store its images; if you know no task was created, "
            f"'dagster-kie ledger forget {rid} --yes {where}' (or resubmit_unconfirmed=True for "
            "all such requests) makes it send the request again."
        )

    async def _create(self, item: ParsedRequest, outcome: RequestOutcome) -> str | None:
        request = await self._resolve_inputs(item.request)
        callback = (
            callback_url_for(self._callback_url, item.request_id) if self._callback_url else None
        )
        delay = self._intent_pace.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._spend is not None:
            outcome.reserved_credits = self._spend.reserve(request.num_images)
        held = self._entries.get(item.request_id)
        if held is not None and held.state == "submitting":
            # The receiver may fill in a task id on such an entry at any time (the pacing and
            # input uploads above can take a while): read it again, a recorded task is resumed.
            try:
                self._entries[item.request_id] = await self._submit_call(
                    self._ledger.record_intent, item.request_id, request.model
                )
            except LedgerConflictError:
                self._settle(outcome, None)
                recorded = await self._io_call(self._ledger.get, item.request_id)
                self._entries[item.request_id] = recorded
                if recorded is None or not recorded.task_id:
                    raise ValueError(
                        "its ledger entry changed while it was being submitted"
                    ) from None
                return recorded.task_id
        else:
            await self._record(
                self._submit_call, self._ledger.record_intent, item.request_id, request.model
            )
        sent_at = time.time()
        try:
            task_id = await self._client.create_task(request, callback_url=callback)
        except KieError as error:
            if not _maybe_created(error):
                self._settle(outcome, None)
                # Provably no task: clear the intent so the next run sends it normally.
                await self._submit_call(self._ledger.forget, item.request_id)
                self._entries[item.request_id] = None
                raise
            # The request reached kie.ai but its reply was lost: a task may exist (and be paid).
            found = await self._confirm(item, sent_at)
            if found is None:
                self._unconfirmed(
                    outcome, f"createTask reached kie.ai but no task id came back ({error})"
                )
            else:
                outcome.created_task = True
            return found
        self._creates_returned += 1
        if self._creates_returned == self._crash_after_create:
            _crash_for_test()
        outcome.created_task = True
        # If a callback made the receiver record this task first, this writes the same task id.
        await self._record(
            self._submit_call,
            self._ledger.record_submitted,
            item.request_id,
            request.model,
            task_id,
        )
        return task_id

    async def _record(
        self,
        call: Callable[..., Awaitable[LedgerEntry]],
        write: Callable[..., LedgerEntry],
        request_id: str,
        *args: Any,
    ) -> None:
        """One ledger write on the entry this run holds (a PUT, no GET); keep the result."""
        self._entries[request_id] = await call(
            write, request_id, *args, previous=self._entries.get(request_id)
        )

    def _settle(self, outcome: RequestOutcome, actual: float | None) -> None:
        if self._spend is not None and outcome.reserved_credits:
            self._spend.settle(outcome.reserved_credits, actual, outcome.expected_images)
            outcome.reserved_credits = 0.0

    async def _resolve_inputs(self, request: Any) -> Any:
        """Upload local paths and ``s3://`` objects named as input images; keep URLs as they are."""
        resolved = {
            source: await self._upload_if_needed(source) for source in image_sources(request)
        }
        return with_image_sources(request, resolved)

    async def _upload_if_needed(self, source: str) -> str:
        if source.startswith(("http://", "https://")):
            return source
        if source.startswith("s3://"):
            bucket, key = parse_s3_uri(source)
            s3 = self._store.client
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / Path(key).name
                try:
                    await self._io_call(s3.download_file, bucket, key, str(local))
                except Exception as error:  # botocore's ClientError has no stable type to catch
                    raise ValueError(f"cannot read input image {source}: {error}") from None
                uploaded = await self._client.upload_file(local)
            return uploaded.url
        path = Path(source).expanduser()
        if not path.is_file():
            raise ValueError(
                f"input image {source!r} is not a URL, an s3:// URI or an existing file"
            )
        return (await self._client.upload_file(path)).url

    async def _store_results(
        self, item: ParsedRequest, record: TaskRecord, outcome: RequestOutcome
    ) -> None:
        urls = record.result_urls
        if not urls:
            raise GenerationFailedError(
                "the task succeeded but returned no result URLs", task_id=record.task_id
            )
        images = await asyncio.gather(
            *(self._store_one(item, record.task_id, index, url) for index, url in enumerate(urls))
        )
        outcome.images = list(images)
        manifest = _manifest(item, record, outcome.images)
        outcome.manifest_uri = await self._io_call(self._store.put_manifest, manifest)
        await self._record(
            self._io_call,
            self._ledger.record_succeeded,
            item.request_id,
            urls,
            record.credits_consumed,
        )
        if self._inbox is not None:
            await self._io_call(self._inbox.delete, record.task_id)
        outcome.status = "stored"

    async def _store_one(
        self, item: ParsedRequest, task_id: str, index: int, url: str
    ) -> StoredImage:
        async with self._downloads:
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
                async with self._client.stream_download(url) as download:
                    content_type = download.content_type
                    digest = hashlib.sha256()
                    async for chunk in download.aiter_bytes():
                        digest.update(chunk)
                        spool.write(chunk)
                spool.seek(0)
                width, height = await self._io_call(_decoded_size, spool)
                spool.seek(0)
                extension = _CONTENT_EXTENSIONS.get(content_type, "png")
                key = self._store.image_key(
                    item.request.model, item.request_id, task_id, index, extension
                )
                stored = await self._io_call(
                    self._store.put_image, key, spool, content_type=content_type
                )
        return StoredImage(
            index=index,
            key=stored.key,
            uri=stored.uri,
            sha256=stored.sha256,
            size=stored.size,
            width=width,
            height=height,
            content_type=content_type,
            source_url=url,
        )


_TRANSIENT_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed"}
)


def is_transient_error(error: Exception) -> bool:
    """Whether a storage or network error may pass (S3 down, reset, 5xx) — not a bad input."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in _TRANSIENT_S3_CODES or int(status) >= 500
    return isinstance(error, (OSError, BotoCoreError))


def _crash_for_test() -> None:
    """``kill -9`` of the whole run (its process group), for the crash tests only."""
    logger.warning("%s reached: killing this run's process group", CRASH_AFTER_CREATE_ENV)
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _epoch(stamp: str) -> float:
    """Unix seconds of a ledger timestamp (0 when missing or unreadable: long ago)."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _maybe_created(error: KieError) -> bool:
    """Whether a failed createTask may still have created (and billed) a task."""
    if isinstance(error, TransportError):
        return error.request_sent
    return error.code in (None, 500) or not isinstance(error.code, int)


def _decoded_size(stream: IO[bytes]) -> tuple[int, int]:
    """Fully decode the image (a truncated or corrupt file raises) and return its size."""
    with Image.open(stream) as image:
        image.load()
        width, height = image.size
        return int(width), int(height)


def _expected_size(image_size: str) -> tuple[int, int] | None:
    from dagster_kie.models import IMAGE_SIZE_DIMENSIONS

    return IMAGE_SIZE_DIMENSIONS.get(image_size)


def _complete(manifests: list[dict[str, Any]] | None, num_images: int) -> list[dict[str, Any]]:
    """The manifests that hold all of a request's images."""
    return [m for m in manifests or [] if len(m.get("images", [])) >= num_images]


def _image_from_manifest(image: dict[str, Any]) -> StoredImage:
    return StoredImage(**{name: image[name] for name in StoredImage.__dataclass_fields__})


def _manifest(item: ParsedRequest, record: TaskRecord, images: list[StoredImage]) -> dict[str, Any]:
    request = item.request
    return {
        "request_id": item.request_id,
        "model": request.model,
        "task_id": record.task_id,
        "request": request.body(),
        "seed": getattr(request.input, "seed", None),
        "source": {"file": item.file, "line": item.line},
        "credits": record.credits_consumed,
        "cost_time_ms": record.cost_time,
        "created_at": _iso_ms(record.create_time),
        "completed_at": _iso_ms(record.complete_time),
        "stored_at": datetime.now(timezone.utc).isoformat(),
        "images": [image.__dict__ for image in images],
    }


def _iso_ms(value: int | None) -> str | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc).isoformat()
    return None


AsyncCheck = Callable[[str], Awaitable[TaskRecord | None]]
