"""Baseline B: a competent asyncio + httpx script.

Every request runs concurrently under a semaphore (50): createTask, poll recordInfo every 2 s,
download with httpx, ``put_object`` in a worker thread. No rate limiter: a 429 (HTTP 429 or code
429 in the envelope) is retried after a fixed sleep.

Run: ``python -m bench.baseline_async <config.json>`` (see :class:`bench.workload.ContenderConfig`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import boto3
import httpx

from bench.workload import ContenderConfig, gathered_result, run_contender


class RateLimited(Exception):
    pass


def _envelope(reply: httpx.Response) -> Any:
    if reply.status_code == 429:
        raise RateLimited
    reply.raise_for_status()
    body = reply.json()
    if body.get("code") == 429:
        raise RateLimited
    if body.get("code") != 200:
        raise RuntimeError(f"kie.ai error {body.get('code')}: {body.get('msg')}")
    return body["data"]


async def _call(config: ContenderConfig, send: Any) -> Any:
    while True:
        try:
            return _envelope(await send())
        except RateLimited:
            await asyncio.sleep(config.retry_sleep_seconds)


async def _one(
    config: ContenderConfig, http: httpx.AsyncClient, s3: Any, sem: asyncio.Semaphore, item: Any
) -> int:
    async with sem:
        created = await _call(
            config, lambda: http.post("/api/v1/jobs/createTask", json=item["body"])
        )
        task_id = created["taskId"]
        while True:
            await asyncio.sleep(config.poll_seconds)
            data = await _call(
                config, lambda: http.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})
            )
            if data["state"] == "success":
                break
            if data["state"] == "fail":
                raise RuntimeError(f"task {task_id} failed: {data.get('failMsg')}")
        urls = json.loads(data["resultJson"])["resultUrls"]
        for index, url in enumerate(urls):
            reply = await http.get(url)
            reply.raise_for_status()
            await asyncio.to_thread(
                s3.put_object,
                Bucket=config.bucket,
                Key=f"{config.prefix}{item['id']}/{task_id}_{index}.png",
                Body=reply.content,
                ContentType="image/png",
            )
        return len(urls)


async def run(config: ContenderConfig) -> dict[str, Any]:
    with open(config.bodies_path, encoding="utf-8") as handle:
        items = json.load(handle)
    s3 = boto3.client("s3")
    sem = asyncio.Semaphore(config.concurrency)
    headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": "async-script/1.0"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=config.base_url, headers=headers, timeout=60) as http:
        results = await asyncio.gather(
            *(_one(config, http, s3, sem, item) for item in items), return_exceptions=True
        )
    return gathered_result(results, started)


def main(argv: list[str]) -> int:
    return run_contender(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
