"""Materialization metadata: the figures and previews a user wants to see in the Dagster UI.

Keys are namespaced ``kie.*`` like dagster-openai's ``openai.*``.
"""

from __future__ import annotations

import contextlib
import io
import statistics
from collections import Counter
from typing import Any

import dagster as dg

from dagster_kie.batch import BatchReport
from dagster_kie.previews import preview_markdown, thumbnail_data_uri
from dagster_kie.prompts import PromptBatch
from dagster_kie.storage import ImageStore

__all__ = ["images_metadata", "requests_metadata", "tasks_metadata"]

MAX_LISTED = 200
MAX_PREVIEWS = 8


def requests_metadata(batch: PromptBatch) -> dict[str, Any]:
    """Metadata of the validated requests of one prompt file."""
    models = Counter(item.request.model for item in batch.parsed)
    invalid_rows = "\n".join(
        f"| {record.line} | {'; '.join(record.errors).replace('|', '/')} |"
        for record in batch.invalid[:MAX_LISTED]
    )
    return {
        "kie.file": batch.file,
        "kie.requests": len(batch.parsed),
        "kie.invalid_records": len(batch.invalid),
        "kie.duplicate_records": batch.duplicates,
        "kie.images_requested": batch.num_images,
        "kie.models": dg.MetadataValue.json(dict(models)),
        "kie.request_ids": dg.MetadataValue.json(
            {item.request_id: item.line for item in batch.parsed[:MAX_LISTED]}
        ),
        "kie.invalid": dg.MetadataValue.md(
            "| line | problem |\n|---|---|\n" + invalid_rows
            if batch.invalid
            else "_All records are valid._"
        ),
    }


def tasks_metadata(report: BatchReport) -> dict[str, Any]:
    """Metadata of the submitted tasks."""
    task_ids = {o.request_id: o.task_id for o in report.outcomes if o.task_id}
    return {
        "kie.tasks_created": report.tasks_created,
        "kie.tasks_resumed": sum(1 for o in report.outcomes if o.task_id and not o.created_task),
        "kie.tasks": dg.MetadataValue.json(dict(list(task_ids.items())[:MAX_LISTED])),
        "kie.unconfirmed": report.count("unconfirmed"),
    }


def images_metadata(report: BatchReport, store: ImageStore) -> dict[str, Any]:
    """Metadata of the stored images, with a Markdown preview of a few thumbnails."""
    done = [o for o in report.outcomes if o.ok]
    images = [(o, image) for o in done for image in o.images]
    waits = [o.wait_seconds for o in report.outcomes if o.wait_seconds is not None]
    return {
        "kie.images_stored": sum(len(o.images) for o in done if o.status == "stored"),
        "kie.images_total": len(images),
        "kie.requests_stored": report.count("stored"),
        "kie.requests_already_stored": report.count("already_stored"),
        "kie.requests_failed": len(report.failures),
        "kie.credits": report.credits_spent,
        "kie.elapsed_seconds": round(report.elapsed_seconds, 2),
        "kie.wait_seconds_p50": round(statistics.median(waits), 2) if waits else None,
        "kie.wait_seconds_max": round(max(waits), 2) if waits else None,
        "kie.s3_uris": dg.MetadataValue.json([image.uri for _, image in images[:MAX_LISTED]]),
        "kie.manifests": dg.MetadataValue.json(
            sorted({o.manifest_uri for o in done if o.manifest_uri})[:MAX_LISTED]
        ),
        "kie.preview": dg.MetadataValue.md(_preview(images, store)),
    }


def _preview(images: list[tuple[Any, Any]], store: ImageStore) -> str:
    items = []
    for outcome, image in images[:MAX_PREVIEWS]:
        with contextlib.closing(store.open(image.key)) as body:
            data_uri = thumbnail_data_uri(io.BytesIO(body.read()))
        caption = f"{outcome.request_id[:12]}#{image.index}"
        items.append((caption, data_uri, store.presigned_url(image.key, expires_in=7 * 24 * 3600)))
    return preview_markdown(items, total=len(images))
