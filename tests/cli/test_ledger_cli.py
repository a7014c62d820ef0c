"""``dagster-kie ledger``, run as a real process against SeaweedFS and the emulator.

The scenario it exists for: a run stopped between createTask and recording the task id, so the
request is unconfirmed; the user finds the task and confirms it, and the next run stores that
task's images without creating another one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagster_kie.batch import BatchReport, BatchRunner
from dagster_kie.client import AsyncKieClient, KieClient
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.ledger import TaskLedger
from dagster_kie.local_s3 import LocalS3Server
from dagster_kie.prompts import ParsedRequest, parse_prompt_file
from dagster_kie.storage import ImageStore

PREFIX = "kie"


@pytest.fixture(autouse=True)
def _fast_polling(fast_polling: None) -> None:
    """Every test here polls the emulator's short tasks fast."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(task_duration=0.2) as process:
        yield process


class Rig:
    """A bucket, its ledger, the emulator and a way to run ``dagster-kie`` on them."""

    def __init__(self, emulator: EmulatorProcess, s3: LocalS3Server, client: Any,
                 bucket: str) -> None:  # fmt: skip
        self.emulator, self.s3, self.client, self.bucket = emulator, s3, client, bucket
        self.ledger = TaskLedger(client, bucket, PREFIX)

    def cli(self, *args: str, api_key: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "AWS_"))}
        env.update(self.s3.env(), KIE_S3_BUCKET=self.bucket, KIE_BASE_URL=self.emulator.base_url)
        if api_key:
            env["KIE_API_KEY"] = self.emulator.api_key
        command = [str(Path(sys.executable).with_name("dagster-kie")), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    def request(self, request_id: str) -> ParsedRequest:
        record = {"id": request_id, "prompt": f"{request_id} in the snow", "image_size": "square"}
        line = json.dumps(record)
        [parsed] = parse_prompt_file("p.jsonl", line.encode()).parsed
        return parsed

    def crash_after_create(self, item: ParsedRequest) -> str:
        """What a run killed right after createTask leaves: an intent and an unrecorded task."""
        self.ledger.record_intent(item.request_id, item.request.model)
        with KieClient(self.emulator.api_key, base_url=self.emulator.base_url) as kie:
            return kie.create_task(item.request)

    def run_batch(self, *items: ParsedRequest) -> BatchReport:
        async def go() -> BatchReport:
            async with AsyncKieClient(**self.emulator.client_options()) as kie:
                runner = BatchRunner(client=kie, store=ImageStore(self.client, self.bucket, PREFIX),
                                     ledger=self.ledger, on_progress=lambda line: None)  # fmt: skip
                return await runner.run(list(items))

        return asyncio.run(go())

    def creates(self) -> int:
        return int(self.emulator.admin.stats()["create_calls"])


@pytest.fixture
def rig(emulator: EmulatorProcess, local_s3: LocalS3Server,
        s3_bucket: tuple[Any, str]) -> Rig:  # fmt: skip
    client, bucket = s3_bucket
    return Rig(emulator, local_s3, client, bucket)


def test_confirm_lets_the_next_run_store_the_found_task_without_a_new_one(rig: Rig) -> None:
    item = rig.request("fox-1")
    task_id = rig.crash_after_create(item)
    creates = rig.creates()

    lost = rig.run_batch(item)
    [outcome] = lost.outcomes
    assert outcome.status == "unconfirmed" and rig.creates() == creates

    listed = rig.cli("ledger", "list", "--state", "submitting")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["REQUEST", "ID", "MODEL"]
    assert row.split()[:4] == ["fox-1", "ideogram/v3-text-to-image", "submitting", "-"]
    assert "1 entry in state submitting" in listed.stderr
    assert "1 request unconfirmed" in listed.stderr and "ledger confirm" in listed.stderr

    confirmed = rig.cli("ledger", "confirm", "fox-1", task_id)
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"request fox-1 now records task {task_id} (submitted)" in confirmed.stdout
    assert f"kie.ai: task {task_id} is success" in confirmed.stderr
    entry = rig.ledger.get("fox-1")
    assert entry is not None and (entry.state, entry.task_id) == ("submitted", task_id)

    report = rig.run_batch(item)
    [outcome] = report.outcomes
    assert outcome.status == "stored", outcome.error
    assert outcome.task_id == task_id and not outcome.created_task
    assert rig.creates() == creates  # the found task was stored, nothing was paid again
    [image] = outcome.images
    assert f"/{task_id}/" in image.key
    rig.client.head_object(Bucket=rig.bucket, Key=image.key)

    again = rig.cli("ledger", "confirm", "fox-1", task_id)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    shown = rig.cli("ledger", "list")
    assert [line.split()[2:4] for line in shown.stdout.splitlines()[1:]] == [["succeeded", task_id]]


def test_confirm_refuses_what_is_not_an_unconfirmed_request(rig: Rig) -> None:
    item = rig.request("cat-1")
    rig.ledger.record_submitted(item.request_id, item.request.model, "task-a")

    other = rig.cli("ledger", "confirm", "cat-1", "task-b", "--no-check")
    assert other.returncode == 1
    assert "request cat-1 already records task task-a (submitted), not task-b" in other.stderr
    assert "nothing changed" in other.stderr

    rig.ledger.record_intent("dog-1", item.request.model)
    missing = rig.cli("ledger", "confirm", "dog-1", "no-such-task")
    assert missing.returncode == 1 and "kie.ai has no task no-such-task" in missing.stderr

    unknown = rig.cli("ledger", "confirm", "nobody", "task-c", "--no-check")
    assert unknown.returncode == 1 and "no entry for request nobody" in unknown.stderr

    unsafe = rig.cli("ledger", "confirm", "../x", "task-c")
    assert unsafe.returncode == 2 and "REQUEST_ID" in unsafe.stderr

    for request_id, state, task_id in (
        ("cat-1", "submitted", "task-a"),
        ("dog-1", "submitting", None),
    ):
        entry = rig.ledger.get(request_id)
        assert entry is not None and (entry.state, entry.task_id) == (state, task_id)


def test_confirm_refuses_a_task_of_another_model(rig: Rig) -> None:
    item = rig.request("owl-1")
    rig.ledger.record_intent(item.request_id, "ideogram/v3-reframe")
    with KieClient(rig.emulator.api_key, base_url=rig.emulator.base_url) as kie:
        task_id = kie.create_task(item.request)
    result = rig.cli("ledger", "confirm", "owl-1", task_id)
    assert result.returncode == 1
    assert "is a ideogram/v3-text-to-image task but request owl-1 is ideogram/v3-reframe" in (
        result.stderr
    )
    unchecked = rig.cli("ledger", "confirm", "owl-1", task_id, api_key=False)
    assert unchecked.returncode == 0 and "not checked on kie.ai (no API key)" in unchecked.stderr


def test_forget_needs_yes_then_the_next_run_sends_the_request_again(rig: Rig) -> None:
    item = rig.request("hen-1")
    rig.ledger.record_intent(item.request_id, item.request.model)  # createTask never went out

    refused = rig.cli("ledger", "forget", "hen-1")
    assert refused.returncode == 2
    assert "you pay twice" in refused.stderr and "Re-run with --yes" in refused.stderr
    assert "dagster-kie ledger confirm hen-1 TASK_ID" in refused.stderr
    assert rig.ledger.get("hen-1") is not None

    forgotten = rig.cli("ledger", "forget", "hen-1", "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert rig.ledger.get("hen-1") is None

    creates = rig.creates()
    [outcome] = rig.run_batch(item).outcomes
    assert outcome.status == "stored" and outcome.created_task
    assert rig.creates() == creates + 1

    kept = rig.cli("ledger", "forget", "hen-1", "--yes")
    assert kept.returncode == 1 and "forgetting it would pay again" in kept.stderr
    assert rig.ledger.get("hen-1") is not None
    nothing = rig.cli("ledger", "forget", "nobody", "--yes")
    assert nothing.returncode == 0 and "nothing to forget" in nothing.stdout


def test_list_of_an_empty_ledger_and_s3_settings(rig: Rig) -> None:
    empty = rig.cli("ledger", "list")
    assert empty.returncode == 0 and empty.stdout == ""
    assert f"0 entries in s3://{rig.bucket}/{PREFIX}/_ledger/" in empty.stderr
    no_bucket = rig.cli("ledger", "list", "--bucket", "no-such-bucket-kie")
    assert no_bucket.returncode == 3 and "cannot use the ledger" in no_bucket.stderr
