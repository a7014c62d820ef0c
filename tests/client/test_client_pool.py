"""The HTTP connection pool: sized for kie.ai's rates, every connection kept alive."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
from pathlib import Path

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
