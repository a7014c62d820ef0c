"""Reply builders: kie.ai envelopes, remix envelopes, truncated JSON and dropped connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .state import Stats

__all__ = [
    "ConnectionRegistry",
    "DroppedConnection",
    "json_reply",
    "kie_reply",
    "malformed",
    "remix_error",
    "upload_error",
]


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON reply (compact, UTF-8)."""
    return JSONResponse(body, status_code=status, headers=headers)


def kie_reply(
    stats: Stats,
    code: int,
    msg: str,
    data: Any = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"code", "msg", "data"}`` — kie.ai's envelope (errors are counted in ``stats``)."""
    if code != 200:
        stats.error(code)
    return json_reply({"code": code, "msg": msg, "data": data}, status, headers)


def upload_error(stats: Stats, code: int, msg: str, *, status: int = 200) -> JSONResponse:
    """The upload API's error envelope ``{"success": false, "code", "msg", "data": null}``."""
    stats.error(code)
    return json_reply({"success": False, "code": code, "msg": msg, "data": None}, status)


def remix_error(
    stats: Stats, code: int, message: str, *, status: int | None = None
) -> JSONResponse:
    """The remix aggregator's error envelope ``{"code", "message", "data": null}``."""
    stats.error(code)
    http = status if status is not None else (code if 400 <= code <= 599 else 200)
    return json_reply({"code": code, "message": message, "data": None}, http)


def malformed(response: Response) -> Response:
    """HTTP 200 whose body is the first half of ``response``'s JSON: not parseable."""
    body = bytes(response.body)
    cut = body[: max(1, len(body) // 2)]
    if cut.rstrip().endswith((b"}", b"]")):
        cut = cut.rstrip()[:-1]
    return Response(cut, status_code=200, media_type="application/json")


class ConnectionRegistry:
    """Finds the uvicorn connection of a request so that it can be closed mid-request.

    ``server`` is the running ``uvicorn.Server``; its ``server_state.connections`` holds the
    protocol objects, each with ``client`` (the peer address) and ``transport``.
    """

    def __init__(self) -> None:
        self.server: Any = None

    def close(self, client: Any) -> bool:
        """Close the transport of the connection from ``client``; ``False`` if not found."""
        if self.server is None or client is None:
            return False
        peer = tuple(client)
        for conn in list(self.server.server_state.connections):
            if tuple(getattr(conn, "client", None) or ()) == peer:
                transport = getattr(conn, "transport", None)
                if transport is None:
                    return False
                transport.close()
                return True
        return False


class DroppedConnection(Response):
    """A "reply" that drops the connection instead of answering.

    ``mode="close"`` closes the TCP connection without sending a byte (clients see "server
    disconnected without sending a response"); ``mode="partial"`` sends the status line, a
    ``Content-Length`` and half the body, then closes (clients see an incomplete body). If the
    connection cannot be found, ``partial`` is used.
    """

    def __init__(
        self, registry: ConnectionRegistry, mode: str = "close", body: bytes = b""
    ) -> None:
        super().__init__(b"", status_code=200)
        self.registry = registry
        self.mode = mode
        self.partial_body = body or json.dumps({"code": 200, "msg": "success", "data": {}}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Drop the connection (see the class docstring)."""
        if self.mode == "close" and self.registry.close(scope.get("client")):
            await _await_disconnect(receive)
            return
        body = self.partial_body
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body) + 64).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        # returning without completing the body would make uvicorn close the transport anyway;
        # closing it ourselves and waiting for the disconnect keeps uvicorn's log quiet
        if self.registry.close(scope.get("client")):
            await _await_disconnect(receive)


async def _await_disconnect(receive: Receive) -> None:
    """Wait (briefly) until uvicorn has noticed that the connection is gone."""

    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wait(), 1.0)
