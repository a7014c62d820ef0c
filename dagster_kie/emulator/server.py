"""Run the emulator: bind the socket, build the app, serve with uvicorn, announce readiness.

The socket is bound before uvicorn starts (so ``--port 0`` is resolved first) and the ready line
``KIE_EMULATOR_READY {json}`` is printed once uvicorn serves on it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any, TextIO

import uvicorn

from .app import create_app
from .config import READY_MARKER, EmulatorSettings
from .replies import ConnectionRegistry
from .state import EmulatorState

__all__ = ["bind_socket", "ready_info", "serve", "url_host"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: the OS picks)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
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


def ready_info(settings: EmulatorSettings, base_url: str) -> dict[str, Any]:
    """What the ready line announces."""
    return {
        "base_url": base_url,
        "upload_base_url": base_url + "/upload",
        "api_key": settings.api_key,
        "pid": os.getpid(),
    }


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


def serve(settings: EmulatorSettings, out: TextIO | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    base_url = f"http://{url_host(settings.host, sock.family)}:{port}"
    state = EmulatorState(settings, base_url)
    registry = ConnectionRegistry()
    app = create_app(state, registry)
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
        backlog=2048,
        server_header=False,
    )
    line = READY_MARKER + " " + json.dumps(ready_info(settings, base_url))
    server = _Server(config, line, out or sys.stdout)
    registry.server = server
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.uploads.close()
