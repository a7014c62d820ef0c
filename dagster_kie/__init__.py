"""dagster-kie: kie.ai's Ideogram image-generation APIs as a first-class part of Dagster.

Public names are loaded on first use, so ``python -m dagster_kie.emulator`` and the callback
receiver start without importing Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # client layer (no Dagster)
    "KieClient": "dagster_kie.client",
    "AsyncKieClient": "dagster_kie.client",
    "RateLimits": "dagster_kie.rate_limit",
    "PollingPolicy": "dagster_kie.polling",
    "DownloadPolicy": "dagster_kie.download",
    "parse_remix_request": "dagster_kie.models",
    "parse_request": "dagster_kie.models",
    "TaskRecord": "dagster_kie.models",
    "RemixImageRequest": "dagster_kie.models",
    "KieError": "dagster_kie.errors",
    "parse_prompt_file": "dagster_kie.prompts",
    "RecordDefaults": "dagster_kie.prompts",
    "LocalPromptSource": "dagster_kie.sources",
    "S3PromptSource": "dagster_kie.sources",
    "ImageStore": "dagster_kie.storage",
    "TaskLedger": "dagster_kie.ledger",
    "BatchRunner": "dagster_kie.batch",
    "DurationHistory": "dagster_kie.duration_history",
    # Dagster layer
    "KieResource": "dagster_kie.resource",
    "KieAssets": "dagster_kie.assets",
    "build_kie_assets": "dagster_kie.assets",
    "build_prompt_sensor": "dagster_kie.sensors",
    "build_retry_sensor": "dagster_kie.sensors",
    "build_batch_schedule": "dagster_kie.schedules",
    "KieImageGeneration": "dagster_kie.component",
}

__all__ = [
    "AsyncKieClient",
    "BatchRunner",
    "DownloadPolicy",
    "DurationHistory",
    "ImageStore",
    "KieAssets",
    "KieClient",
    "KieError",
    "KieImageGeneration",
    "KieResource",
    "LocalPromptSource",
    "PollingPolicy",
    "RateLimits",
    "RecordDefaults",
    "RemixImageRequest",
    "S3PromptSource",
    "TaskLedger",
    "TaskRecord",
    "__version__",
    "build_batch_schedule",
    "build_kie_assets",
    "build_prompt_sensor",
    "build_retry_sensor",
    "parse_prompt_file",
    "parse_remix_request",
    "parse_request",
]

if TYPE_CHECKING:
    from dagster_kie.assets import KieAssets, build_kie_assets
    from dagster_kie.batch import BatchRunner
    from dagster_kie.client import AsyncKieClient, KieClient
    from dagster_kie.component import KieImageGeneration
    from dagster_kie.download import DownloadPolicy
    from dagster_kie.duration_history import DurationHistory
    from dagster_kie.errors import KieError
    from dagster_kie.ledger import TaskLedger
    from dagster_kie.models import RemixImageRequest, TaskRecord, parse_remix_request, parse_request
    from dagster_kie.polling import PollingPolicy
    from dagster_kie.prompts import RecordDefaults, parse_prompt_file
    from dagster_kie.rate_limit import RateLimits
    from dagster_kie.resource import KieResource
    from dagster_kie.schedules import build_batch_schedule
    from dagster_kie.sensors import build_prompt_sensor, build_retry_sensor
    from dagster_kie.sources import LocalPromptSource, S3PromptSource
    from dagster_kie.storage import ImageStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dagster_kie' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
