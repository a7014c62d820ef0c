"""A smaller soak as a normal test: a few hundred requests with random faults at a few percent,
partitions re-executed while retryable. The 2,000-request soak is ``python -m
tests.reliability.soak`` (its figures are in RELIABILITY.md)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from dagster_kie.emulator import EmulatorProcess
from tests.reliability.report import record
from tests.reliability.soak import emulator_for_soak, run_soak


@pytest.fixture(scope="module")
def soak_emulator() -> Any:
    with emulator_for_soak(random_seed=11) as process:
        yield process


@pytest.mark.parametrize(("mode", "requests"), [("polling", 300), ("callbacks", 150)])
def test_soak(
    mode: str, requests: int, soak_emulator: EmulatorProcess, local_s3: Any, tmp_path: Path
) -> None:
    result = run_soak(
        requests=requests,
        files=2,
        fraction=0.03,
        mode=mode,
        wait_timeout_s=8.0,
        emulator=soak_emulator,
        s3_server=local_s3,
        bucket=f"soak-{uuid.uuid4().hex[:12]}",
        workdir=tmp_path,
        log=lambda line: None,
    )
    found = result.audit
    figures = result.figures()
    record("soak-test", **figures)
    assert sum(figures["faults_triggered"].values()) > requests / 10, figures
    assert not found.problems, found.problems
    assert found.duplicates == 0 and found.paid_twice == [], figures
    unconfirmed = {rid for rid in found.requests if found.state_of(rid) == "submitting"}
    failed = {rid for rid in found.requests if found.state_of(rid) == "failed"}
    # Every request is accounted for: stored, unconfirmed (never resent) or failed for good.
    assert set(found.stored) | unconfirmed | failed == set(found.requests)
    assert len(found.stored) >= 0.85 * requests, figures
    # Anything paid and not stored is a request reported unconfirmed; with callbacks, nothing.
    assert set(found.lost) <= unconfirmed
    if mode == "callbacks":
        assert found.lost == [], figures
        assert result.stats["callbacks_sent"] >= 0.9 * found.tasks_created, figures
    # A request got a second task only after its first one failed (failed tasks are not charged).
    for rid, tasks in found.tasks.items():
        ordered = sorted(tasks, key=lambda task: task["created"])
        assert all(task["state"] == "fail" for task in ordered[:-1]), (rid, ordered)

    # The operator settled every unconfirmed request with `dagster-kie ledger`; runs again then
    # store every paid image and send each never-created request once: nothing lost in any mode.
    after = result.after
    assert after is not None and not after.problems, figures
    assert result.reconciled["confirmed"] == result.unconfirmed_created, figures
    assert result.reconciled["forgotten"] == result.unconfirmed_not_created, figures
    assert after.lost == [] and after.paid_twice == [] and after.duplicates == 0, figures
    failed_after = {rid for rid in after.requests if after.state_of(rid) == "failed"}
    assert set(after.stored) | failed_after == set(after.requests), figures
