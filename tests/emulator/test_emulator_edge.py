"""Auth (401 inside HTTP 200), the edge's User-Agent check, 404s, admin API, rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from dagster_kie.emulator import EmulatorProcess

from .helpers import Kie

pytestmark = pytest.mark.integration

ENDPOINTS = [
    ("POST", "/api/v1/jobs/createTask", {"model": "ideogram/v3-text-to-image", "input": {}}),
    ("GET", "/api/v1/jobs/recordInfo?taskId=x", None),
    ("GET", "/api/v1/chat/credit", None),
    ("POST", "/api/v1/common/download-url", {"url": "x"}),
    ("POST", "/upload/api/file-base64-upload", {"base64Data": "x", "uploadPath": "a"}),
    ("POST", "/upload/api/file-url-upload", {"fileUrl": "x", "uploadPath": "a"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic abc", "Bearer"])
def test_unauthorized_is_401_in_200(
    kie: Kie, method: str, path: str, body: object, auth: str | None
) -> None:
    headers = {"User-Agent": "tests"}
    if auth is not None:
        headers["Authorization"] = auth
    reply = httpx.request(method, kie.base + path, json=body, headers=headers)
    assert reply.status_code == 200
    data = reply.json()
    assert data["code"] == 401
    assert data["msg"].startswith("Unauthorized – Authentication failed.")
    assert data["data"] is None
    assert "wrong-key" not in reply.text


def test_unauthorized_remix(kie: Kie) -> None:
    reply = httpx.post(kie.base + "/ideogram/remix", headers={"User-Agent": "t"})
    assert reply.status_code == 200 and reply.json()["code"] == 401


def test_several_api_keys(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(api_keys=("key-one", "key-two"))
    assert emu.api_key == "key-one"
    for key in ("key-one", "key-two"):
        assert Kie(emu, key).credit() == 10000
    bad = Kie(emu, "kie-local-dev-key").http.get(emu.base_url + "/api/v1/chat/credit")
    assert bad.json()["code"] == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/chat/credit"),
        ("POST", "/api/v1/jobs/createTask"),
        ("GET", "/api/v1/jobs/recordInfo?taskId=x"),
        ("POST", "/upload/api/file-stream-upload"),
        ("POST", "/ideogram/remix"),
        ("GET", "/files/x/0.png"),
    ],
)
def test_missing_user_agent_403_1010(kie: Kie, method: str, path: str) -> None:
    # httpx always sends a User-Agent unless it is removed explicitly
    with httpx.Client() as client:
        request = client.build_request(
            method, kie.base + path, headers={"Authorization": f"Bearer {kie.emu.api_key}"}
        )
        del request.headers["User-Agent"]
        reply = client.send(request)
    assert reply.status_code == 403
    assert reply.text == "error code: 1010"


@pytest.mark.parametrize(
    "path", ["/api/file-stream-upload", "/api/file-base64-upload", "/api/file-url-upload"]
)
def test_upload_paths_404_on_jobs_base(kie: Kie, path: str) -> None:
    reply = kie.http.post(kie.base + path, json={})
    assert reply.status_code == 404


def test_unknown_path_404(kie: Kie) -> None:
    assert kie.http.get(kie.base + "/api/v1/nothing").status_code == 404


def test_admin_api(kie: Kie) -> None:
    admin = kie.emu.admin
    faults = admin.set_faults(server_error={"count": 2, "endpoint": "credit"})
    assert faults["server_error"]["remaining"] == 2
    assert faults["server_error"]["endpoint"] == ["credit"]
    assert admin.faults()["server_error"]["active"] is True
    admin.clear_faults()
    assert admin.faults() == {}
    with pytest.raises(RuntimeError, match="unknown fault kind"):
        admin.set_faults(nonsense={"count": 1})
    with pytest.raises(RuntimeError, match="unknown parameter"):
        admin.set_faults(latency={"ms": 5, "colour": "red"})
    admin.set_faults(latency={"ms": 1}, maintenance={"duration": 5})
    admin.set_faults(clear=True, server_error=True)
    assert set(admin.faults()) == {"server_error"}
    admin.reset()
    assert admin.faults() == {}
    admin.set_credits(12.5)
    assert kie.credit() == 12.5
    stats = admin.stats()
    for key in (
        "create_calls",
        "tasks_created",
        "query_calls",
        "polls_per_task",
        "rate_limited",
        "errors_by_code",
        "callbacks_sent",
        "credits_balance",
        "downloads",
    ):
        assert key in stats
    health = httpx.get(kie.base + "/admin/health").json()
    assert health["ok"] is True


def test_create_rate_limit(start_emulator: Callable[..., EmulatorProcess]) -> None:
    # windows of a few seconds: a loaded CI worker must not see one age out mid-test
    emu = start_emulator(create_limit=3, create_window=3.0)
    kie = Kie(emu)
    for _ in range(3):
        kie.create_ok()
    reply = kie.create({"model": "ideogram/v3-text-to-image", "input": {"prompt": "x"}})
    assert reply.status_code == 429
    assert reply.json()["code"] == 429 and "Rate limit" in reply.json()["msg"]
    assert int(reply.headers["Retry-After"]) >= 1
    other = Kie(emu, emu.api_key)  # same key, same window
    assert (
        other.create({"model": "ideogram/v3-text-to-image", "input": {"prompt": "x"}}).status_code
        == 429
    )
    stats = emu.admin.stats()
    assert stats["tasks_created"] == 3  # rejected, not queued
    assert stats["create_calls"] == 5
    assert stats["rate_limited"]["create"] == 2
    time.sleep(3.05)
    kie.create_ok()


def test_query_rate_limit(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(query_limit=4, query_window=3.0)
    kie = Kie(emu)
    statuses = [kie.http.get(kie.base + "/api/v1/chat/credit").status_code for _ in range(4)]
    assert statuses == [200] * 4
    limited = kie.http.get(kie.base + "/api/v1/jobs/recordInfo", params={"taskId": "x"})
    assert limited.status_code == 429 and limited.json()["code"] == 429
    limited = kie.http.post(kie.base + "/api/v1/common/download-url", json={"url": "x"})
    assert limited.status_code == 429
    assert emu.admin.stats()["rate_limited"]["total"] == 2
    time.sleep(3.05)
    assert kie.http.get(kie.base + "/api/v1/chat/credit").status_code == 200


def test_rate_limit_status_200(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(query_limit=1, query_window=5, rate_limit_status=200)
    kie = Kie(emu)
    kie.credit()
    reply = kie.http.get(kie.base + "/api/v1/chat/credit")
    assert reply.status_code == 200 and reply.json()["code"] == 429
