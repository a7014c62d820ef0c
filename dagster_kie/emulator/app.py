"""The Starlette application: routes, and the guard every public endpoint goes through.

The guard does, in order: the edge's User-Agent check (403 ``error code: 1010``), request
faults (latency, maintenance, server error, rate-limit storm, dropped connection *before*), the
Bearer key check (401 inside an HTTP 200), the per-key rate limit, the handler, then reply faults
(dropped connection *after*, malformed JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from . import admin, jobs, remix, uploads
from .callbacks import CallbackDispatcher
from .faults import FaultSpec
from .replies import (
    ConnectionRegistry,
    DroppedConnection,
    json_reply,
    kie_reply,
    malformed,
    remix_error,
    upload_error,
)
from .state import EmulatorState

__all__ = ["Ctx", "Handler", "create_app"]

Style = Literal["kie", "upload", "remix", "file"]
Limit = Literal["create", "query"] | None

UNAUTHORIZED = "Unauthorized – Authentication failed. The API key is missing or invalid."


@dataclass
class Ctx:
    """What a handler gets besides the request."""

    state: EmulatorState
    registry: ConnectionRegistry
    endpoint: str
    api_key: str
    now: float


Handler = Callable[[Request, Ctx], Awaitable[Response]]


def _error(
    state: EmulatorState,
    style: Style,
    code: int,
    msg: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    if style == "kie":
        return kie_reply(state.stats, code, msg, status=status, headers=headers)
    if style == "upload":
        return upload_error(state.stats, code, msg, status=status)
    if style == "remix":
        response = remix_error(state.stats, code, msg, status=status)
        if headers:
            response.headers.update(headers)
        return response
    state.stats.error(status)
    return PlainTextResponse(msg, status_code=status, headers=headers)


def _count_call(state: EmulatorState, endpoint: str) -> None:
    stats = state.stats
    if endpoint == "create":
        stats.create_calls += 1
    elif endpoint == "remix":
        stats.remix_calls += 1
    elif endpoint in ("record_info", "credit", "download_url", "remix_task"):
        stats.query(endpoint)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _fault_reply(
    state: EmulatorState, style: Style, endpoint: str, kind: str, spec: FaultSpec
) -> Response:
    state.stats.faults_triggered[kind] += 1
    params = spec.params
    if kind == "maintenance":
        msg = params.get("msg", "Service unavailable – the system is under maintenance.")
        return _error(state, style, 455, msg, status=int(params.get("status", 200)))
    if kind == "server_error":
        msg = params.get("msg", "Internal server error – please try again later.")
        return _error(state, style, 500, msg, status=int(params.get("status", 500)))
    # rate_limit_storm
    state.stats.rate_limit(endpoint)
    retry = float(params.get("retry_after", 1))
    return _error(
        state,
        style,
        429,
        "Rate limit exceeded – too many requests, please slow down.",
        status=int(params.get("status", state.settings.rate_limit_status)),
        headers={"Retry-After": str(max(1, math.ceil(retry)))},
    )


def guard(
    state: EmulatorState,
    registry: ConnectionRegistry,
    endpoint: str,
    handler: Handler,
    *,
    style: Style = "kie",
    auth: bool = True,
    limit: Limit = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` with the edge checks, faults, auth and rate limiting."""

    async def run(request: Request) -> Response:
        state.stats.requests_total += 1
        if not request.headers.get("user-agent"):
            state.stats.error(403)
            return PlainTextResponse("error code: 1010", status_code=403)
        now = time.time()
        state.advance(now)
        faults = state.faults
        latency = faults.trigger("latency", endpoint, now)
        if latency is not None:
            state.stats.faults_triggered["latency"] += 1
            await asyncio.sleep(float(latency.params["ms"]) / 1000)
            now = time.time()
            state.advance(now)
        _count_call(state, endpoint)
        if endpoint == "record_info":
            task_id = request.query_params.get("taskId")
            if task_id:
                state.stats.polls_per_task[task_id] += 1
        for kind in ("maintenance", "server_error", "rate_limit_storm"):
            spec = faults.trigger(kind, endpoint, now)
            if spec is not None:
                return _fault_reply(state, style, endpoint, kind, spec)
        drop = faults.trigger("drop_connection", endpoint, now)
        if drop is not None:
            state.stats.faults_triggered["drop_connection"] += 1
            if drop.params["when"] == "before":
                state.stats.connections_dropped += 1
                return DroppedConnection(registry, drop.params["mode"])
        key = ""
        if auth:
            found = _bearer(request)
            if found is None or found not in state.api_keys:
                return _error(state, style, 401, UNAUTHORIZED)
            key = found
        if limit is not None:
            window = state.create_window if limit == "create" else state.query_window
            retry = window.retry_after(key, now)
            if retry is not None:
                state.stats.rate_limit(endpoint)
                what = (
                    f"{window.limit} new tasks per {window.window:g} s"
                    if limit == "create"
                    else f"{window.limit} queries per {window.window:g} s"
                )
                return _error(
                    state,
                    style,
                    429,
                    f"Rate limit exceeded – at most {what} per API key; retry later.",
                    status=state.settings.rate_limit_status,
                    headers={"Retry-After": str(max(1, math.ceil(retry)))},
                )
            if limit == "query":
                window.record(key, now)
        response = await handler(request, Ctx(state, registry, endpoint, key, now))
        if drop is not None:  # when == "after": processed, then the connection drops
            state.stats.connections_dropped += 1
            return DroppedConnection(registry, drop.params["mode"], bytes(response.body))
        if isinstance(response, JSONResponse):
            spec = faults.trigger("malformed_json", endpoint, time.time())
            if spec is not None:
                state.stats.faults_triggered["malformed_json"] += 1
                return malformed(response)
        return response

    return run


def build_routes(state: EmulatorState, registry: ConnectionRegistry) -> list[BaseRoute]:
    """Every route of the emulator."""

    def g(
        endpoint: str,
        handler: Handler,
        style: Style = "kie",
        auth: bool = True,
        limit: Limit = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        return guard(state, registry, endpoint, handler, style=style, auth=auth, limit=limit)

    return [
        # jobs API (api.kie.ai)
        Route(
            "/api/v1/jobs/createTask",
            g("create", jobs.create_task, limit="create"),
            methods=["POST"],
        ),
        Route(
            "/api/v1/jobs/recordInfo",
            g("record_info", jobs.record_info, limit="query"),
            methods=["GET"],
        ),
        Route("/api/v1/chat/credit", g("credit", jobs.credit, limit="query"), methods=["GET"]),
        Route(
            "/api/v1/common/download-url",
            g("download_url", jobs.download_url, limit="query"),
            methods=["POST"],
        ),
        Route(
            "/files/{task_id}/{name}",
            g("files", jobs.result_file, "file", auth=False),
            methods=["GET"],
        ),
        # upload API (its own base URL: <base>/upload)
        Route(
            "/upload/api/file-stream-upload",
            g("upload_stream", uploads.stream_upload, "upload"),
            methods=["POST"],
        ),
        Route(
            "/upload/api/file-base64-upload",
            g("upload_base64", uploads.base64_upload, "upload"),
            methods=["POST"],
        ),
        Route(
            "/upload/api/file-url-upload",
            g("upload_url", uploads.url_upload, "upload"),
            methods=["POST"],
        ),
        Route(
            "/uploads/{path:path}",
            g("uploads", uploads.serve_upload, "file", auth=False),
            methods=["GET"],
        ),
        # remix (seed 004)
        Route(
            "/ideogram/remix", g("remix", remix.remix, "remix", limit="create"), methods=["POST"]
        ),
        Route(
            "/ideogram/tasks/{task_id}",
            g("remix_task", remix.remix_task, "remix", limit="query"),
            methods=["GET"],
        ),
        # admin (loopback only, no auth)
        *admin.routes(state),
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    msg = "Not Found" if status == 404 else str(getattr(exc, "detail", "error"))
    return json_reply({"code": status, "msg": msg, "data": None}, status)


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_reply(
        {"code": 500, "msg": f"Internal server error: {type(exc).__name__}", "data": None}, 500
    )


def create_app(state: EmulatorState, registry: ConnectionRegistry | None = None) -> Starlette:
    """The ASGI app for ``state`` (the callback loop runs while the app's lifespan is up)."""
    registry = registry or ConnectionRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dispatcher = CallbackDispatcher(state)
        task = asyncio.create_task(dispatcher.run(), name="kie-emulator-callbacks")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.aclose()
            # Here, not after server.run(): uvicorn re-raises SIGTERM once it has shut down,
            # which ends the process before any code after run() could remove the folder.
            state.uploads.close()

    handlers: dict[Any, Any] = {
        404: _not_found,
        405: _not_found,
        Exception: _server_error,
    }
    return Starlette(
        routes=build_routes(state, registry),
        exception_handlers=handlers,
        lifespan=lifespan,
    )
