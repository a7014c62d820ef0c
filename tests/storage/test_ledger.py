"""TaskLedger against a real S3 server (SeaweedFS), plus the same lifecycle on moto."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dagster_kie.ledger import LedgerConflictError, LedgerEntry, LedgerError, TaskLedger
from dagster_kie.local_s3 import LocalS3Server
from dagster_kie.storage import UnsafeKeyError
from tests.storage.s3_calls import count_calls

MODEL = "ideogram/v3-text-to-image"


class Clock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(params=["seaweedfs", "moto"])
def any_s3(request: pytest.FixtureRequest) -> tuple[Any, str]:
    """``(client, bucket)`` on SeaweedFS and on moto."""
    fixture = "s3_bucket" if request.param == "seaweedfs" else "moto_s3"
    value: tuple[Any, str] = request.getfixturevalue(fixture)
    return value


def test_lifecycle(any_s3: tuple[Any, str]) -> None:
    client, bucket = any_s3
    ledger = TaskLedger(client, bucket, clock=Clock())
    assert ledger.get("req-1") is None

    intent = ledger.record_intent("req-1", MODEL)
    assert (intent.state, intent.task_id, intent.attempt) == ("submitting", None, 1)
    assert intent.created_at == intent.updated_at == "2025-01-01T00:00:01+00:00"
    assert ledger.get("req-1") == intent

    submitted = ledger.record_submitted("req-1", MODEL, "task-abc")
    assert (submitted.state, submitted.task_id, submitted.attempt) == ("submitted", "task-abc", 1)
    assert submitted.created_at == intent.created_at
    assert submitted.updated_at > intent.updated_at
    assert ledger.get("req-1") == submitted

    done = ledger.record_succeeded("req-1", ["https://files/a.png", "https://files/b.png"], 7.0)
    assert done.state == "succeeded" and done.task_id == "task-abc"
    assert done.result_urls == ["https://files/a.png", "https://files/b.png"]
    assert done.credits == 7.0 and done.model == MODEL
    assert ledger.get("req-1") == done

    # a late duplicate of the task id (a callback racing the run) does not regress the state
    assert ledger.record_submitted("req-1", MODEL, "task-abc") == done
    # a recorded task is never replaced by a new intent: that would pay twice
    with pytest.raises(LedgerConflictError, match="task-abc"):
        ledger.record_intent("req-1", MODEL)
    assert ledger.get("req-1") == done

    raw = client.get_object(Bucket=bucket, Key="kie/_ledger/req-1.json")
    assert raw["ContentType"] == "application/json"
    stored = json.loads(raw["Body"].read())
    assert stored == {
        "request_id": "req-1",
        "model": MODEL,
        "state": "succeeded",
        "task_id": "task-abc",
        "attempt": 1,
        "created_at": intent.created_at,
        "updated_at": done.updated_at,
        "error": None,
        "retryable": None,
        "result_urls": ["https://files/a.png", "https://files/b.png"],
        "credits": 7.0,
    }


def test_failure_retry_and_forget(any_s3: tuple[Any, str]) -> None:
    client, bucket = any_s3
    ledger = TaskLedger(client, bucket, prefix="team/kie")
    ledger.record_intent("req-2", MODEL)
    ledger.record_submitted("req-2", MODEL, "task-1")
    failed = ledger.record_failed("req-2", "content policy", retryable=False)
    assert (failed.state, failed.error, failed.retryable, failed.task_id) == (
        "failed",
        "content policy",
        False,
        "task-1",
    )
    # a new attempt after a failure counts up and clears the old task
    again = ledger.record_intent("req-2", MODEL)
    assert (again.state, again.attempt, again.task_id, again.error) == ("submitting", 2, None, None)
    # an intent whose createTask never returned: resubmitting counts another attempt
    assert ledger.record_intent("req-2", MODEL).attempt == 3

    ledger.forget("req-2")
    assert ledger.get("req-2") is None
    ledger.forget("req-2")  # forgetting twice is fine
    assert ledger.record_intent("req-2", MODEL).attempt == 1
    assert ledger.list_ids() == ["req-2"]


def test_updates_without_an_entry_create_one(any_s3: tuple[Any, str]) -> None:
    client, bucket = any_s3
    ledger = TaskLedger(client, bucket)
    failed = ledger.record_failed("orphan", "boom", retryable=True)
    assert (failed.state, failed.model, failed.attempt, failed.retryable) == ("failed", "", 0, True)
    adopted = ledger.record_submitted("adopted", MODEL, "task-x")
    assert (adopted.state, adopted.attempt) == ("submitted", 1)


def test_two_ledgers_with_separate_clients_see_each_other(local_s3: LocalS3Server) -> None:
    bucket = "ledger-shared"
    local_s3.create_bucket(bucket)
    first = TaskLedger(local_s3.client(), bucket)
    second = TaskLedger(local_s3.client(), bucket)
    assert first.client is not second.client

    first.record_intent("shared-1", MODEL)
    seen = second.get("shared-1")
    assert seen is not None and seen.state == "submitting"
    second.record_submitted("shared-1", MODEL, "task-77")
    seen = first.get("shared-1")
    assert seen is not None and (seen.state, seen.task_id) == ("submitted", "task-77")
    first.record_succeeded("shared-1", ["u"], None)
    assert second.get_many(["shared-1"])["shared-1"].state == "succeeded"


def test_another_process_sees_the_writes(local_s3: LocalS3Server) -> None:
    """A child process configured only by ``local_s3.env()`` reads and writes the same ledger."""
    bucket = "ledger-processes"
    local_s3.create_bucket(bucket)
    ledger = TaskLedger(local_s3.client(), bucket)
    ledger.record_intent("proc-1", MODEL)
    script = textwrap.dedent(
        f"""
        import boto3
        from dagster_kie.ledger import TaskLedger
        ledger = TaskLedger(boto3.client("s3"), {bucket!r})
        entry = ledger.get("proc-1")
        assert entry is not None and entry.state == "submitting", entry
        ledger.record_submitted("proc-1", entry.model, "task-from-child")
        """
    )
    env = {"PATH": "/usr/bin:/bin", **local_s3.env()}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    entry = ledger.get("proc-1")
    assert entry is not None and entry.task_id == "task-from-child"


def test_get_many_and_list_all_on_200_ids(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    ledger = TaskLedger(client, bucket)
    ids = [f"req-{n:04d}" for n in range(200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda rid: ledger.record_submitted(rid, MODEL, f"task-{rid}"), ids))

    wanted = [*ids, "missing-1", "missing-2", ids[0]]
    entries = ledger.get_many(wanted)
    assert sorted(entries) == ids
    assert all(entries[rid].task_id == f"task-{rid}" for rid in ids)
    assert ledger.get_many([]) == {}

    assert ledger.list_ids() == ids
    everything = ledger.list_all()
    assert everything == entries


def test_list_ids_pages_past_1000(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    ledger = TaskLedger(client, bucket)
    body = LedgerEntry(request_id="x", model=MODEL, state="submitted").to_json()
    for n in range(1005):
        client.put_object(Bucket=bucket, Key=f"kie/_ledger/r{n:05d}.json", Body=body)
    client.put_object(Bucket=bucket, Key="kie/_ledger/nested/r.json", Body=body)
    client.put_object(Bucket=bucket, Key="kie/_ledger/notes.txt", Body=b"x")
    ids = ledger.list_ids()
    assert len(ids) == 1005 and ids[0] == "r00000" and ids[-1] == "r01004"


def test_unsafe_ids_are_refused_before_any_request(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    ledger = TaskLedger(client, bucket)
    for call in (
        lambda: ledger.get("../escape"),
        lambda: ledger.get_many(["ok", "a/b"]),
        lambda: ledger.record_intent("", MODEL),
        lambda: ledger.forget(".."),
    ):
        with pytest.raises(UnsafeKeyError, match="request_id"):
            call()
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


def test_malformed_entries_raise(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    ledger = TaskLedger(client, bucket)
    client.put_object(Bucket=bucket, Key="kie/_ledger/bad.json", Body=b"{not json")
    client.put_object(Bucket=bucket, Key="kie/_ledger/list.json", Body=b"[]")
    client.put_object(
        Bucket=bucket, Key="kie/_ledger/state.json", Body=b'{"request_id": "state", "state": "x"}'
    )
    for rid in ("bad", "list", "state"):
        with pytest.raises(LedgerError):
            ledger.get(rid)


def test_entry_json_tolerates_extra_and_missing_optional_fields() -> None:
    entry = LedgerEntry.from_dict(
        {"request_id": "r", "state": "submitting", "future_field": 1, "result_urls": None}
    )
    assert entry == LedgerEntry(request_id="r", model="", state="submitting")
    assert LedgerEntry.from_dict(json.loads(entry.to_json())) == entry


def test_writes_on_a_held_entry_make_no_get(local_s3: LocalS3Server) -> None:
    client = local_s3.client()
    bucket = "held-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=bucket)
    ledger = TaskLedger(client, bucket, clock=Clock())
    calls = count_calls(client)

    intent = ledger.record_intent("held-1", MODEL, previous=None)
    submitted = ledger.record_submitted("held-1", MODEL, "task-1", previous=intent)
    done = ledger.record_succeeded("held-1", ["u"], 2.0, previous=submitted)
    assert calls == Counter({"PutObject": 3})
    assert ledger.get("held-1") == done
    assert (done.state, done.task_id, done.attempt, done.created_at) == (
        "succeeded",
        "task-1",
        1,
        intent.created_at,
    )

    calls.clear()
    failed = ledger.record_failed("held-1", "boom", retryable=True, previous=done)
    again = ledger.record_intent("held-1", MODEL, previous=failed)
    assert calls == Counter({"PutObject": 2})
    assert (again.state, again.task_id, again.attempt) == ("submitting", None, 2)

    # a held entry still guards a recorded task
    calls.clear()
    with pytest.raises(LedgerConflictError, match="task-1"):
        ledger.record_intent("held-1", MODEL, previous=done)
    assert ledger.record_submitted("held-1", MODEL, "task-1", previous=done) == done
    with pytest.raises(ValueError, match="held-1"):
        ledger.record_submitted("other", MODEL, "task-2", previous=done)
    with pytest.raises(UnsafeKeyError):
        ledger.record_intent("../x", MODEL, previous=None)
    assert calls == Counter()


def test_held_writes_equal_read_first_writes(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    held = TaskLedger(client, bucket, clock=Clock())
    read = TaskLedger(client, bucket, clock=Clock())
    intent = held.record_intent("a", MODEL, previous=None)
    submitted = held.record_submitted("a", MODEL, "t", previous=intent)
    failed = held.record_failed("a", "x", retryable=False, previous=submitted)
    read.record_intent("b", MODEL)
    read.record_submitted("b", MODEL, "t")
    assert read.record_failed("b", "x", retryable=False) == replace(failed, request_id="b")


def test_a_callback_recording_the_run_s_task_first_loses_nothing(s3_bucket: Any) -> None:
    client, bucket = s3_bucket
    run, receiver = TaskLedger(client, bucket), TaskLedger(client, bucket)
    intent = run.record_intent("race-1", MODEL, previous=None)
    # the task's callback reaches the receiver before the run records the task id
    receiver.record_submitted("race-1", MODEL, "task-9")
    run.record_submitted("race-1", MODEL, "task-9", previous=intent)
    entry = receiver.get("race-1")
    assert entry is not None and (entry.state, entry.task_id) == ("submitted", "task-9")


def test_get_many_lists_then_reads_only_existing_entries(s3_bucket: Any) -> None:
    client, bucket = s3_bucket
    ledger = TaskLedger(client, bucket, max_workers=4)
    for rid in ("e1", "e2"):
        ledger.record_submitted(rid, MODEL, f"task-{rid}")
    calls = count_calls(client)
    wanted = [f"missing-{n}" for n in range(50)] + ["e1", "e2"]
    assert sorted(ledger.get_many(wanted)) == ["e1", "e2"]
    assert calls == Counter({"ListObjectsV2": 1, "GetObject": 2})
    calls.clear()
    assert ledger.get_many(["e1", "missing"]).keys() == {"e1"}  # few ids: GETs only
    assert calls == Counter({"GetObject": 2})


def test_get_many_reads_one_by_one_when_the_ledger_is_long(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    ledger = TaskLedger(client, bucket, max_workers=1)
    body = LedgerEntry(request_id="x", model=MODEL, state="submitted").to_json()
    for n in range(2001):  # three pages: more than the two rounds of GETs two ids take
        client.put_object(Bucket=bucket, Key=f"kie/_ledger/old-{n:05d}.json", Body=body)
    ledger.record_submitted("mine", MODEL, "task-m")
    calls = count_calls(client)
    assert ledger.get_many(["mine", "not-there"]).keys() == {"mine"}
    assert calls == Counter({"ListObjectsV2": 2, "GetObject": 2})
