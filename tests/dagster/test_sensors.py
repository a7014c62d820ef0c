"""The prompt sensor and the retry sensor, ticked against real temporary Dagster instances.

The asset here is a tiny stand-in sharing the sensors' ``DynamicPartitionsDefinition``; ticks are
evaluated with ``SensorDefinition.evaluate_tick`` (the daemon's path: run requests are resolved
against the job and partitions) and the tick's log is read back from the instance's captured-log
storage, where the UI reads it.
"""

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from dagster._core.definitions.instigation_logger import get_instigation_log_records
from moto import mock_aws

from dagster_kie.models import REFRAME
from dagster_kie.prompts import RecordDefaults
from dagster_kie.sensors import (
    ATTEMPT_TAG,
    FINGERPRINT_TAG,
    PROMPT_FILE_TAG,
    RETRY_OF_TAG,
    RETRYABLE_TAG,
    build_prompt_sensor,
    build_retry_sensor,
    decode_prompt_cursor,
    encode_prompt_cursor,
)
from dagster_kie.sources import LocalPromptSource, PromptSource, S3PromptSource

PARTITIONS = dg.DynamicPartitionsDefinition(name="kie_prompt_files")
JOB_NAME = "kie_generate_images"


@dg.asset(partitions_def=PARTITIONS)
def stand_in(context: dg.AssetExecutionContext) -> None:
    """Succeeds, or fails the way the real asset layer does, depending on the partition."""
    partition = context.partition_key
    if partition.startswith("flaky"):
        raise dg.Failure("kie.ai answered 429 for 3 requests", metadata={"retryable": True})
    if partition.startswith("badkey"):
        raise dg.Failure(
            "kie.ai refused the API key (401)", metadata={"retryable": False}, allow_retries=False
        )
    if partition.startswith("tagged"):
        context.instance.add_run_tags(context.run.run_id, {RETRYABLE_TAG: "true"})
        raise RuntimeError("maintenance window (455)")
    if partition.startswith("crash"):
        raise RuntimeError("an unexpected bug")


STAND_IN_JOB = dg.define_asset_job(JOB_NAME, selection=[stand_in])


@pytest.fixture
def instance(dagster_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """A real, temporary Dagster instance (``dagster_instance`` of ``tests/conftest.py``)."""
    return dagster_instance


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "prompts"
    path.mkdir()
    return path


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def jsonl(*prompts: str) -> str:
    return "".join(json.dumps({"prompt": prompt}) + "\n" for prompt in prompts)


@dataclass
class Tick:
    run_requests: Sequence[dg.RunRequest]
    cursor: str | None
    skip_message: str | None
    added_partitions: list[str]
    log: list[Mapping[str, Any]]

    @property
    def run_keys(self) -> list[str]:
        return [str(request.run_key) for request in self.run_requests]

    @property
    def partitions(self) -> list[str]:
        return [str(request.partition_key) for request in self.run_requests]

    def messages(self, level: str | None = None) -> list[str]:
        return [
            str(record.get("msg", ""))
            for record in self.log
            if level is None or record.get("levelname") == level
        ]


class Ticker:
    """Ticks one sensor like the daemon does: resolve requests, add partitions, keep the cursor."""

    def __init__(
        self, instance: dg.DagsterInstance, sensor: dg.SensorDefinition, defs: dg.Definitions
    ) -> None:
        self.instance = instance
        self.sensor = sensor
        self.defs = defs
        self.cursor: str | None = None
        self.count = 0

    def tick(self, cursor: str | None = None, *, keep_cursor: bool = True) -> Tick:
        self.count += 1
        log_key = ["test_repo", self.sensor.name, f"tick_{self.count}"]
        context = dg.SensorEvaluationContext(
            instance_ref=self.instance.get_ref(),
            instance=self.instance,
            cursor=cursor if cursor is not None else self.cursor,
            log_key=log_key,
            repository_name="test_repo",
            sensor_name=self.sensor.name,
            definitions=self.defs,
        )
        with context:
            data = self.sensor.evaluate_tick(context)
        added: list[str] = []
        for request in data.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
            added += list(request.partition_keys)
        if keep_cursor:
            self.cursor = data.cursor
        return Tick(
            run_requests=data.run_requests or [],
            cursor=data.cursor,
            skip_message=data.skip_message,
            added_partitions=added,
            log=list(get_instigation_log_records(self.instance, log_key)),
        )


def prompt_ticker(instance: dg.DagsterInstance, source: PromptSource, **options: Any) -> Ticker:
    sensor = build_prompt_sensor(
        job=STAND_IN_JOB, partitions_def=PARTITIONS, source=source, **options
    )
    defs = dg.Definitions(assets=[stand_in], jobs=[STAND_IN_JOB], sensors=[sensor])
    return Ticker(instance, sensor, defs)


# --------------------------------------------------------------------------------------------
# Prompt sensor: local folder
# --------------------------------------------------------------------------------------------


def test_new_files_become_partitions_and_runs(instance: dg.DagsterInstance, folder: Path) -> None:
    write(folder, "cats.jsonl", jsonl("a cat in a hat", "a cat on a mat"))
    write(folder, "batch/dogs.txt", "a dog\nanother dog\n")
    write(folder, "poster.json", json.dumps([{"prompt": "a poster"}]))
    source = LocalPromptSource(str(folder))
    scanned = source.scan()
    ticker = prompt_ticker(instance, source)

    tick = ticker.tick()

    assert sorted(tick.partitions) == ["batch/dogs.txt", "cats.jsonl", "poster.json"]
    assert sorted(tick.added_partitions) == ["batch/dogs.txt", "cats.jsonl", "poster.json"]
    assert sorted(tick.run_keys) == sorted(f"{name}@{fp}" for name, fp in scanned.items())
    cats = next(r for r in tick.run_requests if r.partition_key == "cats.jsonl")
    assert cats.tags[PROMPT_FILE_TAG] == "cats.jsonl"
    assert cats.tags[FINGERPRINT_TAG] == scanned["cats.jsonl"]
    assert cats.tags["dagster-kie/requests"] == "2"
    assert cats.tags["dagster/partition"] == "cats.jsonl"
    assert cats.tags["dagster/sensor_name"] == "kie_prompt_sensor"
    assert set(instance.get_dynamic_partitions("kie_prompt_files")) == set(scanned)
    assert any("Requesting a run for new prompt file 'cats.jsonl'" in m for m in tick.messages())

    # What the daemon would launch runs.
    result = ticker.defs.resolve_job_def(JOB_NAME).execute_in_process(
        instance=instance, partition_key="batch/dogs.txt", tags={}
    )
    assert result.success

    second = ticker.tick()
    assert second.run_requests == []
    assert second.added_partitions == []
    assert second.cursor == tick.cursor
    assert second.skip_message and "No new or changed prompt files" in second.skip_message


def test_changed_file_gets_a_new_run_key(instance: dg.DagsterInstance, folder: Path) -> None:
    path = write(folder, "cats.jsonl", jsonl("a cat"))
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))
    first = ticker.tick()
    assert first.partitions == ["cats.jsonl"]

    path.write_text(jsonl("a cat", "a second cat"), encoding="utf-8")
    later = time.time() + 5
    os.utime(path, (later, later))
    changed = ticker.tick()

    assert changed.partitions == ["cats.jsonl"]
    assert changed.run_keys[0] != first.run_keys[0]
    assert changed.run_keys[0].startswith("cats.jsonl@")
    assert changed.added_partitions == []  # the partition already exists
    assert any("changed prompt file 'cats.jsonl'" in m for m in changed.messages())
    assert ticker.tick().run_requests == []


def test_malformed_files_are_reported_once_and_skipped(
    instance: dg.DagsterInstance, folder: Path
) -> None:
    write(folder, "good.jsonl", jsonl("a good prompt"))
    write(folder, "broken.json", '{"prompt": "unterminated')
    write(folder, "latin1.txt", "un café\n".encode("latin-1"))
    write(folder, "empty.jsonl", "")
    write(folder, "invalid.jsonl", '{"prompt": "x", "image_size": "huge"}\n{"prompt": ""}\n')
    write(folder, "partly.jsonl", '{"prompt": "fine"}\n{"prompt": "x", "image_size": "huge"}\n')
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))

    tick = ticker.tick()

    assert sorted(tick.partitions) == ["good.jsonl", "partly.jsonl"]
    warnings = tick.messages("WARNING")
    by_file = {
        name: [m for m in warnings if f"'{name}'" in m]
        for name in ("broken.json", "latin1.txt", "empty.jsonl", "invalid.jsonl", "partly.jsonl")
    }
    assert all(by_file.values()), warnings
    assert "not valid JSON" in by_file["broken.json"][0]
    assert "not UTF-8" in by_file["latin1.txt"][0]
    assert "empty" in by_file["empty.jsonl"][0]
    assert any("no valid prompt records" in m for m in by_file["invalid.jsonl"])
    assert any("image_size" in m for m in by_file["invalid.jsonl"])
    assert "1 invalid record" in by_file["partly.jsonl"][0]
    assert not any("Skipping" in m for m in by_file["partly.jsonl"])
    assert set(instance.get_dynamic_partitions("kie_prompt_files")) == {
        "good.jsonl",
        "partly.jsonl",
    }

    quiet = ticker.tick()
    assert quiet.run_requests == []
    assert quiet.messages("WARNING") == []

    fixed = folder / "broken.json"
    fixed.write_text('{"prompt": "now terminated"}', encoding="utf-8")
    os.utime(fixed, (time.time() + 5, time.time() + 5))
    repaired = ticker.tick()
    assert repaired.partitions == ["broken.json"]
    assert repaired.added_partitions == ["broken.json"]


def test_file_copied_in_with_an_old_mtime_is_new(
    instance: dg.DagsterInstance, folder: Path, tmp_path: Path
) -> None:
    write(folder, "recent.jsonl", jsonl("recent"))
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))
    assert ticker.tick().partitions == ["recent.jsonl"]

    outside = write(tmp_path, "archive.jsonl", jsonl("from 2001"))
    old = time.mktime((2001, 1, 1, 0, 0, 0, 0, 1, 0))
    os.utime(outside, (old, old))
    shutil.copy2(outside, folder / "archive.jsonl")
    assert (folder / "archive.jsonl").stat().st_mtime == old

    tick = ticker.tick()
    assert tick.partitions == ["archive.jsonl"]


def test_deleted_file_drops_from_cursor_but_keeps_its_partition(
    instance: dg.DagsterInstance, folder: Path
) -> None:
    write(folder, "keep.jsonl", jsonl("keep"))
    gone = write(folder, "gone.jsonl", jsonl("gone"))
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))
    first = ticker.tick()
    assert first.cursor is not None and len(decode_prompt_cursor(first.cursor)) == 2

    gone.unlink()
    tick = ticker.tick()

    assert tick.run_requests == []
    assert tick.cursor is not None and len(decode_prompt_cursor(tick.cursor)) == 1
    assert set(instance.get_dynamic_partitions("kie_prompt_files")) == {"keep.jsonl", "gone.jsonl"}


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "kie1:***not base64***",
        "kie1:AAAAAA==",  # 4 bytes: not a whole digest
        json.dumps({"cats.jsonl": "1-2"}),  # a plausible older format
    ],
)
def test_corrupt_cursor_starts_fresh_and_says_so(
    instance: dg.DagsterInstance, folder: Path, cursor: str
) -> None:
    write(folder, "cats.jsonl", jsonl("a cat"))
    write(folder, "dogs.jsonl", jsonl("a dog"))
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))

    tick = ticker.tick(cursor)

    assert sorted(tick.partitions) == ["cats.jsonl", "dogs.jsonl"]
    assert any("cursor could not be read" in m for m in tick.messages("WARNING"))
    assert ticker.tick().run_requests == []


def test_run_requests_per_tick_are_bounded(instance: dg.DagsterInstance, folder: Path) -> None:
    for index in range(5):
        write(folder, f"file{index}.jsonl", jsonl(f"prompt {index}"))
    write(folder, "bad.json", "{")
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)), max_runs_per_tick=2)

    counts = []
    keys: list[str] = []
    for _ in range(4):
        tick = ticker.tick()
        counts.append(len(tick.run_requests))
        keys += tick.run_keys
    assert counts == [2, 2, 1, 0]
    assert len(keys) == len(set(keys)) == 5


def test_partition_key_dagster_refuses_is_skipped(
    instance: dg.DagsterInstance, folder: Path
) -> None:
    write(folder, "wait...what.jsonl", jsonl("dots"))
    write(folder, "fine.jsonl", jsonl("fine"))
    ticker = prompt_ticker(instance, LocalPromptSource(str(folder)))

    tick = ticker.tick()

    assert tick.partitions == ["fine.jsonl"]
    assert any("'wait...what.jsonl'" in m and "partition key" in m for m in tick.messages())


@dataclass(frozen=True)
class FlakyReads:
    """A real local source whose first read of each file fails, like a share that hiccups."""

    inner: LocalPromptSource
    failed: set[str]

    @property
    def description(self) -> str:
        return self.inner.description

    def scan(self) -> dict[str, str]:
        return self.inner.scan()

    def read(self, name: str) -> bytes:
        if name not in self.failed:
            self.failed.add(name)
            raise OSError(5, "Input/output error")
        return self.inner.read(name)


def test_read_error_is_retried_next_tick(instance: dg.DagsterInstance, folder: Path) -> None:
    write(folder, "cats.jsonl", jsonl("a cat"))
    ticker = prompt_ticker(instance, FlakyReads(LocalPromptSource(str(folder)), set()))

    first = ticker.tick()
    assert first.run_requests == []
    assert any("Could not read prompt file 'cats.jsonl'" in m for m in first.messages("WARNING"))

    assert ticker.tick().partitions == ["cats.jsonl"]


def test_record_defaults_apply_when_files_are_checked(
    instance: dg.DagsterInstance, folder: Path
) -> None:
    # shorthand reframe records are valid only with the default model
    write(folder, "frames.jsonl", json.dumps({"image_url": "https://x/p.png"}) + "\n")
    source = LocalPromptSource(str(folder))
    assert prompt_ticker(instance, source, name="plain").tick().run_requests == []
    defaults = RecordDefaults(REFRAME, {"rendering_speed": "TURBO"})
    tick = prompt_ticker(instance, source, name="with_defaults", record_defaults=defaults).tick()
    assert tick.partitions == ["frames.jsonl"]


def test_ten_thousand_files_ten_new(instance: dg.DagsterInstance, folder: Path) -> None:
    for index in range(9990):
        write(folder, f"batch{index % 20}/prompts_{index:05d}.jsonl", jsonl(f"prompt {index}"))
    source = LocalPromptSource(str(folder))
    known = source.scan()
    instance.add_dynamic_partitions("kie_prompt_files", list(known))
    cursor = encode_prompt_cursor(known)
    for index in range(10):
        write(folder, f"new/prompt_{index}.jsonl", jsonl(f"new prompt {index}"))
    ticker = prompt_ticker(instance, source)

    started = time.perf_counter()
    tick = ticker.tick(cursor)
    elapsed = time.perf_counter() - started

    assert sorted(tick.partitions) == [f"new/prompt_{index}.jsonl" for index in range(10)]
    assert tick.cursor is not None
    print(
        f"\nprompt sensor tick over 10,000 files (10 new): {elapsed:.3f} s; "
        f"cursor {len(tick.cursor):,} characters"
    )
    assert len(decode_prompt_cursor(tick.cursor)) == 10_000
    started = time.perf_counter()
    assert ticker.tick().run_requests == []
    print(f"prompt sensor tick over 10,000 files (none new): {time.perf_counter() - started:.3f} s")


# --------------------------------------------------------------------------------------------
# Prompt sensor: S3
# --------------------------------------------------------------------------------------------


def _exercise_s3_source(instance: dg.DagsterInstance, client: Any, bucket: str) -> None:
    source = S3PromptSource(client_factory=lambda: client, bucket=bucket, prefix="prompts/")
    client.put_object(Bucket=bucket, Key="prompts/cats.jsonl", Body=jsonl("a cat").encode())
    client.put_object(Bucket=bucket, Key="prompts/batch/dogs.txt", Body=b"a dog\n")
    client.put_object(Bucket=bucket, Key="prompts/broken.json", Body=b"{")
    client.put_object(Bucket=bucket, Key="elsewhere/ignored.jsonl", Body=jsonl("no").encode())
    ticker = prompt_ticker(instance, source)

    first = ticker.tick()
    assert sorted(first.partitions) == ["batch/dogs.txt", "cats.jsonl"]
    assert any("'broken.json'" in m for m in first.messages("WARNING"))
    assert ticker.tick().run_requests == []

    client.put_object(Bucket=bucket, Key="prompts/cats.jsonl", Body=jsonl("a cat", "2").encode())
    client.copy_object(
        Bucket=bucket,
        Key="prompts/copy/cats.jsonl",
        CopySource={"Bucket": bucket, "Key": "prompts/cats.jsonl"},
    )
    changed = ticker.tick()
    assert sorted(changed.partitions) == ["cats.jsonl", "copy/cats.jsonl"]
    assert set(changed.run_keys).isdisjoint(first.run_keys)
    assert changed.added_partitions == ["copy/cats.jsonl"]

    client.delete_object(Bucket=bucket, Key="prompts/batch/dogs.txt")
    deleted = ticker.tick()
    assert deleted.run_requests == []
    assert deleted.cursor is not None and len(decode_prompt_cursor(deleted.cursor)) == 3


def test_s3_source_with_moto(instance: dg.DagsterInstance) -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="prompts-bucket")
        _exercise_s3_source(instance, client, "prompts-bucket")


def test_s3_source_with_local_s3(
    instance: dg.DagsterInstance, request: pytest.FixtureRequest
) -> None:
    try:
        local_s3 = request.getfixturevalue("local_s3")
    except pytest.FixtureLookupError:
        pytest.skip("the local_s3 (SeaweedFS) fixture is not available")
    client = boto3.client(
        "s3",
        endpoint_url=local_s3.endpoint_url,
        region_name=local_s3.region,
        aws_access_key_id=local_s3.access_key_id,
        aws_secret_access_key=local_s3.secret_access_key,
    )
    bucket = f"sensor-test-{int(time.time() * 1000)}"
    client.create_bucket(Bucket=bucket)
    _exercise_s3_source(instance, client, bucket)


# --------------------------------------------------------------------------------------------
# Retry sensor
# --------------------------------------------------------------------------------------------


def retry_ticker(instance: dg.DagsterInstance, **options: Any) -> Ticker:
    sensor = build_retry_sensor(job=STAND_IN_JOB, **options)
    other = dg.define_asset_job("other_job", selection=[stand_in])
    defs = dg.Definitions(assets=[stand_in], jobs=[STAND_IN_JOB, other], sensors=[sensor])
    return Ticker(instance, sensor, defs)


def run_partition(
    ticker: Ticker, partition: str, tags: dict[str, str] | None = None, job: str = JOB_NAME
) -> str:
    if partition not in ticker.instance.get_dynamic_partitions("kie_prompt_files"):
        ticker.instance.add_dynamic_partitions("kie_prompt_files", [partition])
    result = ticker.defs.resolve_job_def(job).execute_in_process(
        instance=ticker.instance, partition_key=partition, tags=tags or {}, raise_on_error=False
    )
    return result.run_id


def launch(ticker: Ticker, request: dg.RunRequest) -> str:
    """Execute a requested run the way the daemon would (partition and tags from the request)."""
    tags = {k: v for k, v in request.tags.items() if k != "dagster/partition"}
    return run_partition(ticker, str(request.partition_key), tags)


def test_retry_sensor_retries_only_retryable_failures_until_max_attempts(
    instance: dg.DagsterInstance,
) -> None:
    ticker = retry_ticker(instance, max_attempts=3)
    flaky = run_partition(ticker, "flaky.jsonl", {"team": "design"})
    tagged = run_partition(ticker, "tagged.jsonl")
    badkey = run_partition(ticker, "badkey.jsonl")
    crash = run_partition(ticker, "crash.jsonl")
    ok = run_partition(ticker, "ok.jsonl")
    run_partition(ticker, "flaky-other.jsonl", job="other_job")  # another job: ignored
    statuses = {run.run_id: run.status for run in instance.get_runs()}
    assert statuses[ok] == dg.DagsterRunStatus.SUCCESS
    assert statuses[flaky] == statuses[badkey] == dg.DagsterRunStatus.FAILURE

    tick = ticker.tick()

    assert sorted(tick.partitions) == ["flaky.jsonl", "tagged.jsonl"]
    assert sorted(tick.run_keys) == sorted([f"retry:{flaky}", f"retry:{tagged}"])
    retry = next(r for r in tick.run_requests if r.partition_key == "flaky.jsonl")
    assert retry.tags[RETRY_OF_TAG] == flaky
    assert retry.tags[ATTEMPT_TAG] == "2"
    assert retry.tags["team"] == "design"
    assert retry.tags["dagster/partition"] == "flaky.jsonl"
    info = tick.messages()
    assert any(f"Not retrying run {badkey}" in m and "non-retryable" in m for m in info)
    assert any(f"Not retrying run {crash}" in m for m in info)
    assert ticker.tick().run_requests == []  # each failure is seen once

    second_ids = [launch(ticker, request) for request in tick.run_requests]
    second = ticker.tick()
    assert sorted(second.run_keys) == sorted(f"retry:{run_id}" for run_id in second_ids)
    assert {r.tags[ATTEMPT_TAG] for r in second.run_requests} == {"3"}

    for request in second.run_requests:
        launch(ticker, request)
    final = ticker.tick()
    assert final.run_requests == []
    assert sum("giving up" in m for m in final.messages("WARNING")) == 2
    chain = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "flaky.jsonl"}))
    assert len(chain) == 3


def test_retry_sensor_skips_a_failure_a_newer_run_superseded(
    instance: dg.DagsterInstance,
) -> None:
    ticker = retry_ticker(instance)
    failed = run_partition(ticker, "flaky.jsonl")
    newer = run_partition(ticker, "flaky.jsonl")  # e.g. the daily batch ran it again

    tick = ticker.tick()

    assert tick.run_keys == [f"retry:{newer}"]
    assert any(f"Not retrying run {failed}" in m and "newer run" in m for m in tick.messages())


def test_retry_sensor_with_corrupt_cursor_looks_back(instance: dg.DagsterInstance) -> None:
    ticker = retry_ticker(instance)
    failed = run_partition(ticker, "flaky.jsonl")

    tick = ticker.tick("not-a-cursor")

    assert tick.run_keys == [f"retry:{failed}"]
    assert any("cursor" in m for m in tick.messages("WARNING"))


def test_retry_sensor_max_attempts_one_never_retries(instance: dg.DagsterInstance) -> None:
    ticker = retry_ticker(instance, max_attempts=1)
    run_partition(ticker, "flaky.jsonl")

    assert ticker.tick().run_requests == []


def test_direct_invocation_with_build_sensor_context(
    instance: dg.DagsterInstance, folder: Path
) -> None:
    write(folder, "cats.jsonl", jsonl("a cat"))
    source = LocalPromptSource(str(folder))
    sensor = build_prompt_sensor(job=STAND_IN_JOB, partitions_def=PARTITIONS, source=source)
    defs = dg.Definitions(assets=[stand_in], jobs=[STAND_IN_JOB], sensors=[sensor])

    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)

    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [
        f"cats.jsonl@{source.scan()['cats.jsonl']}"
    ]
    assert result.dynamic_partitions_requests == [PARTITIONS.build_add_request(["cats.jsonl"])]
    assert result.cursor == encode_prompt_cursor(source.scan())
