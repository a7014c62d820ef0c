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

from .._serving import ReadyLineServer, bind_socket, url_host
from .process import READY_MARKER

__all__ = ["READY_MARKER", "bind_socket", "serve", "url_host"]


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
    server = ReadyLineServer(config, f"{READY_MARKER} {json.dumps(info)}", out or sys.stdout)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
