"""End to end: the kie.ai emulator process calls the receiver process, which stores in SeaweedFS.

Real processes on loopback: the emulator (signing callbacks with an HMAC key), the receiver
(``python -m dagster_kie.callbacks``) and SeaweedFS (the ``local_s3`` session fixture).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagster_kie.callbacks import CallbackInbox, CallbackReceiverProcess, callback_url_for
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.ledger import TaskLedger

pytestmark = pytest.mark.integration

HMAC_KEY = "integration-webhook-key-5b1f0c"
MODEL = "ideogram/v3-text-to-image"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """The kie.ai emulator, signing its callbacks with ``HMAC_KEY``."""
    with EmulatorProcess(
        task_duration=0.3, webhook_hmac_key=HMAC_KEY, create_limit=10_000, query_limit=10_000
    ) as emu:
        yield emu


@pytest.fixture
def kie(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """A raw httpx client of the emulator (reset before each test)."""
    emulator.admin.reset()
    with httpx.Client(
        base_url=emulator.base_url,
        timeout=30,
        trust_env=False,
        headers={
            "Authorization": f"Bearer {emulator.api_key}",
            "User-Agent": "dagster-kie-callback-tests/1.0",
        },
    ) as client:
        yield client


@pytest.fixture
def s3(s3_bucket: tuple[Any, str]) -> tuple[Any, str]:
    """``(client, bucket)`` on SeaweedFS, written to once (its first write is slow)."""
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="warm-up", Body=b"")
    return client, bucket


@pytest.fixture
def start_receiver(
    local_s3: Any, s3: tuple[Any, str], tmp_path: Path
) -> Iterator[Callable[..., CallbackReceiverProcess]]:
    """Start receiver processes on the test bucket (stopped by PID at the end)."""
    started: list[CallbackReceiverProcess] = []
    env = local_s3.env()

    def start(hmac_key: str | None = HMAC_KEY) -> CallbackReceiverProcess:
        receiver = CallbackReceiverProcess(
            bucket=s3[1], hmac_key=hmac_key, env=env, log_path=tmp_path / "receiver.log"
        )
        receiver.start()
        started.append(receiver)
        return receiver

    try:
        yield start
    finally:
        for receiver in started:
            receiver.stop()


def create_task(kie: httpx.Client, callback_url: str, num_images: str = "2") -> str:
    body = {
        "model": MODEL,
        "callBackUrl": callback_url,
        "input": {"prompt": "a lighthouse at dusk", "num_images": num_images},
    }
    reply = kie.post("/api/v1/jobs/createTask", json=body).json()
    assert reply["code"] == 200, reply
    return str(reply["data"]["taskId"])


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout} s")


def emulator_urls(kie: httpx.Client, task_id: str) -> list[str]:
    data = kie.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()["data"]
    return list(json.loads(data["resultJson"])["resultUrls"])


def new_request_id() -> str:
    return uuid.uuid4().hex


def mark_submitting(ledger: TaskLedger, request_id: str) -> None:
    """Put ``request_id`` in state ``submitting`` (what a run does just before createTask)."""
    entry = ledger.record_intent(request_id, MODEL)
    assert entry.state == "submitting" and entry.task_id is None


def test_signed_callback_lands_in_the_inbox(
    kie: httpx.Client,
    s3: tuple[Any, str],
    start_receiver: Callable[..., CallbackReceiverProcess],
    emulator: EmulatorProcess,
) -> None:
    client, bucket = s3
    receiver = start_receiver()
    ledger, inbox = TaskLedger(client, bucket, prefix="kie"), CallbackInbox(client, bucket)
    rid = new_request_id()
    mark_submitting(ledger, rid)
    task_id = create_task(kie, callback_url_for(receiver.url, rid))
    ledger.record_submitted(rid, MODEL, task_id)

    record = wait_until(lambda: inbox.get(task_id))
    assert record.task_id == task_id and record.succeeded
    assert len(record.result_urls) == 2
    assert record.result_urls == emulator_urls(kie, task_id)
    payload = inbox.get_payload(task_id)
    assert payload is not None and payload["code"] == 200 and "remainedCredits" in payload["data"]
    assert client.head_object(Bucket=bucket, Key=f"kie/_callbacks/{task_id}.json")
    assert emulator.admin.stats()["callbacks_failed"] == 0
    log = receiver.tail()
    assert f"callback stored: task={task_id} request={rid}" in log
    assert HMAC_KEY not in log


def test_receiver_records_the_task_id_of_a_crashed_submit(
    kie: httpx.Client, s3: tuple[Any, str], start_receiver: Callable[..., CallbackReceiverProcess]
) -> None:
    """The run wrote ``submitting``, called createTask, and died before recording the id."""
    client, bucket = s3
    receiver = start_receiver()
    ledger, inbox = TaskLedger(client, bucket, prefix="kie"), CallbackInbox(client, bucket)
    rid = new_request_id()
    mark_submitting(ledger, rid)
    task_id = create_task(kie, callback_url_for(receiver.url, rid), num_images="1")

    record = wait_until(lambda: inbox.get(task_id))
    assert record.succeeded and len(record.result_urls) == 1
    entry = ledger.get(rid)
    assert entry is not None and entry.task_id == task_id and entry.state == "submitted"
    assert "(task id recorded)" in receiver.tail()


def test_wrong_hmac_key_is_rejected_and_nothing_stored(
    kie: httpx.Client,
    s3: tuple[Any, str],
    start_receiver: Callable[..., CallbackReceiverProcess],
    emulator: EmulatorProcess,
) -> None:
    client, bucket = s3
    receiver = start_receiver(hmac_key="not-the-account-key")
    ledger, inbox = TaskLedger(client, bucket, prefix="kie"), CallbackInbox(client, bucket)
    rid = new_request_id()
    mark_submitting(ledger, rid)
    task_id = create_task(kie, callback_url_for(receiver.url, rid))
    ledger.record_submitted(rid, MODEL, task_id)

    wait_until(lambda: emulator.admin.stats()["callbacks_failed"] >= 1)
    assert inbox.get(task_id) is None
    assert inbox.refresh() == frozenset()
    log = receiver.tail()
    assert "callback rejected (bad signature, 401)" in log
    assert "not-the-account-key" not in log and HMAC_KEY not in log


def test_callback_of_an_unknown_request_is_not_stored(
    kie: httpx.Client,
    s3: tuple[Any, str],
    start_receiver: Callable[..., CallbackReceiverProcess],
    emulator: EmulatorProcess,
) -> None:
    client, bucket = s3
    receiver = start_receiver()
    inbox = CallbackInbox(client, bucket)
    task_id = create_task(kie, callback_url_for(receiver.url, new_request_id()))
    wait_until(lambda: emulator.admin.stats()["callbacks_failed"] >= 1)
    assert inbox.get(task_id) is None
    assert "callback rejected (unknown task, 404)" in receiver.tail()


def test_many_waiting_tasks_share_listings(
    kie: httpx.Client, s3: tuple[Any, str], start_receiver: Callable[..., CallbackReceiverProcess]
) -> None:
    client, bucket = s3
    receiver = start_receiver()
    ledger = TaskLedger(client, bucket, prefix="kie")
    tasks: list[str] = []
    for _ in range(25):
        rid = new_request_id()
        mark_submitting(ledger, rid)
        task_id = create_task(kie, callback_url_for(receiver.url, rid), num_images="1")
        ledger.record_submitted(rid, MODEL, task_id)
        tasks.append(task_id)
    reader = CallbackInbox(client, bucket, min_refresh_interval_s=0.2)

    async def wait_one(task_id: str) -> Any:
        while True:
            record = await reader.aget(task_id)
            if record is not None:
                return record
            await asyncio.sleep(0.05)

    async def wait_all() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(*(wait_one(t) for t in tasks)), 30)

    began = time.monotonic()
    records = asyncio.run(wait_all())
    elapsed = time.monotonic() - began
    assert [r.task_id for r in records] == tasks
    assert all(r.succeeded and r.result_urls for r in records)
    # About one LIST per interval for all 25 waiters (a generous bound; no timing asserts).
    assert reader.list_calls <= elapsed / 0.2 + 2


def test_the_key_is_not_on_the_command_line(
    start_receiver: Callable[..., CallbackReceiverProcess],
) -> None:
    receiver = start_receiver()
    cmdline = Path(f"/proc/{receiver.pid}/cmdline").read_bytes().decode()
    assert HMAC_KEY not in cmdline and "--hmac-key-env" in cmdline
    assert HMAC_KEY not in repr(receiver)
    reply = httpx.get(receiver.base_url + "/healthz", trust_env=False)
    assert reply.json() == {"ok": True, "signed": True}
