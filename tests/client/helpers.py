"""Helpers for the client tests: a fake clock, PNG bytes, and one adapter for both clients."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from dagster_kie.client import AsyncKieClient, KieClient

API_KEY = "sk-test-SECRET-1234567890abcdef"
"""A recognisable key: tests assert it never shows up anywhere."""

MODES = ("sync", "async")


def png_bytes(size: tuple[int, int] = (8, 8), color: str = "red", fmt: str = "PNG") -> bytes:
    """A small real image."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def envelope(
    data: Any = None, code: int = 200, msg: str = "success", **extra: Any
) -> dict[str, Any]:
    """kie.ai's reply envelope."""
    return {"code": code, "msg": msg, "data": data, **extra}


def reply(
    data: Any = None,
    code: int = 200,
    msg: str = "success",
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """An HTTP reply carrying kie.ai's envelope."""
    return httpx.Response(status, json=envelope(data, code, msg), headers=headers)


def record(task_id: str = "task_1", state: str = "success", **fields: Any) -> dict[str, Any]:
    """A recordInfo ``data`` object."""
    data: dict[str, Any] = {
        "taskId": task_id,
        "model": "ideogram/v3-text-to-image",
        "state": state,
        "param": json.dumps({"model": "ideogram/v3-text-to-image"}),
        "resultJson": json.dumps({"resultUrls": ["https://cdn.example/a.png"]})
        if state == "success"
        else "",
        "failCode": None,
        "failMsg": "",
        "createTime": 1_700_000_000_000,
        "completeTime": 1_700_000_010_000 if state in ("success", "fail") else None,
    }
    data.update(fields)
    return data


@dataclass
class FakeClock:
    """A clock that only moves when someone sleeps (no wall time in unit tests)."""

    now: float = 1000.0
    epoch: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class Api:
    """Drives a :class:`KieClient` or an :class:`AsyncKieClient` through the same sync calls.

    Tests parametrized over :data:`MODES` run the same body against both clients.
    """

    def __init__(
        self,
        mode: str,
        api_key: str = API_KEY,
        *,
        clock: FakeClock | None = None,
        resolve: dict[str, list[str]] | None = None,
        **options: Any,
    ) -> None:
        self.mode = mode
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: KieClient | AsyncKieClient
        if mode == "sync":
            self.client = KieClient(api_key, **options)
        else:
            self.loop = asyncio.new_event_loop()
            self.client = AsyncKieClient(api_key, **options)
        if clock is not None:
            self.client._core.clock = clock.monotonic
            self.client._core.wall = clock.time
            driver: Any = self.client._driver
            driver.sleep = clock.sleep if mode == "sync" else clock.asleep
        if resolve is not None:
            table = resolve

            def lookup(host: str, port: int) -> list[str]:
                return table[host]

            async def alookup(host: str, port: int) -> list[str]:
                return table[host]

            resolver: Any = self.client._driver
            resolver.resolve = lookup if mode == "sync" else alookup

    def run(self, value: Any) -> Any:
        """Await a coroutine on this adapter's loop (async mode) or return the value."""
        if self.loop is None:
            return value
        return self.loop.run_until_complete(value)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if not callable(method):
            return method  # type: ignore[no-any-return]

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(method(*args, **kwargs))

        return call

    def download(self, url: str) -> tuple[str, str, bytes]:
        """``(content type, final URL, bytes)`` through ``stream_download``."""
        if isinstance(self.client, KieClient):
            with self.client.stream_download(url) as download:
                data = b"".join(download.iter_bytes())
            return download.content_type, download.url, data
        client = self.client

        async def fetch() -> tuple[str, str, bytes]:
            async with client.stream_download(url) as download:
                chunks = [chunk async for chunk in download.aiter_bytes()]
            return download.content_type, download.url, b"".join(chunks)

        return self.run(fetch())  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the client (and the loop)."""
        if isinstance(self.client, KieClient):
            self.client.close()
            return
        self.run(self.client.aclose())
        assert self.loop is not None
        self.loop.close()


Item = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A scripted server for ``httpx.MockTransport``: replies per (method, path), in order.

    The last reply of a route repeats. Every request is recorded.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Item]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *items: Item) -> Script:
        """Queue replies (responses, exceptions to raise, or handlers) for a route."""
        self.routes.setdefault((method.upper(), path), []).extend(items)
        return self

    def count(self, method: str, path: str) -> int:
        """Requests received on a route."""
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, text=f"no route for {request.method} {request.url.path}")
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return httpx.Response(item.status_code, headers=item.headers, content=item.content)
        return item(request)
