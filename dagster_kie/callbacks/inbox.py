"""Verified callbacks in S3: one object per task, ``{prefix}/_callbacks/{task_id}.json``.

The receiver writes with :meth:`CallbackInbox.put`; runs read with :meth:`CallbackInbox.get`, or,
when they wait for many tasks at once, with :meth:`CallbackInbox.aget` or
:meth:`CallbackInbox.aget_next`, which only GET an object after a shared, rate-limited LIST of the
prefix shows it arrived (1,000 waiting tasks cost about one LIST per ``min_refresh_interval_s``,
not 1,000 GETs).

Example:
    >>> inbox = CallbackInbox(s3_client, "my-bucket")  # doctest: +SKIP
    >>> record = await inbox.aget("task_ideogram_1765180586443")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..models import TaskRecord
from ..storage import is_not_found
from .errors import InvalidTaskId

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CALLBACKS_DIR", "CallbackInbox", "InvalidTaskId", "validate_task_id"]

CALLBACKS_DIR = "_callbacks"
"""The folder under the prefix that holds one JSON object per task."""

_TASK_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SUFFIX = ".json"


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it can name an S3 key safely, else raise :class:`InvalidTaskId`.

    Allowed: 1-128 characters of ``[A-Za-z0-9._-]``, not only dots. So a key built from it never
    leaves the ``_callbacks/`` folder.
    """
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id) or not task_id.strip("."):
        raise InvalidTaskId("a task id is 1-128 characters of [A-Za-z0-9._-]")
    return task_id


class CallbackInbox:
    """Callbacks stored in S3, one JSON object per task id (the payload exactly as received).

    State lives only in S3: any number of receivers and runs (pods, processes) can share one inbox.
    The snapshot of arrived task ids kept by :meth:`refresh` is a read cache of this instance only.

    Args:
        client: A boto3 S3 client (thread-safe; calls run in threads from async code).
        bucket: The bucket.
        prefix: Key prefix (the same one the image store and the ledger use).
        min_refresh_interval_s: Smallest gap between two LISTs started by :meth:`aget` and
            :meth:`aget_next` (on AWS, 0.5 s is about 7,200 LIST requests per hour of
            waiting, under 4 US cents).
        executor: Where blocking S3 calls of :meth:`aget` run (default: the loop's default
            executor, as with :func:`asyncio.to_thread`).
        page_size: Keys per LIST page (S3's maximum is 1,000).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "kie",
        *,
        min_refresh_interval_s: float = 0.5,
        executor: concurrent.futures.Executor | None = None,
        page_size: int = 1000,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.min_refresh_interval_s = min_refresh_interval_s
        self.executor = executor
        self.page_size = page_size
        self.folder = f"{self.prefix}/{CALLBACKS_DIR}/" if self.prefix else f"{CALLBACKS_DIR}/"
        self._lock = threading.Lock()
        self._arrived: set[str] = set()
        self._puts: dict[str, float] = {}
        self._last_refresh: float | None = None  # monotonic start of the last LIST attempt
        self._inflight: concurrent.futures.Future[frozenset[str]] | None = None
        self.list_calls = 0
        """How many LISTs (pages) this instance made: for tests and benchmarks."""

    def __repr__(self) -> str:
        return f"CallbackInbox(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # --- single objects --------------------------------------------------------------------------

    def key_for(self, task_id: str) -> str:
        """The object key of ``task_id``'s callback.

        Raises:
            InvalidTaskId: If the task id is not ``[A-Za-z0-9._-]{1,128}``.
        """
        return f"{self.folder}{validate_task_id(task_id)}{_SUFFIX}"

    def put(self, task_id: str, payload: Mapping[str, Any]) -> str:
        """Store a callback's payload (``{"code", "msg", "data"}``); a repeat overwrites it.

        Returns:
            The object key.
        """
        key = self.key_for(task_id)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
        )
        with self._lock:
            self._arrived.add(task_id)
            self._puts[task_id] = time.monotonic()
        return key

    def get_payload(self, task_id: str) -> dict[str, Any] | None:
        """The stored payload of ``task_id``'s callback, or ``None`` if none arrived."""
        key = self.key_for(task_id)
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        payload = json.loads(reply["Body"].read())
        if not isinstance(payload, dict):
            raise ValueError(f"callback object {key} is not a JSON object")
        return payload

    def get(self, task_id: str) -> TaskRecord | None:
        """The task as its callback reported it (``payload["data"]``), or ``None``.

        Raises:
            InvalidTaskId: If the task id is not valid.
            pydantic.ValidationError: If the stored data is not a task record.
        """
        payload = self.get_payload(task_id)
        if payload is None:
            return None
        return TaskRecord.model_validate(payload.get("data"))

    def delete(self, task_id: str) -> None:
        """Remove ``task_id``'s callback (e.g. once its images are stored)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(task_id))
        with self._lock:
            self._arrived.discard(task_id)
            self._puts.pop(task_id, None)

    # --- batch view ------------------------------------------------------------------------------

    def refresh(self) -> frozenset[str]:
        """List the ``_callbacks/`` folder once (all pages) and remember which tasks arrived.

        Returns:
            The task ids that have a stored callback.
        """
        started = time.monotonic()
        with self._lock:
            self._last_refresh = started
        found: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.folder,
            PaginationConfig={"PageSize": self.page_size},
        )
        for page in pages:
            with self._lock:
                self.list_calls += 1
            for item in page.get("Contents", []):
                name = item.get("Key", "")[len(self.folder) :]
                if "/" not in name and name.endswith(_SUFFIX):
                    found.add(name[: -len(_SUFFIX)])
        with self._lock:
            # Callbacks this instance stored while the LIST ran stay visible.
            self._puts = {t: at for t, at in self._puts.items() if at >= started}
            self._arrived = found | set(self._puts)
            return frozenset(self._arrived)

    def arrived(self, task_id: str) -> bool:
        """Whether ``task_id``'s callback was seen by the last :meth:`refresh` (or put here)."""
        with self._lock:
            return task_id in self._arrived

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The task's callback record, or ``None`` if it has not arrived yet.

        Lists the folder at most once per ``min_refresh_interval_s`` for all concurrent callers of
        this instance (they share one LIST in flight), and GETs the object only when that listing
        shows it arrived. Blocking S3 calls run in a thread.
        """
        return await self._aget(task_id, wait_until_due=False)

    async def aget_next(self, task_id: str) -> TaskRecord | None:
        """Like :meth:`aget`, but a task not seen yet is looked for in the next LIST.

        Waits for the next shared LIST (at most ``min_refresh_interval_s`` away) instead of
        answering from the last one, so a waiter learns of its callback as soon as a LIST shows
        it, without looking every few milliseconds. The batch engine waits with this.
        """
        return await self._aget(task_id, wait_until_due=True)

    async def _aget(self, task_id: str, *, wait_until_due: bool) -> TaskRecord | None:
        validate_task_id(task_id)
        if not self.arrived(task_id):
            await self._refresh(wait_until_due=wait_until_due)
            if not self.arrived(task_id):
                return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.get, task_id)

    async def _refresh(self, *, wait_until_due: bool) -> None:
        """Join the LIST in flight, or start one if due; if not due, return at once or (with
        ``wait_until_due``) sleep until it is."""
        while True:
            with self._lock:
                future = self._inflight
                start = False
                if future is None:
                    last = self._last_refresh
                    now = time.monotonic()
                    wait = 0.0 if last is None else last + self.min_refresh_interval_s - now
                    if wait <= 0.0:
                        future = concurrent.futures.Future()
                        self._inflight = future
                        self._last_refresh = now
                        start = True
            if future is not None:
                break
            if not wait_until_due:
                return
            await asyncio.sleep(wait)
        if start:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(self.executor, self._run_refresh, future)
        # shield: one caller being cancelled must not cancel the LIST the others wait for.
        await asyncio.shield(asyncio.wrap_future(future))

    def _run_refresh(self, future: concurrent.futures.Future[frozenset[str]]) -> None:
        try:
            result = self.refresh()
        except BaseException as exc:
            with self._lock:
                self._inflight = None
            if not future.done():
                future.set_exception(exc)
        else:
            with self._lock:
                self._inflight = None
            if not future.done():
                future.set_result(result)
