"""The admin API: faults, reset, credits and statistics (no auth; loopback clients only).

* ``GET /admin/faults`` → ``{"faults": {kind: {...}}}``
* ``POST /admin/faults`` with ``{kind: {params} | null, ..., "clear": bool}`` → the same
* ``DELETE /admin/faults`` → clears every fault
* ``POST /admin/reset`` with optional ``{"credits": number}`` → forget tasks/stats/faults
* ``POST /admin/credits`` with ``{"balance": number}`` → set the balance
* ``GET /admin/stats`` → counters (see :meth:`Stats.to_dict`) plus balance and task states
* ``GET /admin/health`` → ``{"ok": true}``
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .faults import FaultError
from .state import CreditLedger, EmulatorState

__all__ = ["routes"]


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a number")
    return float(value)


def routes(state: EmulatorState) -> list[BaseRoute]:
    """The admin routes for ``state``."""

    def local(
        fn: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not _is_loopback(request):
                return JSONResponse({"error": "admin API answers loopback clients only"}, 403)
            try:
                return await fn(request)
            except (ValueError, FaultError) as exc:
                return JSONResponse({"error": str(exc)}, 400)

        return run

    def faults_reply() -> Response:
        return JSONResponse({"faults": state.faults.snapshot(time.time())})

    async def get_faults(request: Request) -> Response:
        return faults_reply()

    async def post_faults(request: Request) -> Response:
        body = await _json_object(request)
        clear = bool(body.pop("clear", False))
        for kind, params in body.items():
            if params is not None and params is not True and not isinstance(params, dict):
                raise FaultError(f"{kind}: parameters must be an object, true or null")
        specs = {k: ({} if v is True else v) for k, v in body.items()}
        if clear:
            # validate first, so a bad request leaves the faults unchanged
            from .faults import FaultManager

            FaultManager().set_many(specs, time.time())
            state.faults.clear()
        state.faults.set_many(specs, time.time())
        return faults_reply()

    async def delete_faults(request: Request) -> Response:
        state.faults.clear()
        return faults_reply()

    async def reset(request: Request) -> Response:
        body = await _json_object(request)
        credits = body.get("credits")
        state.reset(None if credits is None else _number(credits, "credits"))
        return JSONResponse({"ok": True, "credits_balance": state.balance()})

    async def set_credits(request: Request) -> Response:
        body = await _json_object(request)
        balance = _number(body.get("balance"), "balance")
        reserved = state.credits.reserved
        state.credits = CreditLedger(balance)
        state.credits.reserved = reserved
        return JSONResponse({"ok": True, "credits_balance": state.balance()})

    async def stats(request: Request) -> Response:
        now = time.time()
        state.advance(now)
        out = state.stats.to_dict()
        out["credits_balance"] = state.balance()
        out["credits_reserved"] = round(state.credits.reserved, 6)
        out["tasks_by_state"] = dict(
            Counter(task.phase(now)[0] for task in state.tasks.tasks.values())
        )
        out["callbacks_pending"] = len(state.pending_callbacks) + sum(
            1 for t in state.tasks.tasks.values() if t.callback_url and t.finished is None
        )
        out["image_cache"] = {
            "bytes": state.images.size,
            "hits": state.images.hits,
            "misses": state.images.misses,
        }
        return JSONResponse(out)

    async def tasks(request: Request) -> Response:
        now = time.time()
        state.advance(now)
        return JSONResponse(
            {
                "tasks": [
                    {
                        "taskId": task.task_id,
                        "kind": task.kind,
                        "model": task.model,
                        "state": task.phase(now)[0],
                        "prompt": task.prompt,
                        "seed": task.seed,
                        "num_images": task.num_images,
                        "callBackUrl": task.callback_url,
                        "creditsConsumed": task.credits_consumed,
                        "created": task.created,
                        "finished": task.finished,
                    }
                    for task in state.tasks.tasks.values()
                ]
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "base_url": state.base_url})

    return [
        Route("/admin/faults", local(get_faults), methods=["GET"]),
        Route("/admin/faults", local(post_faults), methods=["POST"]),
        Route("/admin/faults", local(delete_faults), methods=["DELETE"]),
        Route("/admin/reset", local(reset), methods=["POST"]),
        Route("/admin/credits", local(set_credits), methods=["POST"]),
        Route("/admin/stats", local(stats), methods=["GET"]),
        Route("/admin/tasks", local(tasks), methods=["GET"]),
        Route("/admin/health", local(health), methods=["GET"]),
    ]
