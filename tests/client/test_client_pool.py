"""The HTTP connection pool: sized for kie.ai's rates, every connection kept alive."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from dagster_kie.client import DEFAULT_MAX_CONNECTIONS, AsyncKieClient, KieClient


def _pool_limits(http: httpx.Client | httpx.AsyncClient) -> tuple[int, int]:
    pool = http._transport._pool  # type: ignore[union-attr]
    return pool._max_connections, pool._max_keepalive_connections


def test_sync_and_async_pools_keep_every_connection_alive() -> None:
    assert DEFAULT_MAX_CONNECTIONS == 32
    with KieClient("key") as client:
        assert _pool_limits(client._http) == (32, 32)

    async def check() -> None:
        async with AsyncKieClient("key", max_connections=8) as client:
            assert _pool_limits(client._http) == (8, 8)

    asyncio.run(check())


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        KieClient("key", max_connections=0)


def test_sniffio_is_a_declared_and_installed_dependency() -> None:
    """Without sniffio, httpcore retries ``import sniffio`` (a sys.path scan) on every lock."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    dependencies = pyproject.read_text(encoding="utf-8").split("dependencies = [", 1)[1]
    assert '"sniffio>=' in dependencies.split("]", 1)[0]
    assert importlib.util.find_spec("sniffio") is not None
    assert importlib.metadata.version("sniffio")


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; ``/drop`` answers and then silently closes the connection."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        # '/drop' promises keep-alive and closes anyway: the pool must notice before reuse.
        self.close_connection = self.path == "/drop"
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _CountingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, counting how often a stream is asked for its socket attributes."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.lookups = 0
        self.connections = 0

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(*args, **kwargs)
        self.connections += 1
        original = stream.get_extra_info

        def counted(info: str) -> Any:
            if info in ("socket", "is_readable"):
                self.lookups += 1
            return original(info)

        stream.get_extra_info = counted  # type: ignore[method-assign]
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def test_async_pool_looks_up_each_connections_socket_once(keep_alive_server: str) -> None:
    """httpcore checks every idle connection on each request (encode/httpcore#928); on asyncio
    each check used to rebuild anyio's socket attributes (a getpeername call): now once per
    connection."""
    counting = _CountingBackend()

    async def run() -> None:
        async with AsyncKieClient("key", max_connections=8) as client:
            pool = client._http._transport._pool  # type: ignore[attr-defined]
            pool._network_backend._backend = counting
            for _ in range(5):
                responses = await asyncio.gather(
                    *(client._http.get(f"{keep_alive_server}/") for _ in range(8))
                )
                assert [r.text for r in responses] == ["ok"] * 8

    asyncio.run(run())
    assert counting.connections >= 2  # several idle connections were checked on each request
    assert counting.lookups == counting.connections


def test_async_pool_still_replaces_a_connection_the_server_closed(keep_alive_server: str) -> None:
    async def run() -> None:
        async with AsyncKieClient("key") as client:
            first = await client._http.get(f"{keep_alive_server}/")
            stream = first.extensions["network_stream"]
            assert stream.get_extra_info("is_readable") is False
            assert stream.get_extra_info("server_addr")[0] == "127.0.0.1"
            dropped = await client._http.get(f"{keep_alive_server}/drop")
            assert dropped.extensions["network_stream"] is stream  # the pooled connection
            for _ in range(100):  # until the server's close reaches this side
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable") is True
            again = await client._http.get(f"{keep_alive_server}/")
            assert again.text == "ok"
            assert again.extensions["network_stream"] is not stream

    asyncio.run(run())
