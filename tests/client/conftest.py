"""Fixtures of the client tests: mock kie.ai servers (unit) and a real emulator (integration)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dagster_kie.emulator import EmulatorProcess
from dagster_kie.polling import PollingPolicy

from .helpers import API_KEY, MODES, Api, FakeClock, Script


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``"sync"`` or ``"async"``: the same test drives both clients."""
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the client sleeps."""
    return FakeClock()


@pytest.fixture
def script() -> Script:
    """A scripted kie.ai (an ``httpx.MockTransport`` handler)."""
    return Script()


@pytest.fixture
def make_api(mode: str, clock: FakeClock, script: Script) -> Iterator[Callable[..., Api]]:
    """Build a client of ``mode`` on the scripted server, with the fake clock."""
    made: list[Api] = []

    def make(**options: Any) -> Api:
        options.setdefault("transport", httpx.MockTransport(script))
        options.setdefault("polling", PollingPolicy(interval_scale=1.0))
        api = Api(mode, API_KEY, clock=options.pop("clock", clock), **options)
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            api.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """A client of ``mode`` on the scripted server."""
    return make_api()


# --- integration: the real emulator process ------------------------------------------------------

EMULATOR_SETTINGS: dict[str, Any] = {
    "task_duration": 0.3,
    "task_duration_dist": "fixed",
    "create_limit": 10_000,
    "query_limit": 10_000,
    "random_seed": 7,
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """One emulator process per test module (stopped by PID)."""
    with EmulatorProcess(**EMULATOR_SETTINGS) as emu:
        yield emu


@pytest.fixture
def emu(emulator: EmulatorProcess) -> EmulatorProcess:
    """The module's emulator, reset (tasks, stats, faults, rate windows) for this test."""
    emulator.admin.reset()
    return emulator


def live_options(emu: EmulatorProcess, **options: Any) -> dict[str, Any]:
    """Client options for an emulator (its key, URLs, loopback downloads) with fast retries."""
    return emu.client_options(retry_backoff_s=(0.05, 0.5), **options)


@pytest.fixture
def make_live(mode: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Api]]:
    """Build a client of ``mode`` for an emulator (polling scaled down by the environment)."""
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.05")
    made: list[Api] = []

    def make(emu: EmulatorProcess, **options: Any) -> Api:
        api = Api(mode, **live_options(emu, **options))
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            api.close()


@pytest.fixture
def live(emu: EmulatorProcess, make_live: Callable[..., Api]) -> Api:
    """A client of ``mode`` for the module's (reset) emulator."""
    return make_live(emu)
