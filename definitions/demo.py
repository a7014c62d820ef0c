"""``./dev demo``: the main job end to end on the embedded default, no API key needed.

Starts a local S3 server (SeaweedFS) and the local kie.ai emulator, registers one partition per
prompt file of ``KIE_PROMPTS_DIR`` (default ``./prompts``), materializes the asset graph for each
with ``dagster asset materialize`` on a temporary Dagster instance, and prints where the images
are. ``--ui`` starts ``dagster dev`` against the same servers instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from dagster_kie.local_stack import DAGSTER_YAML, local_stack
from dagster_kie.sources import LocalPromptSource

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = Path(os.environ.get("KIE_DEMO_DIR") or ROOT / ".local" / "demo")
RUN_CONFIG = json.dumps({"loggers": {"console": {"config": {"log_level": "INFO"}}}})
ASSETS = "kie/generation_requests,kie/submitted_tasks,kie/generated_images"
PARTITIONS = "kie_prompt_files"


def _dagster(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), *args]


def _register_partitions(keys: list[str]) -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(PARTITIONS))
        new = [key for key in keys if key not in known]
        if new:
            instance.add_dynamic_partitions(PARTITIONS, new)


def _print_results(env: dict[str, str], copies: Path) -> int:
    """List what is in S3 and copy the images to a local folder to look at."""
    import boto3

    s3 = boto3.client("s3")
    bucket, prefix = env["KIE_S3_BUCKET"], env.get("KIE_S3_PREFIX", "kie/").strip("/")
    images, manifests = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.startswith(f"{prefix}/_"):
                continue  # the ledger and request snapshots
            (manifests if key.endswith("/manifest.json") else images).append(key)
    print(f"\n{len(images)} images and {len(manifests)} manifests in s3://{bucket}/{prefix}/")
    for key in images:
        target = copies / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        print(f"  s3://{bucket}/{key}")
    print(f"\nLocal copies to look at: {copies}/")
    print(f"The S3 data stays in {WORKDIR}; run again and nothing is paid twice.")
    return 0 if images else 1


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__)
    parser.add_argument("--ui", action="store_true", help="start dagster dev instead")
    parser.add_argument("--port", type=int, default=3000, help="UI port with --ui")
    parser.add_argument(
        "--task-duration", type=float, default=3.0, help="emulated seconds per task"
    )
    args = parser.parse_args(argv)

    prompts_dir = os.environ.get("KIE_PROMPTS_DIR") or str(ROOT / "prompts")
    dagster_home = WORKDIR / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    bucket = os.environ.get("KIE_S3_BUCKET") or "kie-demo"
    print(f"Starting local S3 (SeaweedFS) and the kie.ai emulator; work dir {WORKDIR}")
    with local_stack(
        bucket=bucket, data_dir=WORKDIR / "s3", task_duration=args.task_duration
    ) as stack:
        os.environ.update(stack.env())
        os.environ.update({"DAGSTER_HOME": str(dagster_home), "KIE_PROMPTS_DIR": prompts_dir})
        env = dict(os.environ)
        print(f"  kie.ai emulator: {stack.emulator.base_url}")
        print(f"  S3 endpoint:     {env['AWS_ENDPOINT_URL']}  bucket {bucket}")
        if args.ui:
            return _run_ui(env, args.port)
        files = sorted(LocalPromptSource(prompts_dir).scan())
        if not files:
            print(f"No prompt files (*.jsonl, *.json, *.txt) in {prompts_dir}")
            return 1
        _register_partitions(files)
        for name in files:
            print(f"\nMaterializing partition {name!r} ...", flush=True)
            command = _dagster(
                "asset", "materialize", "-m", "definitions", "--select", ASSETS,
                "--partition", name, "--config-json", RUN_CONFIG,
            )  # fmt: skip
            subprocess.run(command, env=env, cwd=ROOT, check=True)
        return _print_results(env, WORKDIR / "images")


def _run_ui(env: dict[str, str], port: int) -> int:
    process = subprocess.Popen(
        _dagster("dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)),
        env=env,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return 130


if __name__ == "__main__":
    sys.exit(main())
