"""The async HTTP transport of :class:`~dagster_kie.client.AsyncKieClient`: httpx's, made cheaper.

httpcore's connection pool asks every pooled connection whether it has expired, twice per
request; for an idle one that means ``get_extra_info("is_readable")``. On the anyio backend
(the one asyncio uses) each such call builds anyio's whole socket attribute table, which includes
a ``getpeername()`` system call, just to find the raw socket again. With the client's 32
connections that was 16 % of a 1,000-request batch's on-CPU samples under py-spy (less without
the profiler), CPU that delays the createTask calls of a burst. Upstream: encode/httpcore#928.

Here each stream finds its raw socket once and keeps it; the readability check itself is
httpcore's own (:func:`httpcore._utils.is_socket_readable`), so the pool behaves as before.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

try:
    from httpcore._utils import is_socket_readable
except ImportError:  # pragma: no cover - a future httpcore: its own (slower) check is used
    is_socket_readable = None  # type: ignore[assignment]

__all__ = ["async_transport"]


class _SocketKeepingStream(httpcore.AsyncNetworkStream):
    """A network stream that answers ``is_readable`` from a socket it looked up once."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: typing.Any = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # The TLS stream is a new stream (same socket underneath): wrap it afresh.
        return _SocketKeepingStream(
            await self._stream.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> typing.Any:
        if info != "is_readable":
            return self._stream.get_extra_info(info)
        if self._socket is None:
            self._socket = self._stream.get_extra_info("socket")
        if self._socket is None or is_socket_readable is None:
            return self._stream.get_extra_info(info)
        return is_socket_readable(self._socket)


class _SocketKeepingBackend(httpcore.AsyncNetworkBackend):
    """Wraps a network backend so that its streams keep their raw socket."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _SocketKeepingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _SocketKeepingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def async_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's default async transport with ``limits``, its pool's streams keeping their socket.

    If a future httpx builds its pool differently, this returns the plain transport.
    """
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = _SocketKeepingBackend(pool._network_backend)
    return transport
