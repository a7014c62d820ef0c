"""The process: ready line, startup time, stop by PID, CLI flags, light imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dagster_kie.emulator import DEFAULT_API_KEY, EmulatorProcess, EmulatorSettings
from dagster_kie.emulator.cli import settings_from_args
from dagster_kie.emulator.faults import FaultError, format_fault_arg, parse_fault_arg
from dagster_kie.emulator.process import parse_ready_line

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_ready_line_startup_and_stop() -> None:
    emu = EmulatorProcess(task_duration=0.2)
    began = time.perf_counter()
    emu.start()
    elapsed = time.perf_counter() - began
    print(f"\nemulator startup: {elapsed:.3f} s until the ready line")  # measured, not asserted
    try:
        info = emu.info
        assert set(info) == {"base_url", "upload_base_url", "api_key", "pid"}
        assert info["pid"] == emu.pid
        assert info["api_key"] == DEFAULT_API_KEY
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.upload_base_url == emu.base_url + "/upload"
        lines = [line for line in emu.tail().splitlines() if line.startswith("KIE_EMULATOR_READY")]
        assert len(lines) == 1
        reply = httpx.get(
            emu.base_url + "/api/v1/chat/credit",
            headers={"Authorization": f"Bearer {emu.api_key}"},
        )
        assert reply.json()["code"] == 200
    finally:
        emu.stop()
    assert emu.process is not None and emu.process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(emu.base_url + "/admin/health")


@pytest.mark.integration
def test_cli_ready_line_exactly_once() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_kie.emulator", "--port", "0", "--credits", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        marker, _, payload = line.partition(" ")
        assert marker == "KIE_EMULATOR_READY"
        info = json.loads(payload)
        assert info["pid"] == proc.pid
        reply = httpx.get(
            info["base_url"] + "/api/v1/chat/credit",
            headers={"Authorization": f"Bearer {info['api_key']}"},
        )
        assert reply.json()["data"] == 5
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert "KIE_EMULATOR_READY" not in out  # printed exactly once
    # uvicorn re-raises the SIGTERM it handled gracefully, so -SIGTERM is a clean stop too
    assert proc.returncode in (0, -signal.SIGTERM), err


def test_bad_flags_exit_with_usage() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for flags in (
        ["--fault", "explode"],
        ["--task-duration", "-1"],
        ["--rate-limit-status", "500"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "dagster_kie.emulator", *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert done.returncode == 2, (flags, done.stderr)
        assert "usage" in done.stderr


def test_settings_round_trip_through_argv() -> None:
    settings = EmulatorSettings(
        port=0,
        api_keys=("a", "b"),
        initial_credits=50.0,
        credits_per_image=2.0,
        create_limit=5,
        create_window=2.0,
        query_limit=3,
        query_window=0.5,
        rate_limit_status=200,
        task_duration=0.3,
        task_jitter=0.1,
        task_duration_dist="lognormal",
        record_delay=0.1,
        random_seed=7,
        download_url_ttl=60.0,
        remix_mode="sync",
        webhook_hmac_key="k",
        faults=("fail_tasks:fraction=0.1", "latency:ms=5,endpoint=create+credit"),
        access_log=True,
        lenient_required=True,
        allow_remote_url_upload=True,
    )
    assert settings_from_args(settings.to_argv()) == settings
    assert settings_from_args([]) == EmulatorSettings()
    assert EmulatorSettings().to_argv() == []


def test_fault_arg_parsing() -> None:
    assert parse_fault_arg("fail_tasks:fraction=0.1") == ("fail_tasks", {"fraction": 0.1})
    kind, params = parse_fault_arg("drop_connection:when=after,count=2,endpoint=create")
    assert kind == "drop_connection" and params == {
        "when": "after",
        "count": 2,
        "endpoint": "create",
    }
    assert parse_fault_arg("drop_callbacks") == ("drop_callbacks", {})
    text = format_fault_arg("server_error", {"count": 3, "endpoint": ["create", "credit"]})
    assert text == "server_error:count=3,endpoint=create+credit"
    for bad in ("nope", "latency", "latency:ms=x", "fail_tasks:fraction=2", "server_error:count"):
        with pytest.raises(FaultError):
            parse_fault_arg(bad)
    with pytest.raises(FaultError):
        parse_fault_arg("server_error:endpoint=nowhere")


def test_settings_checks() -> None:
    with pytest.raises(ValueError, match="create_limit"):
        EmulatorSettings(create_limit=0)
    with pytest.raises(ValueError, match="task_duration_dist"):
        EmulatorSettings(task_duration_dist="normal")  # type: ignore[arg-type]


def test_package_import_is_light() -> None:
    code = (
        "import sys, dagster_kie.emulator as e;"
        "e.IMAGE_SIZE_DIMENSIONS; e.EmulatorSettings; e.DEFAULT_API_KEY;"
        "heavy = ('starlette', 'uvicorn', 'httpx', 'PIL', 'dagster');"
        "bad = [m for m in heavy if m in sys.modules];"
        "assert not bad, bad;"
        "e.EmulatorProcess;"
        "bad = [m for m in ('starlette', 'uvicorn', 'dagster') if m in sys.modules];"
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_emulator_does_not_import_client_modules() -> None:
    code = (
        "import sys, dagster_kie.emulator.server, dagster_kie.emulator.app;"
        "bad = [m for m in sys.modules if m.startswith('dagster')"
        " and not m.startswith(('dagster_kie.emulator', 'dagster_kie._process',"
        " 'dagster_kie._serving'))"
        " and m != 'dagster_kie'];"
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_parse_ready_line() -> None:
    assert parse_ready_line("hello") is None
    assert parse_ready_line('KIE_EMULATOR_READY {"base_url": "x"}') == {"base_url": "x"}


@pytest.mark.integration
def test_many_parallel_downloads(emulator: EmulatorProcess) -> None:
    """A small taste of the benchmark: 40 square_hd images, fetched concurrently."""
    import asyncio

    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    body = {
        "model": "ideogram/v3-text-to-image",
        "input": {"prompt": "load test", "num_images": "4"},
    }

    async def run() -> list[int]:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            ids = []
            for _ in range(10):
                reply = await client.post(emulator.base_url + "/api/v1/jobs/createTask", json=body)
                ids.append(reply.json()["data"]["taskId"])
            await asyncio.sleep(0.3)
            urls: list[str] = []
            for task_id in ids:
                reply = await client.get(
                    emulator.base_url + "/api/v1/jobs/recordInfo", params={"taskId": task_id}
                )
                urls += json.loads(reply.json()["data"]["resultJson"])["resultUrls"]
            began = time.perf_counter()
            replies = await asyncio.gather(*(client.get(u) for u in urls))
            print(f"\n{len(urls)} square_hd downloads in {time.perf_counter() - began:.2f} s")
            return [len(r.content) for r in replies if r.status_code == 200]

    emulator.admin.reset()
    sizes = asyncio.run(run())
    assert len(sizes) == 40
