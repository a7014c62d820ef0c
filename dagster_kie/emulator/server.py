"""Run the emulator: bind the socket, build the app, serve with uvicorn, announce readiness.

The socket is bound before uvicorn starts (so ``--port 0`` is resolved first) and the ready line
``KIE_EMULATOR_READY {json}`` is printed once uvicorn serves on it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

import uvicorn

from .._serving import ReadyLineServer, bind_socket, url_host
from .app import create_app
from .config import READY_MARKER, EmulatorSettings
from .replies import ConnectionRegistry
from .state import EmulatorState

__all__ = ["bind_socket", "ready_info", "serve", "url_host"]

_BACKLOG = 2048


def ready_info(settings: EmulatorSettings, base_url: str) -> dict[str, Any]:
    """What the ready line announces."""
    return {
        "base_url": base_url,
        "upload_base_url": base_url + "/upload",
        "api_key": settings.api_key,
        "pid": os.getpid(),
    }


def serve(settings: EmulatorSettings, out: TextIO | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    sock = bind_socket(settings.host, settings.port, backlog=_BACKLOG)
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
        backlog=_BACKLOG,
        server_header=False,
    )
    line = READY_MARKER + " " + json.dumps(ready_info(settings, base_url))
    server = ReadyLineServer(config, line, out or sys.stdout)
    registry.server = server
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.uploads.close()
