"""Helpers shared by the emulator tests: a raw httpx client, a callback receiver, images."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from dagster_kie.emulator import EmulatorProcess

FAST: dict[str, Any] = {
    "task_duration": 0.2,
    "task_duration_dist": "fixed",
    "create_limit": 10_000,
    "query_limit": 10_000,
    "random_seed": 1234,
}
"""Settings of the shared emulator: short tasks, rate limits out of the way."""


class Kie:
    """A raw httpx client for one emulator (auth and User-Agent headers set)."""

    def __init__(self, emu: EmulatorProcess, key: str | None = None) -> None:
        self.emu = emu
        self.base = emu.base_url
        self.upload_base = emu.upload_base_url
        self.http = httpx.Client(
            timeout=30,
            trust_env=False,
            headers={
                "Authorization": f"Bearer {key or emu.api_key}",
                "User-Agent": "dagster-kie-tests/1.0",
            },
        )

    def close(self) -> None:
        self.http.close()

    def create(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.base + "/api/v1/jobs/createTask", json=body)

    def create_ok(self, prompt: str = "A red fox in the snow", **input_: Any) -> str:
        body = {"model": "ideogram/v3-text-to-image", "input": {"prompt": prompt, **input_}}
        reply = self.create(body).json()
        assert reply["code"] == 200, reply
        return str(reply["data"]["taskId"])

    def record(self, task_id: str) -> dict[str, Any]:
        reply = self.http.get(self.base + "/api/v1/jobs/recordInfo", params={"taskId": task_id})
        data = reply.json()
        assert isinstance(data, dict)
        return data

    def wait(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.record(task_id)
            if reply["code"] == 200 and reply["data"]["state"] in ("success", "fail"):
                return dict(reply["data"])
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not end in {timeout} s")

    def credit(self) -> float:
        reply = self.http.get(self.base + "/api/v1/chat/credit").json()
        assert reply["code"] == 200, reply
        return float(reply["data"])


def result_urls(record: dict[str, Any]) -> list[str]:
    """The resultUrls of a finished recordInfo ``data``."""
    return list(json.loads(record["resultJson"])["resultUrls"])


def png_bytes(size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A small real image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


class Receiver:
    """A tiny callback receiver: an ``http.server`` on 127.0.0.1:0 in a thread."""

    def __init__(self, status: int = 200) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                outer.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kie-callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, timeout: float = 5.0) -> tuple[dict[str, str], dict[str, Any]]:
        headers, body = self.received.get(timeout=timeout)
        return headers, json.loads(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
