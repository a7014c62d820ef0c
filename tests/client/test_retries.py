"""Retry rules through both clients, on a scripted kie.ai (no network, fake clock)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import ValidationError

from dagster_kie.errors import (
    AuthenticationError,
    EdgeBlockedError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
)

from .helpers import Api, FakeClock, Script, record, reply

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
BODY = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a red fox"}}
OK_CREATE = reply({"taskId": "task_1"})


def test_create_task_sends_validated_body_with_headers(api: Api, script: Script) -> None:
    script.on("POST", CREATE, OK_CREATE)
    assert api.create_task(BODY, callback_url="https://hooks.example/cb") == "task_1"
    (request,) = script.requests
    assert request.headers["authorization"].startswith("Bearer ")
    assert request.headers["user-agent"].startswith("dagster-kie/")
    assert request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent["model"] == "ideogram/v3-text-to-image"
    assert sent["input"]["prompt"] == "a red fox"
    assert sent["input"]["image_size"] == "square_hd"
    assert sent["callBackUrl"] == "https://hooks.example/cb"


def test_invalid_request_sends_nothing(api: Api, script: Script) -> None:
    with pytest.raises(ValidationError):
        api.create_task({"model": "ideogram/v3-text-to-image", "input": {"prompt": ""}})
    assert script.requests == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
def test_create_task_not_retried_once_the_request_may_have_arrived(
    api: Api, script: Script, failure: Exception
) -> None:
    script.on("POST", CREATE, failure, OK_CREATE)
    with pytest.raises(TransportError) as caught:
        api.create_task(BODY)
    assert caught.value.request_sent is True
    assert script.count("POST", CREATE) == 1


@pytest.mark.parametrize(
    "failure",
    [
        reply(code=500, msg="Internal error", status=500),
        reply(code=500, msg="Internal error"),
        httpx.Response(200, text='{"code": 200, "msg": "succ'),
        reply({"nothing": "here"}),
    ],
)
def test_create_task_not_retried_after_500_or_malformed(
    api: Api, script: Script, failure: httpx.Response
) -> None:
    script.on("POST", CREATE, failure, OK_CREATE)
    with pytest.raises((ServerError, MalformedResponseError)) as caught:
        api.create_task(BODY)
    assert caught.value.code in (None, 500)  # the batch engine's "maybe created" rule
    assert script.count("POST", CREATE) == 1


def test_create_task_retried_after_connection_refused(api: Api, script: Script) -> None:
    script.on(
        "POST", CREATE, httpx.ConnectError("refused"), httpx.ConnectError("refused"), OK_CREATE
    )
    assert api.create_task(BODY) == "task_1"
    assert script.count("POST", CREATE) == 3


def test_create_task_gives_up_after_max_retries_of_refused(
    make_api: object, script: Script
) -> None:
    api = make_api(max_retries=2)  # type: ignore[operator]
    script.on("POST", CREATE, httpx.ConnectError("refused"))
    with pytest.raises(TransportError) as caught:
        api.create_task(BODY)
    assert caught.value.request_sent is False
    assert script.count("POST", CREATE) == 3


@pytest.mark.parametrize(
    "rejection",
    [
        reply(code=429, msg="rate limited", status=429),
        reply(code=429, msg="rate limited"),
        reply(code=433, msg="sub-key limit"),
        reply(code=455, msg="maintenance"),
    ],
)
def test_create_task_retried_after_documented_rejections(
    api: Api, script: Script, rejection: httpx.Response
) -> None:
    script.on("POST", CREATE, rejection, OK_CREATE)
    assert api.create_task(BODY) == "task_1"
    assert script.count("POST", CREATE) == 2


def test_create_task_honours_retry_after(api: Api, script: Script, clock: FakeClock) -> None:
    limited = reply(code=429, msg="slow", status=429, headers={"Retry-After": "7"})
    script.on("POST", CREATE, limited, OK_CREATE)
    assert api.create_task(BODY) == "task_1"
    assert max(clock.sleeps) >= 7.0


def test_429_also_slows_the_limiter(api: Api, script: Script, clock: FakeClock) -> None:
    limited = reply(code=429, msg="slow", status=429, headers={"Retry-After": "5"})
    script.on("GET", RECORD, limited, reply(record()))
    api.get_task("task_1")
    window = api.client.rate_limiter.query
    assert window._paused_until == pytest.approx(1000.0 + 5.0, abs=0.5)


def test_auth_error_fails_fast(api: Api, script: Script) -> None:
    script.on("POST", CREATE, reply(code=401, msg="Unauthorized – Authentication failed."))
    with pytest.raises(AuthenticationError):
        api.create_task(BODY)
    assert script.count("POST", CREATE) == 1


def test_edge_block_fails_fast(api: Api, script: Script) -> None:
    script.on("POST", CREATE, httpx.Response(403, text="error code: 1010"))
    with pytest.raises(EdgeBlockedError):
        api.create_task(BODY)
    assert script.count("POST", CREATE) == 1


@pytest.mark.parametrize(
    "failure",
    [
        reply(code=500, msg="Internal error", status=500),
        reply(code=455, msg="maintenance"),
        reply(code=429, msg="slow", status=429),
        httpx.Response(200, text="{broken"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("dropped"),
    ],
)
def test_get_task_retried_on_transient_failures(
    api: Api, script: Script, failure: httpx.Response | Exception
) -> None:
    script.on("GET", RECORD, failure, failure, reply(record(state="generating")))
    found = api.get_task("task_1")
    assert found.state == "generating"
    assert script.count("GET", RECORD) == 3
    assert script.requests[0].url.params["taskId"] == "task_1"


def test_get_task_retries_record_info_null_briefly(api: Api, script: Script) -> None:
    null = reply(code=422, msg="recordInfo is null")
    script.on("GET", RECORD, null, null, reply(record(state="waiting")))
    assert api.get_task("task_1").state == "waiting"


def test_get_task_not_found_after_a_few_tries(api: Api, script: Script) -> None:
    script.on("GET", RECORD, reply(code=422, msg="recordInfo is null"))
    with pytest.raises(NotFoundError) as caught:
        api.get_task("task_404")
    assert caught.value.task_id == "task_404"
    assert 2 <= script.count("GET", RECORD) <= 6


def test_each_retry_is_logged_with_its_reason(
    api: Api, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    script.on(
        "GET",
        RECORD,
        reply(code=500, msg="db down", status=500),
        reply(code=455, msg="maintenance"),
        reply(record()),
    )
    with caplog.at_level(logging.INFO, logger="dagster_kie"):
        api.get_task("task_1")
    lines = [r.getMessage() for r in caplog.records if r.name == "dagster_kie"]
    assert any("db down" in line for line in lines)
    assert any("maintenance" in line for line in lines)


def test_rate_limit_error_after_retries_exhausted(make_api: object, script: Script) -> None:
    api = make_api(max_retries=1)  # type: ignore[operator]
    script.on("GET", RECORD, reply(code=429, msg="slow", status=429))
    with pytest.raises(RateLimitError):
        api.get_task("task_1")
    assert script.count("GET", RECORD) == 2
