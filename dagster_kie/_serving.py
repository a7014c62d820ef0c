"""Serving pieces shared by the emulator and the callback receiver: bind the socket first, then
let uvicorn serve on it and print a ready line once it does.

Imports uvicorn: only ``dagster_kie.emulator.server`` and ``dagster_kie.callbacks.server`` import
this module (never a package ``__init__`` or a launcher), and it must not import dagster.
"""

from __future__ import annotations

import socket
from typing import TextIO

import uvicorn

__all__ = ["ReadyLineServer", "bind_socket", "url_host"]


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: the OS picks)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
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


class ReadyLineServer(uvicorn.Server):
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
