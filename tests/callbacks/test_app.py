"""The receiver's decision table, with starlette's TestClient, moto S3 and an in-memory ledger."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning: it prefers httpx2 now
    from starlette.testclient import TestClient

from dagster_kie.callbacks import CallbackInbox, callback_url_for, create_app, sign

from .helpers import KEY, FakeLedger, callback_body

NOW = 1_765_180_600
TASK = "task_ideogram_1765180586443"
RID = "req-1"


class Receiver:
    """A receiver app under test with its inbox, ledger and HTTP client."""

    def __init__(self, client: Any, bucket: str, hmac_key: str | None, **options: Any) -> None:
        self.inbox = CallbackInbox(client, bucket)
        self.ledger = FakeLedger()
        self.app = create_app(
            inbox=self.inbox, ledger=self.ledger, hmac_key=hmac_key, clock=lambda: NOW, **options
        )
        self.http = TestClient(self.app, base_url="http://testserver")

    def post(
        self,
        body: Any,
        *,
        request_id: str | None = RID,
        headers: dict[str, str] | None = None,
        path: str = "/kie/callback",
    ) -> Any:
        url = "http://testserver" + path
        if request_id is not None:
            url = callback_url_for(url, request_id)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post(
            url, content=content, headers={"Content-Type": "application/json", **(headers or {})}
        )

    def stored(self) -> list[str]:
        return sorted(self.inbox.refresh())


def signed(task_id: str, stamp: int = NOW, key: str = KEY) -> dict[str, str]:
    return {"X-Webhook-Timestamp": str(stamp), "X-Webhook-Signature": sign(task_id, stamp, key)}


@pytest.fixture
def receiver(moto_s3: tuple[Any, str]) -> Iterator[Receiver]:
    client, bucket = moto_s3
    r = Receiver(client, bucket, hmac_key=KEY, max_body_bytes=20_000)
    with r.http:
        yield r


@pytest.fixture
def open_receiver(moto_s3: tuple[Any, str]) -> Iterator[Receiver]:
    """A receiver without an HMAC key (unsigned callbacks)."""
    client, bucket = moto_s3
    r = Receiver(client, bucket, hmac_key=None)
    with r.http:
        yield r


def test_healthz(receiver: Receiver) -> None:
    reply = receiver.http.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"ok": True, "signed": True}


def test_good_callback_is_stored(receiver: Receiver) -> None:
    receiver.ledger.add(RID, TASK)
    body = callback_body(TASK)
    reply = receiver.post(body, headers=signed(TASK))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"ok": True}
    assert receiver.inbox.get_payload(TASK) == body
    record = receiver.inbox.get(TASK)
    assert record is not None and record.result_urls == [f"https://files.example/{TASK}/0.png"]
    assert receiver.ledger.recorded == []


def test_repeat_is_idempotent(receiver: Receiver) -> None:
    receiver.ledger.add(RID, TASK)
    for _ in range(3):
        assert receiver.post(callback_body(TASK), headers=signed(TASK)).status_code == 200
    assert receiver.stored() == [TASK]


def test_failed_task_is_stored_too(receiver: Receiver) -> None:
    receiver.ledger.add(RID, TASK)
    assert receiver.post(callback_body(TASK, "fail"), headers=signed(TASK)).status_code == 200
    record = receiver.inbox.get(TASK)
    assert record is not None and record.state == "fail" and record.result_urls == []


def test_task_id_spelled_snake_case(receiver: Receiver) -> None:
    receiver.ledger.add(RID, TASK)
    body = callback_body(TASK)
    body["data"]["task_id"] = body["data"].pop("taskId")
    assert receiver.post(body, headers=signed(TASK)).status_code == 200
    assert receiver.stored() == [TASK]


def test_submitting_entry_adopts_the_task_id(receiver: Receiver) -> None:
    receiver.ledger.add(RID, None, state="submitting")
    reply = receiver.post(callback_body(TASK), headers=signed(TASK))
    assert reply.status_code == 200, reply.text
    assert receiver.ledger.recorded == [(RID, "ideogram/v3-text-to-image", TASK)]
    entry = receiver.ledger.get(RID)
    assert entry is not None and entry.task_id == TASK and entry.state == "submitted"
    assert receiver.stored() == [TASK]
    # The repeat matches the recorded id; nothing is recorded twice.
    assert receiver.post(callback_body(TASK), headers=signed(TASK)).status_code == 200
    assert len(receiver.ledger.recorded) == 1


def _two_ids() -> dict[str, Any]:
    body = callback_body(TASK)
    body["data"]["task_id"] = "task_other"
    return body


def _big_body() -> bytes:
    return json.dumps(callback_body(TASK, padding="x" * 30_000)).encode()


@pytest.mark.parametrize(
    ("setup", "send", "status", "error"),
    [
        pytest.param(
            None,
            lambda r: r.http.post(
                callback_url_for("http://testserver/kie/callback", RID),
                content=_big_body(),
                headers=signed(TASK),
            ),
            413,
            "body too large",
            id="oversized-by-header",
        ),
        pytest.param(
            None,
            lambda r: r.http.post(
                callback_url_for("http://testserver/kie/callback", RID),
                content=iter([_big_body()[i : i + 4096] for i in range(0, 34_000, 4096)]),
                headers=signed(TASK),
            ),
            413,
            "body too large",
            id="oversized-by-stream",
        ),
        pytest.param(
            None,
            lambda r: r.post(b'{"data": {"taskId": ', headers=signed(TASK)),
            400,
            "body is not JSON",
            id="bad-json",
        ),
        pytest.param(
            None,
            lambda r: r.post(b"\xff\xfe", headers=signed(TASK)),
            400,
            "body is not JSON",
            id="not-utf8",
        ),
        pytest.param(None, lambda r: r.post([1, 2]), 400, "body is not a JSON object", id="list"),
        pytest.param(
            None, lambda r: r.post({"code": 200}), 400, "missing data object", id="no-data"
        ),
        pytest.param(
            None,
            lambda r: r.post({"code": 200, "data": {"state": "success"}}),
            400,
            "missing task id",
            id="no-task-id",
        ),
        pytest.param(
            None,
            lambda r: r.post(_two_ids(), headers=signed(TASK)),
            400,
            "conflicting task ids",
            id="two-task-ids",
        ),
        pytest.param(
            None,
            lambda r: r.post(callback_body("../escape"), headers=signed("../escape")),
            400,
            "invalid task id",
            id="path-task-id",
        ),
        pytest.param(
            "known",
            lambda r: r.post(callback_body(TASK), headers=signed(TASK, key="wrong-key")),
            401,
            "bad signature",
            id="bad-signature",
        ),
        pytest.param(
            "known",
            lambda r: r.post(callback_body(TASK)),
            401,
            "missing signature headers",
            id="unsigned",
        ),
        pytest.param(
            "known",
            lambda r: r.post(callback_body(TASK), headers=signed(TASK, stamp=NOW - 3600)),
            401,
            "stale timestamp",
            id="replayed",
        ),
        pytest.param(
            "known",
            lambda r: r.post(callback_body(TASK, state="exploded"), headers=signed(TASK)),
            400,
            "invalid task record",
            id="bad-record",
        ),
        pytest.param(
            None,
            lambda r: r.post(callback_body(TASK), headers=signed(TASK)),
            404,
            "unknown task",
            id="unknown-request-id",
        ),
        pytest.param(
            "known",
            lambda r: r.post(callback_body(TASK), request_id=None, headers=signed(TASK)),
            404,
            "unknown task",
            id="no-request-id",
        ),
        pytest.param(
            "other-task",
            lambda r: r.post(callback_body(TASK), headers=signed(TASK)),
            404,
            "unknown task",
            id="mismatched-task-id",
        ),
        pytest.param(
            "submitted-without-id",
            lambda r: r.post(callback_body(TASK), headers=signed(TASK)),
            404,
            "unknown task",
            id="not-submitting",
        ),
        pytest.param(
            "submitting-other-model",
            lambda r: r.post(callback_body(TASK), headers=signed(TASK)),
            404,
            "unknown task",
            id="submitting-other-model",
        ),
    ],
)
def test_rejections_store_nothing(
    receiver: Receiver, setup: str | None, send: Any, status: int, error: str
) -> None:
    if setup == "known":
        receiver.ledger.add(RID, TASK)
    elif setup == "other-task":
        receiver.ledger.add(RID, "task_other")
    elif setup == "submitted-without-id":
        receiver.ledger.add(RID, None, state="submitted")
    elif setup == "submitting-other-model":
        receiver.ledger.add(RID, None, state="submitting", model="ideogram/v3-reframe")
    reply = send(receiver)
    assert reply.status_code == status, reply.text
    assert reply.json() == {"ok": False, "error": error}
    assert receiver.stored() == []
    assert receiver.ledger.recorded == []


def test_wrong_method_and_path(receiver: Receiver) -> None:
    assert receiver.http.get("/kie/callback").status_code == 405
    assert receiver.post(callback_body(TASK), path="/other").status_code == 404


def test_unsigned_receiver_accepts_unsigned_callbacks(open_receiver: Receiver) -> None:
    open_receiver.ledger.add(RID, TASK)
    assert open_receiver.http.get("/healthz").json()["signed"] is False
    assert open_receiver.post(callback_body(TASK)).status_code == 200
    assert open_receiver.stored() == [TASK]


def test_unsigned_receiver_still_needs_a_known_task(open_receiver: Receiver) -> None:
    assert open_receiver.post(callback_body(TASK)).status_code == 404
    assert open_receiver.stored() == []


def test_custom_path_and_limits(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    r = Receiver(client, bucket, hmac_key=KEY, path="/hooks/kie", max_body_bytes=100, max_age_s=5)
    r.ledger.add(RID, TASK)
    with r.http:
        assert r.post(callback_body(TASK), headers=signed(TASK)).status_code == 404
        reply = r.post(callback_body(TASK), headers=signed(TASK), path="/hooks/kie")
        assert reply.status_code == 413
    r2 = Receiver(client, bucket, hmac_key=KEY, path="/hooks/kie", max_age_s=5)
    r2.ledger.add(RID, TASK)
    with r2.http:
        reply = r2.post(callback_body(TASK), headers=signed(TASK, NOW - 6), path="/hooks/kie")
        assert reply.status_code == 401
        reply = r2.post(callback_body(TASK), headers=signed(TASK, NOW - 4), path="/hooks/kie")
        assert reply.status_code == 200


def test_storage_failure_answers_503(receiver: Receiver) -> None:
    receiver.ledger.add(RID, TASK)
    receiver.inbox.bucket = "no-such-bucket"
    reply = receiver.post(callback_body(TASK), headers=signed(TASK))
    assert reply.status_code == 503
    assert reply.json() == {"ok": False, "error": "storage error"}


def test_record_race_is_tolerated(receiver: Receiver) -> None:
    """If the run records the same task id first, the receiver's own record may fail: fine."""
    receiver.ledger.add(RID, None, state="submitting")
    ledger = receiver.ledger

    def racing(request_id: str, model: str, task_id: str) -> None:
        FakeLedger.record_submitted(ledger, request_id, model, task_id)
        raise RuntimeError("precondition failed")

    ledger.record_submitted = racing  # type: ignore[method-assign]
    assert receiver.post(callback_body(TASK), headers=signed(TASK)).status_code == 200
    assert receiver.stored() == [TASK]


def test_logs_decisions_without_secrets(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.ledger.add(RID, TASK)
    caplog.set_level(logging.INFO, logger="dagster_kie.callbacks")
    headers = signed(TASK)
    receiver.post(callback_body(TASK), headers=signed(TASK, key="forged"))
    receiver.post(callback_body(TASK), headers=headers)
    text = caplog.text
    assert "callback rejected (bad signature, 401)" in text
    assert f"callback stored: task={TASK} request={RID}" in text
    assert KEY not in text
    assert headers["X-Webhook-Signature"] not in text
    assert KEY not in repr(receiver.app.state.handler)


def test_with_the_real_task_ledger(moto_s3: tuple[Any, str]) -> None:
    """The receiver against ``dagster_kie.ledger.TaskLedger`` (on moto), not the fake."""
    from dagster_kie.ledger import TaskLedger

    client, bucket = moto_s3
    ledger = TaskLedger(client, bucket, prefix="kie")
    inbox = CallbackInbox(client, bucket)
    app = create_app(inbox=inbox, ledger=ledger, hmac_key=KEY, clock=lambda: NOW)
    url = callback_url_for("http://testserver/kie/callback", RID)
    with TestClient(app) as http:
        ledger.record_intent(RID, "ideogram/v3-text-to-image")
        reply = http.post(url, content=json.dumps(callback_body(TASK)), headers=signed(TASK))
        assert reply.status_code == 200, reply.text
        entry = ledger.get(RID)
        assert entry is not None and (entry.state, entry.task_id) == ("submitted", TASK)
        # A second task for the same request is not this request's task.
        other = "task_ideogram_other"
        reply = http.post(url, content=json.dumps(callback_body(other)), headers=signed(other))
        assert reply.status_code == 404
        ledger.record_succeeded(RID, ["https://files.example/x.png"])
        reply = http.post(url, content=json.dumps(callback_body(TASK)), headers=signed(TASK))
        assert reply.status_code == 200  # a repeat after the run finished
    assert inbox.refresh() == {TASK}
