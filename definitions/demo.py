"""``./dev demo``: the main job end to end on the embedded default, no API key needed.

Starts a local S3 server (SeaweedFS) and the local kie.ai emulator, registers one partition per
prompt file of ``KIE_PROMPTS_DIR`` (default ``./prompts``), materializes the asset graph for each
with ``dagster asset materialize`` on a temporary Dagster instance, and prints where the images
are. ``--ui`` starts ``dagster dev`` against the same servers instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from dagster_kie.local_stack import local_stack
from dagster_kie.sources import LocalPromptSource

ROOT = Path(__file__).resolve().parent.parent
ASSETS = "kie/generation_requests,kie/submitted_tasks,kie/generated_images"
PARTITIONS = "kie_prompt_files"
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
"""


def _dagster(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), *args]


def _register_partitions(keys: list[str]) -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(PARTITIONS))
        new = [key for key in keys if key not in known]
        if new:
            instance.add_dynamic_partitions(PARTITIONS, new)


def _print_results(env: dict[str, str]) -> int:
    import boto3

    s3 = boto3.client("s3")
    bucket, prefix = env["KIE_S3_BUCKET"], env.get("KIE_S3_PREFIX", "kie/").strip("/")
    images, manifests = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            key = item["Key"]
            if "/_" in key:
                continue
            (manifests if key.endswith("manifest.json") else images).append(key)
    print(f"\n{len(images)} images and {len(manifests)} manifests in s3://{bucket}/{prefix}/")
    for key in images:
        print(f"  s3://{bucket}/{key}")
    if images:
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": images[0]}, ExpiresIn=3600
        )
        print(f"\nOpen one while the local S3 server runs: {url}")
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
    workdir = Path(tempfile.mkdtemp(prefix="dagster-kie-demo-"))
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    bucket = os.environ.get("KIE_S3_BUCKET") or "kie-demo"
    print(f"Starting local S3 (SeaweedFS) and the kie.ai emulator; work dir {workdir}")
    try:
        with local_stack(bucket=bucket, data_dir=workdir / "s3", task_duration=args.task_duration) as stack:
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
                subprocess.run(
                    _dagster("asset", "materialize", "-m", "definitions", "--select", ASSETS,
                             "--partition", name),
                    env=env, cwd=ROOT, check=True,
                )
            return _print_results(env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_ui(env: dict[str, str], port: int) -> int:
    process = subprocess.Popen(
        _dagster("dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)),
        env=env, cwd=ROOT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
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
