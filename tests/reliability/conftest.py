"""Fixtures of the reliability tests: one emulator with a distinctive key, rigs, Dagster homes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_kie.emulator import EmulatorProcess
from tests.reliability.helpers import Rig

API_KEY = "kie-rel-SECRET-3f9a1c7e5b2d4a60"
"""A distinctive API key: the security test scans every output for it."""
HMAC_KEY = "hmac-rel-SECRET-8d2e6b4f0a9c1357"
"""A distinctive callback HMAC key, scanned for likewise."""


@pytest.fixture(autouse=True)
def _fast_polling(fast_polling: None) -> None:
    """Every test here polls the emulator's short tasks fast."""


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the suite: short tasks, high rate limits, signed callbacks."""
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with EmulatorProcess(
        task_duration=0.4,
        create_limit=1000,
        create_window=1.0,
        query_limit=1000,
        api_key=API_KEY,
        webhook_hmac_key=HMAC_KEY,
        initial_credits=100_000,
        log_path=log,
        access_log=True,
        log_level="info",
    ) as process:
        process.log_file = log  # type: ignore[attr-defined]  # the security test scans it
        yield process


@pytest.fixture
def make_rig(
    local_s3: Any, s3_bucket: tuple[Any, str], tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> Callable[..., Rig]:
    """Build a :class:`Rig` on the session's SeaweedFS and a fresh bucket (emulator reset)."""

    def make(
        emulator: EmulatorProcess,
        *,
        s3_server: Any = None,
        bucket: str | None = None,
        **options: Any,
    ) -> Rig:
        emulator.admin.reset()
        prompts = tmp_path / "prompts"
        prompts.mkdir(exist_ok=True)
        server = s3_server or local_s3
        return Rig(
            emulator=emulator,
            s3_server=server,
            s3=s3_bucket[0] if s3_server is None else server.client(),
            bucket=bucket or s3_bucket[1],
            prompts_dir=prompts,
            instance=dagster_instance,
            **options,
        )

    return make
