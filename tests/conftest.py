"""Fixtures shared by the whole test suite: a real local S3 server (SeaweedFS), moto, Dagster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_kie.local_s3 import LocalS3Server


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3Server]:
    """One SeaweedFS ``weed mini`` for the whole session (free ports, stopped by PID at the end)."""
    with LocalS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def local_s3_client(local_s3: LocalS3Server) -> Any:
    """One boto3 S3 client for the session's SeaweedFS (clients are thread-safe)."""
    return local_s3.client()


@pytest.fixture
def s3_bucket(local_s3_client: Any) -> Iterator[tuple[Any, str]]:
    """``(client, bucket)``: a fresh, uniquely named bucket on the session's SeaweedFS."""
    client = local_s3_client
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    with suppress(Exception):  # SeaweedFS deletes non-empty buckets; best effort on teardown
        client.delete_bucket(Bucket=bucket)


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """``(client, bucket)`` of a fresh in-memory S3 (moto's ``mock_aws``), for fast unit tests."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="moto-test")
        yield client, "moto-test"


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the emulator's short tasks at a tenth of kie.ai's advised intervals."""
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.1")


@pytest.fixture
def dagster_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real, temporary Dagster instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance
