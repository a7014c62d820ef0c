"""dagster-kie at client level: ``AsyncKieClient`` alone, images put to S3 (no ledger, no Dagster).

What a user writes with the client and nothing else: every request concurrently, ``create_task``
(paced by the client's rate limiter), ``wait`` (the learned poll plan), ``stream_download`` and one
``put_object`` per image. Unlike the batch engine (``bench.contender_client``) it keeps no task
ledger, so a crash could pay twice; it measures the client itself.

Run: ``python -m bench.contender_kieclient <config.json>``
(see :class:`bench.workload.ContenderConfig`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import boto3

from bench.workload import ContenderConfig, gathered_result, run_contender
from dagster_kie.client import AsyncKieClient
from dagster_kie.download import DownloadPolicy
from dagster_kie.models import parse_request
from dagster_kie.rate_limit import RateLimits

MAX_DOWNLOADS = 16


async def _one(
    client: AsyncKieClient,
    s3: Any,
    downloads: asyncio.Semaphore,
    config: ContenderConfig,
    item: dict[str, Any],
) -> int:
    request = parse_request(item["body"])
    task_id = await client.create_task(request)
    record = await client.wait(task_id, model=request.model)
    for index, url in enumerate(record.result_urls):
        async with downloads, client.stream_download(url) as download:
            data = b"".join([chunk async for chunk in download.aiter_bytes()])
            await asyncio.to_thread(
                s3.put_object,
                Bucket=config.bucket,
                Key=f"{config.prefix}{item['id']}/{task_id}_{index}.png",
                Body=data,
                ContentType=download.content_type,
            )
    return len(record.result_urls)


def kie_client(config: ContenderConfig) -> AsyncKieClient:
    """The client every dagster-kie contender uses: the emulator's URLs and its rate limits."""
    return AsyncKieClient(
        config.api_key,
        base_url=config.base_url,
        upload_base_url=config.upload_base_url,
        rate_limits=RateLimits(
            create_per_window=config.create_limit,
            create_window_s=config.create_window,
            queries_per_second=config.queries_per_second,
        ),
        download_policy=DownloadPolicy(allow_private_addresses=True),
    )


async def run(config: ContenderConfig) -> dict[str, Any]:
    with open(config.bodies_path, encoding="utf-8") as handle:
        items = json.load(handle)
    s3 = boto3.client("s3")
    downloads = asyncio.Semaphore(MAX_DOWNLOADS)
    started = time.monotonic()
    async with kie_client(config) as client:
        results = await asyncio.gather(
            *(_one(client, s3, downloads, config, item) for item in items),
            return_exceptions=True,
        )
    return gathered_result(results, started)


def main(argv: list[str]) -> int:
    return run_contender(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
