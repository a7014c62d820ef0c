"""Serve the receiver with uvicorn on a pre-bound socket and announce readiness.

The socket is bound before uvicorn starts (so ``--port 0`` is resolved first); the line
``KIE_CALLBACKS_READY {"url": ..., "pid": ...}`` is printed once uvicorn serves on it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any, TextIO

import uvicorn
from starlette.applications import Starlette

from .process import READY_MARKER

__all__ = ["READY_MARKER", "bind_socket", "serve", "url_host"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: the OS picks)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def url_host(host: str, family: int) -> str:
    """The host to put in URLs: wildcard addresses become loopback; IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if family == socket.AF_INET6 or ":" in host:
        return f"[{host}]"
    return host


class _Server(uvicorn.Server):
    """A uvicorn server that prints the ready line once it serves."""

    def __init__(self, config: uvicorn.Config, ready_line: str, out: TextIO) -> None:
        super().__init__(config)
        self._ready_line = ready_line
        self._out = out

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._out.write(self._ready_line + "\n")
            self._out.flush()


def serve(
    app: Starlette,
    *,
    sock: socket.socket,
    path: str,
    host: str,
    access_log: bool = False,
    log_level: str = "info",
    out: TextIO | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM, announcing the callback URL when ready."""
    port = sock.getsockname()[1]
    info: dict[str, Any] = {
        "url": f"http://{url_host(host, sock.family)}:{port}{path}",
        "pid": os.getpid(),
    }
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = _Server(config, f"{READY_MARKER} {json.dumps(info)}", out or sys.stdout)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
