"""The callback receiver: a small starlette app that stores verified kie.ai callbacks in S3.

Decision order for ``POST /kie/callback?request_id=<id>``:

1. body over ``max_body_bytes`` (by ``Content-Length`` or while reading) → 413;
2. not a JSON object with a ``data`` object → 400;
3. no task id in ``data.taskId`` / ``data.task_id`` (or one unfit for a key) → 400;
4. with an HMAC key: bad ``X-Webhook-Timestamp`` / ``X-Webhook-Signature`` → 401;
5. ``data`` is not a task record → 400;
6. unknown task → 404 and nothing stored: the ``request_id`` must name a ledger entry whose task id
   is the callback's — or which is still ``submitting`` without a task id (the run crashed between
   createTask and recording the id), in which case the receiver records the task id itself;
7. store the payload in the inbox → 200 ``{"ok": true}`` (repeats are answered the same way).

S3 calls run in worker threads; each decision is logged at INFO, without secrets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..models import TaskRecord
from .errors import CallbackRejected, InvalidTaskId
from .inbox import CallbackInbox, validate_task_id
from .protocols import LedgerEntryLike, LedgerLike
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from .urls import DEFAULT_PATH, request_id_from

__all__ = ["DEFAULT_PATH", "CallbackHandler", "create_app", "parse_payload", "read_limited_body"]

log = logging.getLogger("dagster_kie.callbacks")


def _reject(reason: str, status_code: int) -> CallbackRejected:
    return CallbackRejected(reason, status_code)


async def read_limited_body(request: Request, max_body_bytes: int) -> bytes:
    """The request body, refusing more than ``max_body_bytes`` (413) before and while reading."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise _reject("bad Content-Length", 400) from None
        if declared > max_body_bytes:
            raise _reject("body too large", 413)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_body_bytes:
            raise _reject("body too large", 413)
    return bytes(body)


def parse_payload(body: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(payload, data, task_id)`` of a callback body.

    Raises:
        CallbackRejected: 400 for bad JSON, a missing ``data`` object or a missing/unfit task id.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _reject("body is not JSON", 400) from None
    if not isinstance(payload, dict):
        raise _reject("body is not a JSON object", 400)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise _reject("missing data object", 400)
    ids = {data[name] for name in ("taskId", "task_id") if data.get(name) not in (None, "")}
    if not ids:
        raise _reject("missing task id", 400)
    if len(ids) > 1:
        raise _reject("conflicting task ids", 400)
    task_id = ids.pop()
    try:
        return payload, data, validate_task_id(task_id)
    except InvalidTaskId:
        raise _reject("invalid task id", 400) from None


class CallbackHandler:
    """Decides about one callback at a time (see the module docstring for the order).

    Args:
        inbox: Where accepted callbacks are stored.
        ledger: The task ledger (``get`` and ``record_submitted``).
        hmac_key: kie.ai's ``webhookHmacKey``; ``None`` accepts unsigned callbacks.
        max_body_bytes: Largest accepted body.
        max_age_s: Largest accepted clock distance of a signature's timestamp.
        clock: Unix time source (for tests).
    """

    def __init__(
        self,
        *,
        inbox: CallbackInbox,
        ledger: LedgerLike,
        hmac_key: str | None,
        max_body_bytes: int = 1_000_000,
        max_age_s: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.ledger = ledger
        self._hmac_key = hmac_key or None
        self.max_body_bytes = max_body_bytes
        self.max_age_s = max_age_s
        self.clock = clock

    @property
    def signed(self) -> bool:
        """Whether callbacks must carry a valid signature."""
        return self._hmac_key is not None

    def __repr__(self) -> str:
        return f"CallbackHandler(inbox={self.inbox!r}, signed={self.signed})"

    async def handle(self, request: Request) -> JSONResponse:
        """Answer one ``POST`` of a callback."""
        request_id = request_id_from(request.url.query)
        task_id: str | None = None
        try:
            body = await read_limited_body(request, self.max_body_bytes)
            payload, data, task_id = parse_payload(body)
            if self._hmac_key is not None:
                verify(
                    task_id,
                    request.headers.get(TIMESTAMP_HEADER),
                    request.headers.get(SIGNATURE_HEADER),
                    self._hmac_key,
                    now=self.clock(),
                    max_age_s=self.max_age_s,
                )
            record = self._record(data)
            adopted = await self._check_known(request_id, task_id, record)
            await run_in_threadpool(self.inbox.put, task_id, payload)
        except CallbackRejected as exc:
            log.info(
                "callback rejected (%s, %d): task=%s request=%s",
                exc.reason, exc.status_code, task_id, request_id,
            )  # fmt: skip
            return JSONResponse({"ok": False, "error": exc.reason}, status_code=exc.status_code)
        except Exception as exc:
            log.error(
                "callback not stored: task=%s request=%s: %s",
                task_id, request_id, type(exc).__name__, exc_info=True,
            )  # fmt: skip
            return JSONResponse({"ok": False, "error": "storage error"}, status_code=503)
        log.info(
            "callback stored: task=%s request=%s state=%s%s",
            task_id, request_id, record.state, " (task id recorded)" if adopted else "",
        )  # fmt: skip
        return JSONResponse({"ok": True})

    @staticmethod
    def _record(data: dict[str, Any]) -> TaskRecord:
        try:
            return TaskRecord.model_validate(data)
        except ValidationError:
            raise _reject("invalid task record", 400) from None

    async def _check_known(self, request_id: str | None, task_id: str, record: TaskRecord) -> bool:
        """Accept only a task of a known request; return True if its task id was recorded now."""
        if request_id is None:
            raise _reject("unknown task", 404)
        entry = await run_in_threadpool(self.ledger.get, request_id)
        if entry is None:
            raise _reject("unknown task", 404)
        if entry.task_id == task_id:
            return False
        if not self._adoptable(entry, record):
            raise _reject("unknown task", 404)
        try:
            model = entry.model or record.model or ""
            await run_in_threadpool(self.ledger.record_submitted, request_id, model, task_id)
        except Exception:
            # Someone (the run, or a repeat of this callback) may have recorded it meanwhile.
            entry = await run_in_threadpool(self.ledger.get, request_id)
            if entry is None or entry.task_id != task_id:
                raise
        return True

    @staticmethod
    def _adoptable(entry: LedgerEntryLike, record: TaskRecord) -> bool:
        if entry.task_id or entry.state != "submitting":
            return False
        # The callback must be for the model the request was sent to, when it says so.
        return record.model is None or not entry.model or record.model == entry.model


def create_app(
    *,
    inbox: CallbackInbox,
    ledger: LedgerLike,
    hmac_key: str | None,
    max_body_bytes: int = 1_000_000,
    max_age_s: float = 300,
    path: str = DEFAULT_PATH,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver app: ``POST {path}`` for callbacks and ``GET /healthz``.

    Args:
        inbox: Where accepted callbacks are stored.
        ledger: The task ledger (``get(request_id)``, ``record_submitted(...)``).
        hmac_key: kie.ai's ``webhookHmacKey``; ``None`` accepts unsigned callbacks (not for
            public endpoints).
        max_body_bytes: Largest accepted body (413 above).
        max_age_s: Largest accepted clock distance of a signature's timestamp.
        path: The callback path.
        clock: Unix time source (for tests).
    """
    handler = CallbackHandler(
        inbox=inbox,
        ledger=ledger,
        hmac_key=hmac_key,
        max_body_bytes=max_body_bytes,
        max_age_s=max_age_s,
        clock=clock,
    )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "signed": handler.signed})

    app = Starlette(
        routes=[
            Route(path, handler.handle, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.handler = handler
    return app
