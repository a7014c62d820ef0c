"""Real Dagster runs of the asset graph against the emulator process and SeaweedFS."""

from __future__ import annotations

import io
import json
from typing import Any

import dagster as dg
from PIL import Image

from dagster_kie.models import IMAGE_SIZE_DIMENSIONS

SAMPLE = "\n".join(
    json.dumps(record)
    for record in [
        {"id": "fox", "prompt": "a red fox", "image_size": "square", "seed": 1},
        {"prompt": "a lighthouse", "image_size": "landscape_16_9", "num_images": "2", "seed": 2},
        {
            "model": "ideogram/v3-text-to-image",
            "input": {"prompt": "a poster", "image_size": "portrait_4_3"},
        },
    ]
)


def materialization(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetMaterialization:
    """The materialization of ``kie/<name>`` in a run's events."""
    return next(
        event.materialization
        for event in result.all_events
        if event.is_step_materialization
        and event.materialization.asset_key == dg.AssetKey(["kie", name])
    )


def _images(project: Any, s3: Any) -> list[str]:
    return [
        key
        for key in project.keys(s3)
        if not key.endswith("manifest.json") and not key.startswith("kie/_")
    ]


def test_materialize_stores_every_image_with_manifest(project: Any, s3_bucket: Any) -> None:
    s3, bucket = s3_bucket
    partition = project.write("sample.jsonl", SAMPLE)

    result = project.materialize(partition)

    assert result.success
    images = _images(project, s3)
    assert len(images) == 4
    manifests = [key for key in project.keys(s3) if key.endswith("/manifest.json")]
    assert len(manifests) == 3
    for key in manifests:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        size = manifest["request"]["input"]["image_size"]
        assert len(manifest["images"]) == int(manifest["request"]["input"]["num_images"])
        for image in manifest["images"]:
            body = s3.get_object(Bucket=bucket, Key=image["key"])["Body"].read()
            with Image.open(io.BytesIO(body)) as decoded:
                assert decoded.size == IMAGE_SIZE_DIMENSIONS[size]
            assert (image["width"], image["height"]) == IMAGE_SIZE_DIMENSIONS[size]
        assert manifest["task_id"] in key
    assert project.emulator.admin.stats()["tasks_created"] == 3

    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        "images_decode",
        "dimensions_match",
        "counts_match",
        "manifests_present",
    }
    assert all(c.passed for c in checks)
    images_event = materialization(result, "generated_images")
    assert images_event.metadata["kie.images_stored"].value == 4
    assert "data:image/jpeg;base64," in images_event.metadata["kie.preview"].value


def test_rematerialize_pays_nothing_and_duplicates_nothing(project: Any, s3_bucket: Any) -> None:
    s3, _ = s3_bucket
    partition = project.write("sample.jsonl", SAMPLE)
    assert project.materialize(partition).success
    before = sorted(project.keys(s3))
    creates = project.emulator.admin.stats()["create_calls"]

    assert project.materialize(partition).success

    assert project.emulator.admin.stats()["create_calls"] == creates
    assert sorted(project.keys(s3)) == before


def test_invalid_records_are_reported_and_the_rest_runs(project: Any, s3_bucket: Any) -> None:
    s3, _ = s3_bucket
    partition = project.write(
        "mixed.jsonl",
        '{"prompt": "ok one", "image_size": "square"}\n'
        '{"prompt": "bad", "image_size": "huge"}\n'
        "{not json\n",
    )
    result = project.materialize(partition)
    assert result.success
    requests_event = materialization(result, "generation_requests")
    assert requests_event.metadata["kie.invalid_records"].value == 2
    assert "image_size" in requests_event.metadata["kie.invalid"].value
    assert project.emulator.admin.stats()["tasks_created"] == 1
    assert len(_images(project, s3)) == 1


def test_the_next_run_starts_from_the_task_durations_the_last_one_stored(
    project: Any, s3_bucket: Any
) -> None:
    s3, bucket = s3_bucket
    assert project.materialize(project.write("first.jsonl", SAMPLE)).success
    stored = json.loads(
        s3.get_object(Bucket=bucket, Key="kie/_polling/durations.json")["Body"].read()
    )
    assert len(stored["models"]["ideogram/v3-text-to-image"]["seconds"]) == 3

    result = project.materialize(project.write("second.txt", "a koi pond\na city at night\n"))

    assert result.success
    messages = [entry.user_message for entry in project.instance.all_logs(result.run_id)]
    assert any(
        "polling starts from task durations of earlier runs (ideogram/v3-text-to-image: 3)" in m
        for m in messages
    ), messages

    # a run with nothing left to wait for does not read them
    again = project.materialize("first.jsonl")
    assert again.success
    assert not any(
        "polling starts" in entry.user_message for entry in project.instance.all_logs(again.run_id)
    )
