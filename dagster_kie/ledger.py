"""The durable task ledger in S3: request id → kie.ai task, so nothing is ever paid for twice.

One JSON object per request at ``{prefix}/_ledger/{request_id}.json``. The protocol of a run:

1. :meth:`TaskLedger.record_intent` **before** ``createTask`` (state ``submitting``);
2. :meth:`TaskLedger.record_submitted` the moment ``createTask`` returns a task id;
3. :meth:`TaskLedger.record_succeeded` / :meth:`TaskLedger.record_failed` when the task ends.

A retried, re-executed or crashed run reads the entry first and resumes the recorded task instead
of creating a new one; an entry stuck in ``submitting`` (crash between 1 and 2) tells it that a
task may exist unrecorded. All state lives in S3, so this works across processes and machines.

Each write reads the entry first, unless the caller passes the entry it holds (``previous=``):
the batch engine reads all its entries once at the start of a run (:meth:`TaskLedger.get_many`:
a paginated LIST, then GETs of the entries that exist) and then writes with one PUT each.

Concurrency: every write is a whole-object PUT and S3 is last-writer-wins, so **one request id
must be owned by one run at a time**. The asset layer guarantees that (one partition per request
or per prompt file, and Dagster runs one materialization of a partition at a time). The only
other writer is the callback receiver, and it only fills in a task id on an entry still in
``submitting`` (no task id), so an entry held by the run stays current except in that state: the
run re-reads a ``submitting`` entry before it writes over it, and if the receiver records the
run's own task first, the run's ``record_submitted`` writes the same task id again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from dagster_kie.storage import (
    connection_pool_size,
    is_not_found,
    join_key,
    list_objects,
    normalize_prefix,
    validate_segment,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "LEDGER_FOLDER",
    "LedgerConflictError",
    "LedgerEntry",
    "LedgerError",
    "LedgerState",
    "TaskLedger",
]

LEDGER_FOLDER = "_ledger"
LedgerState = Literal["submitting", "submitted", "succeeded", "failed"]
STATES: tuple[LedgerState, ...] = ("submitting", "submitted", "succeeded", "failed")


class LedgerError(RuntimeError):
    """A ledger object could not be read (malformed JSON or fields)."""


class LedgerConflictError(LedgerError):
    """A write would lose a recorded task (and so risk paying for the request again)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Unread(Enum):
    """Default of ``previous=``: the caller holds no entry, so the write reads it first."""

    UNREAD = "unread"


_UNREAD = _Unread.UNREAD


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one request.

    Attributes:
        request_id: The stable request id.
        model: The kie.ai model id (``""`` if unknown).
        state: ``submitting`` (createTask may be in flight), ``submitted`` (task id known),
            ``succeeded`` or ``failed``.
        task_id: The kie.ai task id, once known.
        attempt: How many times a createTask was started for this request.
        created_at: ISO-8601 UTC time of the first write.
        updated_at: ISO-8601 UTC time of the last write.
        error: Why it failed (state ``failed``).
        retryable: Whether the failure may succeed on a new task (state ``failed``).
        result_urls: The task's result URLs (state ``succeeded``).
        credits: Credits the task consumed, if reported.
    """

    request_id: str
    model: str
    state: LedgerState
    task_id: str | None = None
    attempt: int = 0
    created_at: str = ""
    updated_at: str = ""
    error: str | None = None
    retryable: bool | None = None
    result_urls: list[str] = field(default_factory=list)
    credits: float | None = None

    def to_json(self) -> bytes:
        """The entry as the UTF-8 JSON stored in S3 (``sort_keys=True``, ``indent=2``)."""
        return json.dumps(asdict(self), sort_keys=True, indent=2).encode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        """Build an entry from its JSON object (unknown fields are ignored).

        Args:
            data: The decoded JSON.

        Returns:
            The entry.

        Raises:
            LedgerError: If a required field is missing or the state is unknown.
        """
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        if not isinstance(values.get("request_id"), str) or values.get("state") not in STATES:
            raise LedgerError(f"malformed ledger entry: {data!r:.300}")
        values.setdefault("model", "")
        values["result_urls"] = list(values.get("result_urls") or [])
        try:
            return cls(**values)
        except TypeError as error:
            raise LedgerError(f"malformed ledger entry: {error}") from None


class TaskLedger:
    """Request id → kie.ai task, one JSON object per request in S3.

    Args:
        client: A boto3 S3 client (thread-safe; shared by all calls).
        bucket: The bucket.
        prefix: Key prefix (the same one the image store uses); entries live under
            ``{prefix}/_ledger/``.
        max_workers: Threads for :meth:`get_many` and :meth:`list_all` (capped by the client's
            connection pool size).
        clock: Returns the current time (for tests).

    Raises:
        UnsafeKeyError: If the prefix is unsafe.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "kie",
        *,
        max_workers: int = 16,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.max_workers = max_workers
        self._clock = clock

    # -- keys --

    @property
    def folder(self) -> str:
        """The folder of the entries, ending in ``/``."""
        return join_key(self.prefix, LEDGER_FOLDER) + "/"

    def key(self, request_id: str) -> str:
        """The key of one request's entry.

        Args:
            request_id: The request id.

        Returns:
            ``{prefix}/_ledger/{request_id}.json``.

        Raises:
            UnsafeKeyError: If the request id is not a safe key segment.
        """
        return self.folder + validate_segment(request_id, "request_id") + ".json"

    # -- reads --

    def get(self, request_id: str) -> LedgerEntry | None:
        """Read one request's entry.

        Args:
            request_id: The request id.

        Returns:
            The entry, or ``None`` if the ledger has none.

        Raises:
            UnsafeKeyError: If the request id is unsafe.
            LedgerError: If the stored object is malformed.
        """
        key = self.key(request_id)
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        with closing(reply["Body"]) as body:
            raw = body.read()
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise LedgerError(
                f"ledger entry s3://{self.bucket}/{key} is not JSON: {error}"
            ) from None
        if not isinstance(data, dict):
            raise LedgerError(f"ledger entry s3://{self.bucket}/{key} is not a JSON object")
        return LedgerEntry.from_dict(data)

    def get_many(self, request_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """Read many entries: a paginated LIST of the ledger, then GETs of those that exist.

        A few ids (no more than the threads), or a ledger with more LIST pages than there are
        rounds of GETs, are simply read with concurrent GETs.

        Args:
            request_ids: The request ids (duplicates are read once).

        Returns:
            The entries that exist, by request id.

        Raises:
            UnsafeKeyError: If a request id is unsafe (checked before any request is made).
            LedgerError: If a stored object is malformed.
        """
        ids = list(dict.fromkeys(request_ids))
        for request_id in ids:
            validate_segment(request_id, "request_id")
        workers = self._workers()
        if len(ids) > workers:
            # A LIST page names up to 1,000 entries: read only those that exist, unless the
            # ledger holds more pages than there are rounds of concurrent GETs.
            rounds = math.ceil(len(ids) / workers)
            listed = list_objects(self.client, self.bucket, self.folder, max_pages=rounds)
            if listed is not None:
                present = {self._request_id_of(item["Key"]) for item in listed}
                ids = [request_id for request_id in ids if request_id in present]
        return self._get_all(ids)

    def list_ids(self) -> list[str]:
        """Every request id with an entry (one paginated LIST).

        Returns:
            The request ids, sorted.
        """
        listed = list_objects(self.client, self.bucket, self.folder) or []
        ids = (self._request_id_of(item["Key"]) for item in listed)
        return sorted(request_id for request_id in ids if request_id is not None)

    def list_all(self) -> dict[str, LedgerEntry]:
        """Every entry: a paginated LIST, then concurrent GETs.

        Returns:
            The entries by request id.

        Raises:
            LedgerError: If a stored object is malformed.
        """
        return self._get_all(self.list_ids())

    def _request_id_of(self, key: str) -> str | None:
        """The request id of an entry's key (``None`` for other objects in the folder)."""
        name = key[len(self.folder) :]
        if name.endswith(".json") and "/" not in name:
            return name[: -len(".json")]
        return None

    def _workers(self) -> int:
        return max(1, min(self.max_workers, connection_pool_size(self.client)))

    def _get_all(self, ids: Sequence[str]) -> dict[str, LedgerEntry]:
        if not ids:
            return {}
        workers = min(self._workers(), len(ids))
        if workers == 1:
            entries = [self.get(request_id) for request_id in ids]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kie-ledger") as pool:
                entries = list(pool.map(self.get, ids))
        return {entry.request_id: entry for entry in entries if entry is not None}

    # -- writes --

    def record_intent(
        self, request_id: str, model: str, *, previous: LedgerEntry | _Unread | None = _UNREAD
    ) -> LedgerEntry:
        """Record that a createTask is about to be sent (call it **before** sending).

        Args:
            request_id: The request id.
            model: The kie.ai model id.
            previous: The entry as the caller last read or wrote it (``None``: it has none);
                then only a PUT is made. Omitted, the entry is read first.

        Returns:
            The new entry: state ``submitting``, no task id, ``attempt`` one more than before.

        Raises:
            UnsafeKeyError: If the request id is unsafe.
            LedgerConflictError: If the entry already records a live or finished task
                (``submitted`` or ``succeeded`` with a task id): resume that task instead.
        """
        held = self._held(request_id, previous)
        if held is not None and held.task_id and held.state in ("submitted", "succeeded"):
            raise LedgerConflictError(
                f"request {request_id} already has task {held.task_id} ({held.state}); "
                "resume it, or forget() the entry to submit the request again"
            )
        now = self._stamp()
        entry = LedgerEntry(
            request_id=request_id,
            model=model,
            state="submitting",
            attempt=(held.attempt if held else 0) + 1,
            created_at=held.created_at if held and held.created_at else now,
            updated_at=now,
        )
        return self._put(entry)

    def record_submitted(
        self,
        request_id: str,
        model: str,
        task_id: str,
        *,
        previous: LedgerEntry | _Unread | None = _UNREAD,
    ) -> LedgerEntry:
        """Record the task id createTask returned (call it **immediately**).

        Recording the same task id again is a no-op (a callback may race the run).

        Args:
            request_id: The request id.
            model: The kie.ai model id.
            task_id: The task id.
            previous: The entry as the caller last read or wrote it (``None``: it has none);
                then only a PUT is made. Omitted, the entry is read first.

        Returns:
            The entry: state ``submitted`` with the task id.

        Raises:
            UnsafeKeyError: If the request id is unsafe.
        """
        held = self._held(request_id, previous)
        if (
            held is not None
            and held.task_id == task_id
            and held.state in ("submitted", "succeeded", "failed")
        ):
            return held
        now = self._stamp()
        entry = LedgerEntry(
            request_id=request_id,
            model=model,
            state="submitted",
            task_id=task_id,
            attempt=max(held.attempt if held else 0, 1),
            created_at=held.created_at if held and held.created_at else now,
            updated_at=now,
        )
        return self._put(entry)

    def record_succeeded(
        self,
        request_id: str,
        result_urls: Sequence[str],
        credits: float | None = None,
        *,
        previous: LedgerEntry | _Unread | None = _UNREAD,
    ) -> LedgerEntry:
        """Record that the request's task succeeded.

        Args:
            request_id: The request id.
            result_urls: The task's result URLs.
            credits: Credits consumed, if reported.
            previous: The entry as the caller last read or wrote it (``None``: it has none);
                then only a PUT is made. Omitted, the entry is read first.

        Returns:
            The entry: state ``succeeded``, error cleared.

        Raises:
            UnsafeKeyError: If the request id is unsafe.
        """
        entry = replace(
            self._current(request_id, previous),
            state="succeeded",
            result_urls=list(result_urls),
            credits=credits,
            error=None,
            retryable=None,
            updated_at=self._stamp(),
        )
        return self._put(entry)

    def record_failed(
        self,
        request_id: str,
        error: str,
        retryable: bool,
        *,
        previous: LedgerEntry | _Unread | None = _UNREAD,
    ) -> LedgerEntry:
        """Record that the request's task failed.

        Args:
            request_id: The request id.
            error: What went wrong.
            retryable: Whether a new task may succeed (a later run resubmits only if so).
            previous: The entry as the caller last read or wrote it (``None``: it has none);
                then only a PUT is made. Omitted, the entry is read first.

        Returns:
            The entry: state ``failed`` (the task id is kept).

        Raises:
            UnsafeKeyError: If the request id is unsafe.
        """
        entry = replace(
            self._current(request_id, previous),
            state="failed",
            error=error,
            retryable=retryable,
            updated_at=self._stamp(),
        )
        return self._put(entry)

    def forget(self, request_id: str) -> None:
        """Delete a request's entry, allowing a deliberate resubmission.

        Use it for a failed request that should be paid for again, or for an intent that
        provably never reached kie.ai. Deleting a missing entry is not an error.

        Args:
            request_id: The request id.

        Raises:
            UnsafeKeyError: If the request id is unsafe.
        """
        self.client.delete_object(Bucket=self.bucket, Key=self.key(request_id))

    # -- helpers --

    def _held(self, request_id: str, previous: LedgerEntry | _Unread | None) -> LedgerEntry | None:
        """The entry a write builds on: the one the caller holds, else the stored one."""
        if isinstance(previous, _Unread):
            return self.get(request_id)
        validate_segment(request_id, "request_id")
        if previous is not None and previous.request_id != request_id:
            raise ValueError(f"previous= is the entry of {previous.request_id}, not {request_id}")
        return previous

    def _current(self, request_id: str, previous: LedgerEntry | _Unread | None) -> LedgerEntry:
        """The entry to update; a fresh one (model unknown) if the ledger has none."""
        held = self._held(request_id, previous)
        if held is not None:
            return held
        now = self._stamp()
        return LedgerEntry(
            request_id=request_id, model="", state="submitted", created_at=now, updated_at=now
        )

    def _put(self, entry: LedgerEntry) -> LedgerEntry:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key(entry.request_id),
            Body=entry.to_json(),
            ContentType="application/json",
        )
        return entry

    def _stamp(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat()
