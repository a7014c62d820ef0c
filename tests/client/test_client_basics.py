"""Construction, key handling and redaction, credits, download-url, Remix reply shapes."""

from __future__ import annotations

import json
import logging
import pickle
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from dagster_kie.client import AsyncKieClient, KieClient
from dagster_kie.errors import (
    AuthenticationError,
    InsufficientCreditsError,
    InvalidRequestError,
    KieError,
    TransportError,
)
from dagster_kie.models import RemixImageRequest

from .helpers import API_KEY, Api, Script, png_bytes, record, reply

CREATE = "/api/v1/jobs/createTask"
BODY = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a red fox"}}


@pytest.mark.parametrize("cls", [KieClient, AsyncKieClient])
def test_missing_key_fails_at_construction(
    cls: type[KieClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="KIE_API_KEY"):
        cls()
    with pytest.raises(AuthenticationError):
        cls("   ")


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, script: Script) -> None:
    monkeypatch.setenv("KIE_API_KEY", API_KEY)
    script.on("GET", "/api/v1/chat/credit", reply(42.5))
    with KieClient(transport=httpx.MockTransport(script)) as client:
        assert client.get_credits() == 42.5
    assert script.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_wrong_transport_kind_is_refused() -> None:
    class SyncOnly(httpx.BaseTransport):
        pass

    with pytest.raises(TypeError):
        AsyncKieClient(API_KEY, transport=SyncOnly())


@pytest.mark.parametrize("cls", [KieClient, AsyncKieClient])
def test_key_never_in_repr_or_str(cls: type[KieClient]) -> None:
    client = cls(API_KEY)
    texts = (
        repr(client),
        str(client),
        repr(client._core),
        repr(vars(client)),
        repr(vars(client._core)),
    )
    for text in texts:
        assert API_KEY not in text
    assert "***" in repr(client)
    with pytest.raises(TypeError):
        pickle.dumps(client._core._key)


def test_key_never_in_errors_tracebacks_or_logs(
    api: Api, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"Unauthorized – your key Bearer {API_KEY} is invalid"
    script.on("POST", CREATE, httpx.ConnectError("refused"), reply(code=401, msg=echo))
    script.on(
        "GET",
        "/api/v1/jobs/recordInfo",
        httpx.ReadTimeout("slow"),
        reply(code=500, msg=f"boom {API_KEY}", status=500),
        reply(record()),
    )
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthenticationError) as caught:
            api.create_task(BODY)
        errors.append(caught.value)
        api.get_task("task_1")
        script.on("GET", "/api/v1/chat/credit", httpx.ConnectError("refused"))
        with pytest.raises(TransportError) as network:
            api.client._core.retry = type(api.client._core.retry)(max_retries=0)
            api.get_credits()
        errors.append(network.value)
    assert "***" in str(errors[0])
    for error in errors:
        assert isinstance(error, KieError)
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert API_KEY not in "".join(traceback.format_exception(error))
        assert API_KEY not in repr(pickle.loads(pickle.dumps(error)).__dict__)
    assert caplog.records  # retries were logged...
    assert API_KEY not in caplog.text  # ...without the key


def test_credits_and_download_url(api: Api, script: Script) -> None:
    script.on("GET", "/api/v1/chat/credit", reply(1234))
    script.on("POST", "/api/v1/common/download-url", reply("https://tmp.example/x.png"))
    assert api.get_credits() == 1234.0
    assert api.get_download_url("https://kie.example/r.png") == "https://tmp.example/x.png"
    assert json.loads(script.requests[-1].content) == {"url": "https://kie.example/r.png"}


def test_download_url_of_foreign_file_is_invalid(api: Api, script: Script) -> None:
    script.on("POST", "/api/v1/common/download-url", reply(code=422, msg="not a kie.ai URL"))
    with pytest.raises(InvalidRequestError):
        api.get_download_url("https://elsewhere.example/x.png")


def test_usage_events(make_api: Callable[..., Api], script: Script) -> None:
    events: list[tuple[str, object]] = []
    api = make_api(on_event=lambda event, value: events.append((event, value)))
    script.on("POST", CREATE, reply({"taskId": "task_7"}))
    script.on("GET", "/api/v1/jobs/recordInfo", reply(record("task_7", creditsConsumed=1.6)))
    record_ = api.generate(BODY)
    assert events == [("task_created", "task_7"), ("task_finished", record_)]


# --- Remix ------------------------------------------------------------------------------------

REMIX = {"prompt": "the same fox, in watercolour", "aspect_ratio": "ASPECT_1_1"}
QUEUED: dict[str, Any] = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "CjMT7",
    "data": {
        "task_id": "CjMT7",
        "task_status": "submitted",
        "created_at": 1733851336696,
        "updated_at": 1733851336696,
    },
}
SYNC: dict[str, Any] = {
    "created": "2025-01-01T00:00:00Z",
    "data": [
        {
            "url": "https://ideogram.example/1.png",
            "prompt": "fox",
            "resolution": "1024x1024",
            "is_image_safe": True,
            "seed": 5,
            "style_type": "GENERAL",
        },
        {"prompt": "fox", "is_image_safe": False},
    ],
}

QUEUED_DATA: dict[str, Any] = QUEUED["data"]


def test_remix_sends_multipart_and_reads_the_queued_shape(api: Api, script: Script) -> None:
    script.on("POST", "/ideogram/remix", httpx.Response(200, json=QUEUED))
    result = api.remix(png_bytes(), REMIX)
    assert (result.task_id, result.status, result.images) == ("CjMT7", "submitted", [])
    (request,) = script.requests
    assert request.headers["accept"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    content = request.read()
    assert b'name="image_file"' in content
    assert b'name="image_request"' in content
    assert RemixImageRequest.model_validate(REMIX).to_json().encode() in content


def test_remix_with_an_unknown_field_names_the_allowed_ones_and_sends_nothing(
    api: Api, script: Script
) -> None:
    with pytest.raises(ValidationError) as caught:
        api.remix(png_bytes(), {**REMIX, "negative_promt": "blur"})
    [error] = caught.value.errors(include_url=False)
    assert error["loc"] == ("negative_promt",)
    assert "did you mean 'negative_prompt'?" in error["msg"]
    assert "allowed: aspect_ratio, color_palette, image_weight" in error["msg"]
    assert script.requests == []


def test_remix_reads_the_synchronous_shape(api: Api, script: Script) -> None:
    script.on("POST", "/ideogram/remix", httpx.Response(200, json=SYNC))
    result = api.remix(png_bytes(), RemixImageRequest(prompt="fox"))
    assert result.task_id is None
    assert result.image_urls == ["https://ideogram.example/1.png"]  # the unsafe one has no URL
    assert len(result.images) == 2


def test_remix_task_query_at_the_configured_path(
    make_api: Callable[..., Api], script: Script
) -> None:
    api = make_api(remix_base_url="https://agg.example/v1", remix_task_path="/remix/{task_id}")
    done = {
        **QUEUED,
        "data": {
            **QUEUED_DATA,
            "task_status": "succeed",
            "task_result": {"images": [{"url": "https://agg.example/r.png"}]},
        },
    }
    script.on("GET", "/v1/remix/CjMT7", httpx.Response(200, json=done))
    result = api.get_remix_task("CjMT7")
    assert result.status == "succeed"
    assert result.image_urls == ["https://agg.example/r.png"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (422, {"code": 422, "message": "prompt: required", "data": None}, InvalidRequestError),
        (402, {"code": 402, "message": "no credits", "data": None}, InsufficientCreditsError),
        (200, {"code": 401, "message": "bad key", "data": None}, AuthenticationError),
    ],
)
def test_remix_errors(
    api: Api, script: Script, status: int, body: dict[str, object], error: type[KieError]
) -> None:
    script.on("POST", "/ideogram/remix", httpx.Response(status, json=body))
    with pytest.raises(error):
        api.remix(png_bytes(), REMIX)


def test_remix_not_resent_after_a_dropped_connection(api: Api, script: Script) -> None:
    script.on(
        "POST",
        "/ideogram/remix",
        httpx.RemoteProtocolError("dropped"),
        httpx.Response(200, json=QUEUED),
    )
    with pytest.raises(TransportError):
        api.remix(png_bytes(), REMIX)
    assert script.count("POST", "/ideogram/remix") == 1


def test_remix_checks_the_image_first(api: Api, script: Script) -> None:
    with pytest.raises(InvalidRequestError):
        api.remix(b"not an image at all", REMIX)
    with pytest.raises(InvalidRequestError):
        api.remix("https://example.com/a.png", REMIX)
    assert script.requests == []
