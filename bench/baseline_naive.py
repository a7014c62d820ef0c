"""Baseline A: the script most users write first.

One request at a time: createTask, poll recordInfo every 3 s until the task ends, download each
image with httpx, ``put_object`` it to S3. No concurrency, no retries. It stops starting new work
after ``cap_seconds`` (the orchestrator extrapolates from what it finished).

Run: ``python -m bench.baseline_naive <config.json>`` (see :class:`bench.workload.ContenderConfig`).
"""

from __future__ import annotations

import json
import sys
import time

import boto3
import httpx

from bench.workload import load_config, write_result


def main(argv: list[str]) -> int:
    config = load_config(argv[0])
    with open(config.bodies_path, encoding="utf-8") as handle:
        items = json.load(handle)
    s3 = boto3.client("s3")
    headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": "naive-script/1.0"}
    started = time.monotonic()
    deadline = started + (config.cap_seconds or float("inf"))
    completed = images = failed = 0
    capped = False
    with httpx.Client(base_url=config.base_url, headers=headers, timeout=60) as http:
        for item in items:
            if time.monotonic() >= deadline:
                capped = True
                break
            reply = http.post("/api/v1/jobs/createTask", json=item["body"])
            reply.raise_for_status()
            task_id = reply.json()["data"]["taskId"]
            while True:
                info = http.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})
                data = info.json()["data"]
                if data["state"] in ("success", "fail") or time.monotonic() >= deadline:
                    break
                time.sleep(config.poll_seconds)
            if data["state"] != "success":
                if data["state"] == "fail":
                    failed += 1
                    continue
                capped = True  # the cap came while this request was still running
                break
            for index, url in enumerate(json.loads(data["resultJson"])["resultUrls"]):
                image = httpx.get(url, headers={"User-Agent": "naive-script/1.0"}).content
                s3.put_object(
                    Bucket=config.bucket,
                    Key=f"{config.prefix}{item['id']}/{task_id}_{index}.png",
                    Body=image,
                    ContentType="image/png",
                )
                images += 1
            completed += 1
    write_result(
        config,
        completed=completed,
        images=images,
        failed=failed,
        capped=capped,
        elapsed=time.monotonic() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
