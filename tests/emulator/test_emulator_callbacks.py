"""Callbacks: sent once at task end, payload shape, HMAC signature, failures, drop fault."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import time
from collections.abc import Callable

import pytest

from dagster_kie.emulator import EmulatorProcess

from .helpers import Kie, Receiver, result_urls

pytestmark = pytest.mark.integration


def _create_with_callback(kie: Kie, url: str, **input_: object) -> str:
    body = {
        "model": "ideogram/v3-text-to-image",
        "callBackUrl": url,
        "input": {"prompt": "callback me", **input_},
    }
    reply = kie.create(body).json()
    assert reply["code"] == 200
    return str(reply["data"]["taskId"])


def test_success_callback(kie: Kie, receiver: Receiver) -> None:
    began = time.monotonic()
    task_id = _create_with_callback(kie, receiver.url, num_images="2")
    headers, payload = receiver.get()
    assert time.monotonic() - began < 2.0
    assert payload["code"] == 200
    assert payload["msg"] == "Playground task completed successfully."
    data = payload["data"]
    assert data["taskId"] == task_id and data["state"] == "success"
    assert len(json.loads(data["resultJson"])["resultUrls"]) == 2
    assert data["creditsConsumed"] == pytest.approx(3.2)
    assert data["remainedCredits"] == pytest.approx(10000 - 3.2)
    assert json.loads(data["param"])["callBackUrl"] == receiver.url
    assert headers["content-type"] == "application/json"
    assert "x-webhook-signature" not in headers
    # polling shows the same record
    record = kie.record(task_id)["data"]
    assert result_urls(record) == json.loads(data["resultJson"])["resultUrls"]
    with pytest.raises(queue.Empty):
        receiver.get(timeout=0.5)  # sent once
    assert kie.emu.admin.stats()["callbacks_sent"] == 1


def test_failed_task_callback(kie: Kie, receiver: Receiver) -> None:
    kie.emu.admin.set_faults(fail_tasks={"count": 1, "fail_msg": "content policy"})
    _create_with_callback(kie, receiver.url)
    _, payload = receiver.get()
    assert payload["code"] == 501 and payload["msg"] == "Playground task failed."
    assert payload["data"]["state"] == "fail"
    assert payload["data"]["failCode"] == "501" and payload["data"]["failMsg"] == "content policy"
    assert payload["data"]["creditsConsumed"] == 0
    assert payload["data"]["remainedCredits"] == 10000


def test_signed_callback(
    start_emulator: Callable[..., EmulatorProcess], receiver: Receiver
) -> None:
    key = "whsec-test-key"
    emu = start_emulator(webhook_hmac_key=key)
    kie = Kie(emu)
    task_id = _create_with_callback(kie, receiver.url)
    headers, payload = receiver.get()
    timestamp = headers["x-webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = base64.b64encode(
        hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    ).decode()
    assert headers["x-webhook-signature"] == expected
    assert payload["data"]["taskId"] == task_id


def test_unreachable_callback_does_not_break_polling(kie: Kie) -> None:
    task_id = _create_with_callback(kie, "http://127.0.0.1:9/nothing-listens")
    assert kie.wait(task_id)["state"] == "success"
    deadline = time.monotonic() + 3
    while kie.emu.admin.stats()["callbacks_failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kie.emu.admin.stats()["callbacks_failed"] == 1
