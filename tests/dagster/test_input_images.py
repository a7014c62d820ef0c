"""Reframe and character requests naming local files and s3:// objects as their input images."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_local_and_s3_inputs_are_uploaded_first(
    project: Any, s3_bucket: Any, tmp_path: Path
) -> None:
    s3, bucket = s3_bucket
    local = tmp_path / "portrait.png"
    local.write_bytes(_png("orange"))
    s3.put_object(Bucket=bucket, Key="inputs/scene.png", Body=_png("navy"))
    records = [
        {"model": "ideogram/v3-reframe",
         "input": {"image_url": f"s3://{bucket}/inputs/scene.png", "image_size": "landscape_4_3"}},
        {"model": "ideogram/character",
         "input": {"prompt": "the same person at the beach", "reference_image_urls": [str(local)],
                   "image_size": "square"}},
    ]  # fmt: skip
    partition = project.write("inputs.jsonl", "\n".join(json.dumps(r) for r in records))

    assert project.materialize(partition).success

    stats = project.emulator.admin.stats()
    assert stats["uploads"] == 2
    assert stats["tasks_created"] == 2
    manifests = [
        json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for key in project.keys(s3)
        if key.endswith("/manifest.json")
    ]
    sizes = sorted((m["images"][0]["width"], m["images"][0]["height"]) for m in manifests)
    assert sizes == [(512, 512), (1024, 768)]


def test_missing_inputs_fail_clearly_and_spend_nothing(project: Any, s3_bucket: Any) -> None:
    _, bucket = s3_bucket
    records = [
        {"model": "ideogram/v3-reframe",
         "input": {"image_url": f"s3://{bucket}/inputs/missing.png"}},
        {"model": "ideogram/v3-reframe", "input": {"image_url": "/no/such/file.png"}},
        {"prompt": "an ordinary request", "image_size": "square"},
    ]  # fmt: skip
    partition = project.write("missing.jsonl", "\n".join(json.dumps(r) for r in records))

    result = project.materialize(partition, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data)
    assert "missing.png" in text or "file.png" in text
    stats = project.emulator.admin.stats()
    assert stats["tasks_created"] == 1  # only the ordinary request
    assert stats["uploads"] == 0
