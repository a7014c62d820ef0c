"""The sans-I/O core: envelope parsing, error mapping, Retry-After, retry rules."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from dagster_kie._protocol import (
    USER_AGENT,
    RetrySettings,
    Sleep,
    Step,
    parse_envelope,
    parse_retry_after,
    retrying,
    should_retry,
    transport_error,
)
from dagster_kie.errors import (
    AuthenticationError,
    EdgeBlockedError,
    FeatureDisabledError,
    GenerationFailedError,
    InsufficientCreditsError,
    InvalidRequestError,
    KieError,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    UsageLimitError,
)


def response(
    status: int = 200,
    *,
    json: Any = None,
    text: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    return httpx.Response(status, json=json, headers=headers)


def test_user_agent_names_package_and_httpx() -> None:
    assert USER_AGENT.startswith("dagster-kie/")
    assert f"httpx/{httpx.__version__}" in USER_AGENT


@pytest.mark.parametrize("key", ["msg", "message"])
def test_success_returns_data_with_msg_or_message(key: str) -> None:
    reply = response(json={"code": 200, key: "success", "data": {"taskId": "t1"}})
    assert parse_envelope(reply) == {"taskId": "t1"}


@pytest.mark.parametrize("key", ["msg", "message"])
def test_error_message_read_from_msg_or_message(key: str) -> None:
    reply = response(json={"code": 422, key: "prompt is required", "data": None})
    with pytest.raises(InvalidRequestError, match="prompt is required"):
        parse_envelope(reply)


def test_code_as_numeric_string_is_accepted() -> None:
    assert parse_envelope(response(json={"code": "200", "msg": "ok", "data": 5})) == 5


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (404, NotFoundError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (433, UsageLimitError),
        (455, MaintenanceError),
        (500, ServerError),
        (501, GenerationFailedError),
        (505, FeatureDisabledError),
        (418, InvalidRequestError),
        (599, ServerError),
    ],
)
def test_each_code_in_http_200_maps_to_its_error(code: int, cls: type[KieError]) -> None:
    reply = response(json={"code": code, "msg": f"code {code}", "data": None})
    with pytest.raises(cls) as caught:
        parse_envelope(reply, task_id="t9")
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.status_code == 200
    assert caught.value.task_id == "t9"


def test_401_in_http_200_is_authentication_error_not_retryable() -> None:
    reply = response(json={"code": 401, "msg": "Unauthorized – Authentication failed."})
    with pytest.raises(AuthenticationError) as caught:
        parse_envelope(reply)
    assert not caught.value.retryable


def test_record_info_null_is_not_found() -> None:
    reply = response(json={"code": 422, "msg": "recordInfo is null", "data": None})
    with pytest.raises(NotFoundError):
        parse_envelope(reply, task_id="t1")


def test_real_http_429_with_envelope_and_retry_after() -> None:
    reply = response(429, json={"code": 429, "msg": "slow down"}, headers={"Retry-After": "4"})
    with pytest.raises(RateLimitError) as caught:
        parse_envelope(reply)
    assert caught.value.retry_after == 4.0
    assert caught.value.status_code == 429
    assert caught.value.retryable


def test_real_http_429_with_plain_body() -> None:
    reply = response(429, text="Too Many Requests", headers={"Retry-After": "2"})
    with pytest.raises(RateLimitError) as caught:
        parse_envelope(reply)
    assert caught.value.retry_after == 2.0


def test_edge_403_1010_is_edge_blocked() -> None:
    with pytest.raises(EdgeBlockedError, match="User-Agent"):
        parse_envelope(response(403, text="error code: 1010"))


@pytest.mark.parametrize("body", ['{"code": 200, "msg": "succ', "<html>oops</html>", ""])
def test_non_json_in_http_200_is_malformed(body: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_envelope(response(200, text=body))
    assert caught.value.retryable


def test_json_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        parse_envelope(response(json=[1, 2, 3]))


def test_missing_code_in_http_200_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        parse_envelope(response(json={"msg": "success", "data": {}}))


def test_html_502_is_server_error() -> None:
    with pytest.raises(ServerError) as caught:
        parse_envelope(response(502, text="<html>Bad gateway</html>"))
    assert caught.value.status_code == 502


def test_success_code_in_http_error_status_follows_the_status() -> None:
    with pytest.raises(ServerError):
        parse_envelope(response(503, json={"code": 200, "msg": "success", "data": {}}))


def test_messages_pass_through_redact() -> None:
    reply = response(json={"code": 401, "msg": "bad key sk-123"})
    with pytest.raises(AuthenticationError) as caught:
        parse_envelope(reply, redact=lambda text: text.replace("sk-123", "***"))
    assert "sk-123" not in str(caught.value)


# --- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("1.5", 1.5),
        (" 10 ", 10.0),
        ("-4", 0.0),
        ("100000", 300.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    header = format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)


# --- network errors and retry rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("connect timeout"), False),
        (httpx.PoolTimeout("pool"), False),
        (httpx.ReadTimeout("read timeout"), True),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
        (httpx.WriteError("broken pipe"), True),
    ],
)
def test_transport_errors_know_whether_the_request_was_sent(exc: Exception, sent: bool) -> None:
    error = transport_error(exc)
    assert isinstance(error, TransportError)
    assert error.request_sent is sent
    assert type(exc).__name__ in str(error)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (TransportError("x", request_sent=False), False, True),
        (TransportError("x", request_sent=True), False, False),
        (TransportError("x", request_sent=True), True, True),
        (RateLimitError("x", code=429), False, True),
        (UsageLimitError("x", code=433), False, True),
        (MaintenanceError("x", code=455), False, True),
        (ServerError("x", code=500), False, False),
        (ServerError("x", code=500), True, True),
        (MalformedResponseError("x"), False, False),
        (MalformedResponseError("x"), True, True),
        (AuthenticationError("x", code=401), True, False),
        (InvalidRequestError("x", code=422), True, False),
        (InsufficientCreditsError("x", code=402), True, False),
        (ValueError("x"), True, False),
    ],
)
def test_retry_rules(error: BaseException, idempotent: bool, expected: bool) -> None:
    assert should_retry(error, idempotent=idempotent) is expected


def drive(step: Step[Any]) -> tuple[Any, list[float]]:
    """Run a step whose only effects are sleeps; return its result and the sleeps."""
    sleeps: list[float] = []
    value: Any = None
    try:
        while True:
            effect = step.send(value)
            assert isinstance(effect, Sleep)
            sleeps.append(effect.seconds)
            value = None
    except StopIteration as stop:
        return stop.value, sleeps


def failing(errors: list[BaseException], result: str = "ok") -> Any:
    calls = {"n": 0}

    def attempt() -> Step[str]:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result
        yield  # a generator

    return attempt, calls


def test_retrying_retries_then_returns(caplog: pytest.LogCaptureFixture) -> None:
    attempt, calls = failing([ServerError("boom", code=500), ServerError("boom", code=500)])
    settings = RetrySettings(max_retries=5, initial_s=1.0, max_s=8.0, jitter_s=0.0)
    with caplog.at_level(logging.INFO, logger="dagster_kie"):
        result, sleeps = drive(retrying(attempt, settings=settings, idempotent=True, what="poll"))
    assert result == "ok"
    assert calls["n"] == 3
    assert sleeps == [1.0, 2.0]
    lines = [r.getMessage() for r in caplog.records if r.name == "dagster_kie"]
    assert len(lines) == 2
    assert all("ServerError" in line and "boom" in line for line in lines)


def test_retrying_stops_after_max_retries() -> None:
    errors: list[BaseException] = [ServerError("boom", code=500) for _ in range(10)]
    attempt, calls = failing(errors)
    settings = RetrySettings(max_retries=3, initial_s=0.1, jitter_s=0.0)
    with pytest.raises(ServerError):
        drive(retrying(attempt, settings=settings, idempotent=True, what="poll"))
    assert calls["n"] == 4


def test_retrying_does_not_retry_permanent_errors() -> None:
    attempt, calls = failing([AuthenticationError("no", code=401)])
    with pytest.raises(AuthenticationError):
        drive(retrying(attempt, settings=RetrySettings(), idempotent=True, what="poll"))
    assert calls["n"] == 1


def test_retrying_honours_retry_after_over_shorter_backoff() -> None:
    attempt, _ = failing([RateLimitError("slow", code=429, retry_after=7.0)])
    settings = RetrySettings(initial_s=0.5, jitter_s=0.0)
    _, sleeps = drive(retrying(attempt, settings=settings, idempotent=False, what="createTask"))
    assert sleeps == [7.0]


def test_retrying_lets_keyboard_interrupt_through_at_once() -> None:
    attempt, calls = failing([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        drive(retrying(attempt, settings=RetrySettings(), idempotent=True, what="poll"))
    assert calls["n"] == 1


def test_not_yet_recorded_task_is_retried_briefly_then_not_found() -> None:
    errors: list[BaseException] = [NotFoundError("recordInfo is null", code=422) for _ in range(10)]
    attempt, calls = failing(errors)
    settings = RetrySettings(max_retries=5, not_found_retries=3, not_found_initial_s=0.5)
    with pytest.raises(NotFoundError):
        drive(
            retrying(attempt, settings=settings, idempotent=True, what="poll", retry_not_found=True)
        )
    assert calls["n"] == 4
    attempt, calls = failing([NotFoundError("recordInfo is null", code=422)])
    _, sleeps = drive(
        retrying(attempt, settings=settings, idempotent=True, what="poll", retry_not_found=True)
    )
    assert sleeps == [0.5]
