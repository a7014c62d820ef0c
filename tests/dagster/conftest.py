"""Fixtures for Dagster-level tests: a real emulator process, real SeaweedFS, real instances."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from dagster_kie import KieResource, LocalPromptSource, build_kie_assets
from dagster_kie.emulator import EmulatorProcess


@pytest.fixture(autouse=True)
def _fast_polling(fast_polling: None) -> None:
    """Every test here polls the emulator's short tasks fast."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """A kie.ai emulator with short tasks and rate limits scaled up for tests."""
    with EmulatorProcess(task_duration=0.4, create_limit=200, query_limit=200) as process:
        yield process


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    return folder


class Project:
    """The asset graph wired to the test servers, plus helpers to run it."""

    def __init__(
        self,
        *,
        emulator: EmulatorProcess,
        local_s3: Any,
        bucket: str,
        prompts_dir: Path,
        instance: dg.DagsterInstance,
        **resource_options: Any,
    ) -> None:
        self.emulator = emulator
        self.bucket = bucket
        self.prompts_dir = prompts_dir
        self.instance = instance
        self.source = LocalPromptSource(str(prompts_dir))
        self.kie_assets = build_kie_assets(source=self.source, bucket=bucket, prefix="kie")
        self.resources = {
            "kie": KieResource(
                api_key=emulator.api_key,
                base_url=emulator.base_url,
                upload_base_url=emulator.upload_base_url,
                allow_private_downloads=True,
                create_tasks_per_window=200,
                queries_per_second=200,
                **resource_options,
            ),
            "s3": S3Resource(
                endpoint_url=local_s3.endpoint_url,
                region_name=local_s3.region,
                aws_access_key_id=local_s3.access_key_id,
                aws_secret_access_key=local_s3.secret_access_key,
            ),
        }

    def write(self, name: str, text: str) -> str:
        path = self.prompts_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return name

    def materialize(
        self, partition: str, *, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        if partition not in self.instance.get_dynamic_partitions("kie_prompt_files"):
            self.instance.add_dynamic_partitions("kie_prompt_files", [partition])
        return dg.materialize(
            self.kie_assets.assets,
            partition_key=partition,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=raise_on_error,
        )

    def keys(self, s3: Any, prefix: str = "kie/") -> list[str]:
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys


@pytest.fixture
def make_project(
    local_s3: Any,
    s3_bucket: tuple[Any, str],
    prompts_dir: Path,
    dagster_instance: dg.DagsterInstance,
) -> Callable[..., Project]:
    """Build a :class:`Project` on a given emulator, with extra ``KieResource`` options."""

    def make(emulator: EmulatorProcess, **resource_options: Any) -> Project:
        emulator.admin.reset()
        return Project(
            emulator=emulator,
            local_s3=local_s3,
            bucket=s3_bucket[1],
            prompts_dir=prompts_dir,
            instance=dagster_instance,
            **resource_options,
        )

    return make


@pytest.fixture
def project(emulator: EmulatorProcess, make_project: Callable[..., Project]) -> Project:
    """The asset graph on the module's emulator, the session's SeaweedFS and a fresh instance."""
    return make_project(emulator)
