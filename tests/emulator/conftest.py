"""Fixtures for the emulator tests: real emulator processes on loopback, driven with httpx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dagster_kie.emulator import EmulatorProcess

from .helpers import FAST, Kie, Receiver


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """The shared emulator process (session-wide, stopped by PID)."""
    emu = EmulatorProcess(**FAST)
    emu.start()
    print(f"\nemulator started in {emu.startup_seconds:.3f} s (pid {emu.pid})")
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def kie(emulator: EmulatorProcess) -> Iterator[Kie]:
    """A client of the shared emulator, which is reset before each test."""
    emulator.admin.reset()
    client = Kie(emulator)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorProcess]]:
    """Start extra emulators with their own settings (stopped at the end of the test)."""
    started: list[EmulatorProcess] = []

    def start(**settings: Any) -> EmulatorProcess:
        emu = EmulatorProcess(**{**FAST, **settings})
        emu.start()
        started.append(emu)
        return emu

    try:
        yield start
    finally:
        for emu in started:
            emu.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running callback receiver."""
    r = Receiver()
    try:
        yield r
    finally:
        r.close()
