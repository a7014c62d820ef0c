"""The example project's ``Definitions``, configured only from environment variables.

| variable | meaning | default |
|---|---|---|
| ``KIE_API_KEY`` | kie.ai API key | required at run time (``./dev demo`` starts the emulator) |
| ``KIE_BASE_URL`` | jobs API base URL | ``https://api.kie.ai`` |
| ``KIE_UPLOAD_BASE_URL`` | file-upload API base URL | ``https://kieai.redpandaai.co`` |
| ``KIE_CALLBACK_URL`` | public URL of the callback receiver | unset: poll |
| ``KIE_PROMPTS_DIR`` | folder the prompt sensor watches | ``./prompts`` |
| ``KIE_S3_BUCKET`` / ``KIE_S3_PREFIX`` | where images go | ``kie-demo`` / ``kie`` |
| ``KIE_CREATE_TASKS_PER_WINDOW`` | createTask calls per window (an integer ≥ 1) | ``20`` |
| ``KIE_CREATE_WINDOW_SECONDS`` | length of that window, seconds (> 0) | ``10`` |
| ``KIE_QUERIES_PER_SECOND`` | task/credit queries per second (> 0) | ``10`` |
| ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... | boto3's own settings | boto3's |
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import dagster as dg
from dagster_aws.s3 import S3Resource

from dagster_kie import (
    KieResource,
    LocalPromptSource,
    build_batch_schedule,
    build_kie_assets,
    build_prompt_sensor,
    build_retry_sensor,
)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
RATE_LIMIT_ENV = {
    "KIE_CREATE_TASKS_PER_WINDOW": ("create_tasks_per_window", int),
    "KIE_CREATE_WINDOW_SECONDS": ("create_window_seconds", float),
    "KIE_QUERIES_PER_SECOND": ("queries_per_second", float),
}
"""Rate-limit variables: KieResource field and number type (unset: the resource's default)."""

N = TypeVar("N", int, float)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _positive(name: str, kind: Callable[[str], N]) -> N | None:
    """The variable ``name`` as a positive ``kind``; None when unset or empty.

    Raises:
        ValueError: The value is not a positive finite number of that type (names the variable).
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    what = "an integer >= 1" if kind is int else "a number > 0"
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {what}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}={text!r} is not {what}")
    return value


def rate_limit_options() -> dict[str, Any]:
    """KieResource rate-limit fields from ``KIE_CREATE_TASKS_PER_WINDOW``,
    ``KIE_CREATE_WINDOW_SECONDS`` and ``KIE_QUERIES_PER_SECOND`` (only those set).

    Raises:
        ValueError: A variable is set to something else than a positive number.
    """
    options: dict[str, Any] = {}
    for name, (field, kind) in RATE_LIMIT_ENV.items():
        value = _positive(name, kind)
        if value is not None:
            options[field] = value
    return options


def build_defs() -> dg.Definitions:
    """Build the project's definitions from the environment."""
    base_url = _env("KIE_BASE_URL", "https://api.kie.ai")
    bucket = _env("KIE_S3_BUCKET", "kie-demo")
    prefix = _env("KIE_S3_PREFIX", "kie/").strip("/") or "kie"
    source = LocalPromptSource(_env("KIE_PROMPTS_DIR", "./prompts"))

    kie_assets = build_kie_assets(source=source, bucket=bucket, prefix=prefix)
    kie = KieResource(
        api_key=dg.EnvVar("KIE_API_KEY"),
        base_url=base_url,
        upload_base_url=_env("KIE_UPLOAD_BASE_URL", "https://kieai.redpandaai.co"),
        callback_url=os.environ.get("KIE_CALLBACK_URL") or None,
        # Results of a local emulator live on loopback; real kie.ai's never do.
        allow_private_downloads=urlparse(base_url).hostname in LOOPBACK_HOSTS,
        **rate_limit_options(),
    )
    s3 = S3Resource(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or None,
    )
    return dg.Definitions(
        assets=kie_assets.assets,
        jobs=[kie_assets.job],
        sensors=[
            build_prompt_sensor(
                job=kie_assets.job, partitions_def=kie_assets.partitions_def, source=source
            ),
            build_retry_sensor(job=kie_assets.job),
        ],
        schedules=[
            build_batch_schedule(job=kie_assets.job, partitions_def=kie_assets.partitions_def)
        ],
        resources={"kie": kie, "s3": s3},
    )


defs = build_defs()
