"""dagster-kie at client level: ``AsyncKieClient`` + ``BatchRunner`` into S3 (no Dagster).

Images, manifests, the task ledger and the recent task durations all go to S3, exactly as the
assets do; the client's own rate limiter is set to the emulator's limits. With a callback URL in
the config, tasks are sent with it and their ends are read from the callbacks in S3, as the assets
do when ``KIE_CALLBACK_URL`` is set.

Run: ``python -m bench.contender_client <config.json>``
(see :class:`bench.workload.ContenderConfig`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import boto3

from bench.contender_kieclient import kie_client
from bench.workload import ContenderConfig, run_contender
from dagster_kie.batch import BatchRunner
from dagster_kie.callbacks import CallbackInbox
from dagster_kie.duration_history import DurationHistory
from dagster_kie.ledger import TaskLedger
from dagster_kie.prompts import parse_prompt_file
from dagster_kie.storage import ImageStore


async def run(config: ContenderConfig) -> dict[str, Any]:
    path = Path(config.prompts_path)
    batch = parse_prompt_file(path.name, path.read_bytes())
    s3 = boto3.client("s3")
    prefix = config.prefix.strip("/")
    started = time.monotonic()
    async with kie_client(config) as client:
        runner = BatchRunner(
            client=client,
            store=ImageStore(s3, config.bucket, prefix),
            ledger=TaskLedger(s3, config.bucket, prefix),
            on_progress=lambda line: print(line, flush=True),
            durations=DurationHistory(s3, config.bucket, prefix),
            inbox=CallbackInbox(s3, config.bucket, prefix) if config.callback_url else None,
            callback_url=config.callback_url,
        )
        report = await runner.run(batch.parsed)
    for failure in report.failures[:5]:
        print(f"failed: {failure.request_id}: {failure.error}", file=sys.stderr)
    return {
        "completed": report.count("stored", "already_stored"),
        "images": sum(len(o.images) for o in report.outcomes if o.ok),
        "failed": len(report.failures),
        "capped": False,
        "elapsed": time.monotonic() - started,
    }


def main(argv: list[str]) -> int:
    return run_contender(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
