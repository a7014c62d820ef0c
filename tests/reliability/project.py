"""The Dagster project the reliability tests run, in-process or as a real ``dagster`` subprocess.

``dagster asset materialize -m tests.reliability.project --partition <file>`` loads :data:`defs`,
configured only from the environment (like ``definitions``) plus a few test knobs:

| variable | meaning |
|---|---|
| ``KIE_API_KEY``, ``KIE_BASE_URL``, ``KIE_UPLOAD_BASE_URL``, ``KIE_CALLBACK_URL`` | as in ``definitions`` |
| ``KIE_PROMPTS_DIR``, ``KIE_S3_BUCKET`` | prompt folder, bucket (prefix ``kie``) |
| ``KIE_TEST_CREATE_PER_WINDOW``, ``KIE_TEST_CREATE_WINDOW`` | the client's createTask pace |
| ``KIE_TEST_WAIT_TIMEOUT`` | ``wait_timeout_seconds`` (also the callback confirm timeout) |
| ``KIE_TEST_MAX_DOWNLOADS`` | concurrent downloads in a run |

Dagster's in-run retries are off (``retry_policy=None``): the tests re-execute a partition
themselves, as the retry sensor would.
"""  # noqa: E501

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from dagster_kie import KieResource, LocalPromptSource, build_kie_assets
from dagster_kie.assets import KieAssets

PREFIX = "kie"
PARTITIONS = "kie_prompt_files"
ASSETS = "kie/generation_requests,kie/submitted_tasks,kie/generated_images"


def build_assets(prompts_dir: str, bucket: str, **options: Any) -> KieAssets:
    """The asset graph on a prompt folder and bucket, without in-run retries."""
    return build_kie_assets(
        source=LocalPromptSource(prompts_dir),
        bucket=bucket,
        prefix=PREFIX,
        retry_policy=None,
        **options,
    )


def kie_resource(api_key: Any, base_url: str, upload_base_url: str, **options: Any) -> KieResource:
    """A ``KieResource`` for the emulator: fast pace, loopback downloads allowed by default."""
    settings: dict[str, Any] = {
        "allow_private_downloads": True,
        "create_tasks_per_window": 200,
        "create_window_seconds": 1.0,
        "queries_per_second": 200,
        "max_retries": 5,
        "wait_timeout_seconds": 60.0,
    }
    settings.update(options)
    return KieResource(
        api_key=api_key, base_url=base_url, upload_base_url=upload_base_url, **settings
    )


def s3_resource(endpoint_url: str, access_key: str, secret_key: str, region: str) -> S3Resource:
    """An ``S3Resource`` for a local S3 server."""
    return S3Resource(
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


def build_defs() -> dg.Definitions:
    """The project's definitions from the environment."""
    env = os.environ
    kie_assets = build_assets(
        env["KIE_PROMPTS_DIR"],
        env["KIE_S3_BUCKET"],
        max_downloads=int(env.get("KIE_TEST_MAX_DOWNLOADS") or 16),
    )
    options: dict[str, Any] = {"callback_url": env.get("KIE_CALLBACK_URL") or None}
    if env.get("KIE_TEST_CREATE_PER_WINDOW"):
        options["create_tasks_per_window"] = int(env["KIE_TEST_CREATE_PER_WINDOW"])
    if env.get("KIE_TEST_CREATE_WINDOW"):
        options["create_window_seconds"] = float(env["KIE_TEST_CREATE_WINDOW"])
    if env.get("KIE_TEST_WAIT_TIMEOUT"):
        options["wait_timeout_seconds"] = float(env["KIE_TEST_WAIT_TIMEOUT"])
    kie = kie_resource(
        dg.EnvVar("KIE_API_KEY"), env["KIE_BASE_URL"], env["KIE_UPLOAD_BASE_URL"], **options
    )
    s3 = S3Resource(
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        region_name=env.get("AWS_REGION") or None,
    )
    # One process per run (no step subprocess): faster to start, and kill -9 hits the step.
    return dg.Definitions(
        assets=kie_assets.assets,
        jobs=[kie_assets.job],
        resources={"kie": kie, "s3": s3},
        executor=dg.in_process_executor,
    )


defs = build_defs() if "KIE_PROMPTS_DIR" in os.environ and "KIE_S3_BUCKET" in os.environ else None
