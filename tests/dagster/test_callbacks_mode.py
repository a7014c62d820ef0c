"""Callback mode: kie.ai (the emulator) POSTs results to the receiver, runs read them from S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.emulator import EmulatorProcess

HMAC_KEY = "test-webhook-hmac-key"


@pytest.fixture(scope="module")
def signing_emulator() -> Iterator[EmulatorProcess]:
    """An emulator that signs its callbacks with ``HMAC_KEY``."""
    with EmulatorProcess(
        task_duration=0.5, create_limit=200, query_limit=200, webhook_hmac_key=HMAC_KEY
    ) as process:
        yield process


def _receiver(local_s3: Any, bucket: str, hmac_key: str) -> CallbackReceiverProcess:
    return CallbackReceiverProcess(
        bucket=bucket, prefix="kie", hmac_key=hmac_key, env=local_s3.env()
    )


def test_callbacks_replace_polling(
    signing_emulator: EmulatorProcess,
    local_s3: Any,
    s3_bucket: Any,
    make_project: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3, bucket = s3_bucket
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.1")
    with _receiver(local_s3, bucket, HMAC_KEY) as receiver:
        project = make_project(signing_emulator, callback_url=receiver.url)
        lines = [json.dumps({"prompt": f"callback {i}", "image_size": "square"}) for i in range(6)]
        partition = project.write("cb.jsonl", "\n".join(lines))

        assert project.materialize(partition).success

    stats = signing_emulator.admin.stats()
    assert stats["tasks_created"] == 6
    assert stats["callbacks_sent"] == 6
    # Results came from the callbacks in S3: at most one kie.ai query per task.
    assert stats["query_calls"].get("record_info", 0) <= 6
    # Each callback is removed from the inbox once its images are stored.
    assert s3.list_objects_v2(Bucket=bucket, Prefix="kie/_callbacks/")["KeyCount"] == 0
    images = [k for k in project.keys(s3) if k.endswith(".png")]
    assert len(images) == 6


def test_callback_that_never_arrives_falls_back_to_polling(
    signing_emulator: EmulatorProcess,
    local_s3: Any,
    s3_bucket: Any,
    make_project: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3, bucket = s3_bucket
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.05")
    with _receiver(local_s3, bucket, HMAC_KEY) as receiver:
        project = make_project(signing_emulator, callback_url=receiver.url)
        signing_emulator.admin.set_faults(drop_callbacks=True)
        partition = project.write("lost.txt", "a prompt whose callback is lost\n")
        assert project.materialize(partition).success
    assert signing_emulator.admin.stats()["callbacks_dropped"] == 1
    assert signing_emulator.admin.stats()["query_calls"].get("record_info", 0) >= 1
    assert len([k for k in project.keys(s3) if k.endswith(".png")]) == 1


def test_wrongly_signed_callbacks_are_not_trusted(
    signing_emulator: EmulatorProcess,
    local_s3: Any,
    s3_bucket: Any,
    make_project: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3, bucket = s3_bucket
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.05")
    with _receiver(local_s3, bucket, "a-different-key") as receiver:
        project = make_project(signing_emulator, callback_url=receiver.url)
        partition = project.write("forged.txt", "a prompt with a forged callback\n")
        assert project.materialize(partition).success
    assert s3.list_objects_v2(Bucket=bucket, Prefix="kie/_callbacks/")["KeyCount"] == 0
    assert len([k for k in project.keys(s3) if k.endswith(".png")]) == 1
