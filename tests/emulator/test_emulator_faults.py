"""Every fault mode, installed through the admin API and through ``--fault`` at start."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dagster_kie.emulator import EmulatorProcess

from .helpers import Kie, Receiver, result_urls

pytestmark = pytest.mark.integration

T2I = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "faulty"}}


def check_rate_limit_storm(kie: Kie) -> None:
    for _ in range(2):
        reply = kie.create(T2I)
        assert reply.status_code == 429 and reply.json()["code"] == 429
        assert reply.headers["Retry-After"] == "1"
    assert kie.create(T2I).json()["code"] == 200
    stats = kie.emu.admin.stats()
    assert stats["rate_limited"]["create"] == 2 and stats["tasks_created"] == 1


def check_maintenance(kie: Kie) -> None:
    reply = kie.http.get(kie.base + "/api/v1/chat/credit")
    assert reply.status_code == 200 and reply.json()["code"] == 455
    assert kie.create(T2I).json()["code"] == 200  # other endpoints unaffected


def check_server_error(kie: Kie) -> None:
    for _ in range(2):
        reply = kie.create(T2I)
        assert reply.status_code == 500 and reply.json()["code"] == 500
    assert kie.create(T2I).json()["code"] == 200
    assert kie.emu.admin.stats()["tasks_created"] == 1


def check_fail_tasks(kie: Kie) -> None:
    for _ in range(3):
        data = kie.wait(kie.create_ok())
        assert data["state"] == "fail" and data["failCode"] == "501" and data["failMsg"]
        assert data["resultJson"] == ""
    assert kie.credit() == 10000


def check_slow_tasks(kie: Kie) -> None:
    began = time.monotonic()
    task_id = kie.create_ok()
    time.sleep(0.4)
    assert kie.record(task_id)["data"]["state"] != "success"
    kie.wait(task_id)
    assert time.monotonic() - began >= 0.7


def _drop_check(kie: Kie, created: int) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        kie.create(T2I)
    stats = kie.emu.admin.stats()
    assert stats["tasks_created"] == created
    assert stats["connections_dropped"] == 1
    assert kie.create(T2I).json()["code"] == 200  # next request is answered


def check_drop_connection_before(kie: Kie) -> None:
    _drop_check(kie, created=0)


def check_drop_connection_after(kie: Kie) -> None:
    _drop_check(kie, created=1)
    # the dropped task exists, runs and is charged like any other
    time.sleep(0.4)
    stats = kie.emu.admin.stats()
    assert stats["tasks_by_state"] == {"success": 2}
    assert kie.credit() == pytest.approx(10000 - 2 * 1.6)


def check_drop_connection_partial(kie: Kie) -> None:
    _drop_check(kie, created=1)


def check_malformed_json(kie: Kie) -> None:
    reply = kie.http.get(kie.base + "/api/v1/chat/credit")
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)
    assert reply.text.startswith('{"code":200')
    assert kie.credit() == 10000


def check_expire_result_urls(kie: Kie) -> None:
    data = kie.wait(kie.create_ok())
    url = result_urls(data)[0]
    assert httpx.get(url).status_code == 403
    fresh = kie.http.post(kie.base + "/api/v1/common/download-url", json={"url": url}).json()
    assert fresh["code"] == 200
    assert httpx.get(fresh["data"]).status_code == 200


def check_drop_callbacks(kie: Kie) -> None:
    receiver = Receiver()
    try:
        body = {**T2I, "callBackUrl": receiver.url}
        task_id = kie.create(body).json()["data"]["taskId"]
        assert kie.wait(task_id)["state"] == "success"
        time.sleep(0.3)
        assert receiver.received.empty()
        stats = kie.emu.admin.stats()
        assert stats["callbacks_dropped"] == 1 and stats["callbacks_sent"] == 0
        second = kie.create(body).json()["data"]["taskId"]
        _, payload = receiver.get()
        assert payload["data"]["taskId"] == second
    finally:
        receiver.close()


def check_latency(kie: Kie) -> None:
    began = time.monotonic()
    kie.credit()
    assert time.monotonic() - began >= 1.0
    began = time.monotonic()
    kie.create(T2I)  # another endpoint: not delayed (a generous bound for a loaded machine)
    assert time.monotonic() - began < 1.0


FAULTS: dict[str, tuple[str, dict[str, Any], Callable[[Kie], None]]] = {
    "rate_limit_storm": (
        "rate_limit_storm",
        {"count": 2, "endpoint": "create"},
        check_rate_limit_storm,
    ),
    "maintenance": ("maintenance", {"duration": 60, "endpoint": "credit"}, check_maintenance),
    "server_error": ("server_error", {"count": 2, "endpoint": "create"}, check_server_error),
    "fail_tasks": ("fail_tasks", {"fraction": 1.0}, check_fail_tasks),
    "slow_tasks": ("slow_tasks", {"extra_seconds": 0.6, "count": 1}, check_slow_tasks),
    "drop_connection_before": (
        "drop_connection",
        {"when": "before", "count": 1, "endpoint": "create"},
        check_drop_connection_before,
    ),
    "drop_connection_after": (
        "drop_connection",
        {"when": "after", "count": 1, "endpoint": "create"},
        check_drop_connection_after,
    ),
    "drop_connection_partial": (
        "drop_connection",
        {"when": "after", "mode": "partial", "count": 1, "endpoint": "create"},
        check_drop_connection_partial,
    ),
    "malformed_json": ("malformed_json", {"count": 1, "endpoint": "credit"}, check_malformed_json),
    "expire_result_urls": ("expire_result_urls", {"count": 1}, check_expire_result_urls),
    "drop_callbacks": ("drop_callbacks", {"count": 1}, check_drop_callbacks),
    "latency": ("latency", {"ms": 1000, "endpoint": "credit"}, check_latency),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_via_admin(kie: Kie, name: str) -> None:
    kind, params, check = FAULTS[name]
    kie.emu.admin.set_faults({kind: params})
    check(kie)


@pytest.fixture
def cli_kie(
    request: pytest.FixtureRequest, start_emulator: Callable[..., EmulatorProcess]
) -> Iterator[Kie]:
    kind, params, _ = FAULTS[request.param]
    emu = start_emulator(faults={kind: params})
    assert "--fault" in emu.argv
    client = Kie(emu)
    yield client
    client.close()


@pytest.mark.parametrize("cli_kie", list(FAULTS), indirect=True)
def test_fault_via_cli(cli_kie: Kie, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.params["cli_kie"]
    FAULTS[name][2](cli_kie)


def test_cli_fault_strings(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(faults=["server_error:count=1,endpoint=credit", "latency:ms=1"])
    faults = emu.admin.faults()
    assert faults["server_error"]["remaining"] == 1 and faults["latency"]["ms"] == 1
    kie = Kie(emu)
    assert kie.http.get(kie.base + "/api/v1/chat/credit").json()["code"] == 500
    assert kie.credit() == 10000


def test_fault_time_window(kie: Kie) -> None:
    kie.emu.admin.set_faults(maintenance={"start": 1.0, "duration": 2.0, "endpoint": "credit"})
    url = kie.base + "/api/v1/chat/credit"
    assert kie.http.get(url).json()["code"] == 200
    time.sleep(1.5)
    assert kie.http.get(url).json()["code"] == 455
    time.sleep(2.0)
    assert kie.http.get(url).json()["code"] == 200


def test_fault_fraction_is_seeded(kie: Kie) -> None:
    kie.emu.admin.set_faults(server_error={"fraction": 0.5, "endpoint": "credit"})
    codes = [kie.http.get(kie.base + "/api/v1/chat/credit").json()["code"] for _ in range(40)]
    assert 5 < codes.count(500) < 35
    assert set(codes) == {200, 500}


def test_fault_status_override(kie: Kie) -> None:
    kie.emu.admin.set_faults(
        server_error={"count": 1, "status": 200, "endpoint": "credit"},
        maintenance={"count": 1, "status": 503, "endpoint": "record_info"},
    )
    reply = kie.http.get(kie.base + "/api/v1/chat/credit")
    assert reply.status_code == 200 and reply.json()["code"] == 500
    reply = kie.http.get(kie.base + "/api/v1/jobs/recordInfo", params={"taskId": "x"})
    assert reply.status_code == 503 and reply.json()["code"] == 455


def test_faults_on_result_files(kie: Kie) -> None:
    url = result_urls(kie.wait(kie.create_ok()))[0]
    kie.emu.admin.set_faults(server_error={"count": 1, "endpoint": "files"})
    assert httpx.get(url).status_code == 500
    assert httpx.get(url).status_code == 200
