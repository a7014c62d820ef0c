"""Every fault kind of the emulator, injected into real Dagster runs: each run ends in full success
or a clear failure (retryable, or ``unconfirmed`` when a task may exist that cannot be found), and
re-executing a partition as the retry sensor would never pays twice, duplicates or loses anything.

A callback that never arrives (falls back to polling) is proven in
``tests/dagster/test_callbacks_mode.py::test_callback_that_never_arrives_falls_back_to_polling``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.emulator import EmulatorProcess
from tests.reliability.conftest import HMAC_KEY
from tests.reliability.helpers import (
    Rig,
    failure_message,
    failure_retryable,
    prompt_lines,
    wait_for,
)
from tests.reliability.report import record

N = 6

Expect = Literal["success", "retried", "unconfirmed", "permanent"]


@dataclass(frozen=True)
class Scenario:
    id: str
    faults: dict[str, Any]
    how_often: str
    expect: Expect
    callbacks: bool = False
    resource: dict[str, Any] = field(default_factory=dict)
    message: str = ""  # a part of the failure message users see


SCENARIOS = [
    Scenario(
        "429-storm", {"rate_limit_storm": {"duration": 3.0, "endpoint": "api"}},
        "every API call for 3 s from the run's first call", "success",
    ),
    Scenario(
        "455-maintenance", {"maintenance": {"duration": 3.0, "endpoint": "api"}},
        "every API call for 3 s from the run's first call", "success",
    ),
    Scenario(
        "500-burst-polls", {"server_error": {"count": 8, "endpoint": "record_info"}},
        "next 8 polls", "success",
    ),
    Scenario(
        "500-burst-create", {"server_error": {"count": 2, "endpoint": "create"}},
        "next 2 createTask", "unconfirmed", message="no task id came back",
    ),
    Scenario(
        "reset-before-queries",
        {"drop_connection": {"count": 4, "endpoint": "record_info", "when": "before"}},
        "next 4 polls", "success",
    ),
    Scenario(
        "reset-after-create",
        {"drop_connection": {"count": 2, "endpoint": "create", "when": "after"}},
        "next 2 createTask (task created, reply lost)", "unconfirmed",
        message="no task id came back",
    ),
    Scenario(
        "reset-after-create-callbacks",
        {"drop_connection": {"count": 2, "endpoint": "create", "when": "after"}},
        "next 2 createTask (task created, reply lost)", "success", callbacks=True,
    ),
    Scenario(
        "malformed-json-polls", {"malformed_json": {"count": 6, "endpoint": "record_info"}},
        "next 6 polls", "success",
    ),
    Scenario(
        "malformed-json-create-callbacks",
        {"malformed_json": {"count": 2, "endpoint": "create"}},
        "next 2 createTask replies (task created)", "success", callbacks=True,
    ),
    Scenario(
        "slow-tasks-past-deadline",
        {"slow_tasks": {"count": 3, "multiplier": 1, "extra_seconds": 3.5}},
        "3 tasks 3.5 s slower than the 1.5 s deadline", "retried",
        resource={"wait_timeout_seconds": 1.5}, message="did not finish within",
    ),
    Scenario(
        "tasks-fail-501", {"fail_tasks": {"count": 2}},
        "next 2 tasks end in fail/501", "retried", message="generation failed",
    ),
    Scenario(
        "tasks-fail-content-policy",
        {"fail_tasks": {"count": 1, "fail_msg": "sensitive content detected"}},
        "next task fails for its content", "permanent", message="sensitive content",
    ),
    Scenario(
        "expired-result-urls", {"expire_result_urls": {}},
        "every result URL", "success",
    ),
]  # fmt: skip


def _inject_on_first_call(emulator: EmulatorProcess, scenario: Scenario) -> None:
    wait_for(lambda: emulator.admin.stats()["requests_total"] > 0, timeout=60, what="a call")
    emulator.admin.set_faults(scenario.faults)


@pytest.fixture
def receiver(local_s3: Any, s3_bucket: tuple[Any, str]) -> Iterator[CallbackReceiverProcess]:
    with CallbackReceiverProcess(
        bucket=s3_bucket[1], prefix="kie", hmac_key=HMAC_KEY, env=local_s3.env()
    ) as process:
        yield process


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_fault(
    scenario: Scenario,
    emulator: EmulatorProcess,
    make_rig: Callable[..., Rig],
    request: pytest.FixtureRequest,
) -> None:
    options = dict(scenario.resource)
    if scenario.callbacks:
        options["callback_url"] = request.getfixturevalue("receiver").url
    rig = make_rig(emulator, **options)
    name = scenario.id
    partition = rig.write(f"{name}.jsonl", prompt_lines(name, N, num_images=2))
    timed = any("duration" in params for params in scenario.faults.values())
    if timed:  # a window: open it when the run makes its first API call
        injector = threading.Thread(target=_inject_on_first_call, args=(emulator, scenario))
        injector.start()
    else:  # a count: the next matching events, whenever they come
        emulator.admin.set_faults(scenario.faults)

    runs = rig.until_done(partition)
    if timed:
        injector.join()

    emulator.admin.clear_faults()
    stats = emulator.admin.stats()
    kind = next(iter(scenario.faults))
    assert stats["faults_triggered"].get(kind, 0) > 0, stats["faults_triggered"]
    found = rig.audit()
    first = runs[0]
    message = failure_message(runs[-1]) or failure_message(first)
    if scenario.expect == "success":
        assert first.success, failure_message(first)
        found.assert_clean()
        assert found.tasks_created == N
    elif scenario.expect == "retried":
        assert not first.success and failure_retryable(first), failure_message(first)
        assert scenario.message in failure_message(first)
        assert runs[-1].success, [failure_message(r) for r in runs]
        found.assert_clean()
    elif scenario.expect == "permanent":
        assert len(runs) == 1 and not first.success and not failure_retryable(first)
        assert scenario.message in message
        failed = [rid for rid in found.requests if rid not in found.manifests]
        assert len(failed) == 1 and found.state_of(failed[0]) == "failed"
        found.assert_clean(allow_missing=failed)
        assert found.tasks_created == N  # the failed request was not resent
    else:  # unconfirmed: a clear, non-retryable failure naming what happened
        last = runs[-1]
        assert not last.success and not failure_retryable(last)
        assert "not resent" in message and scenario.message in message, message
        unconfirmed = [rid for rid in found.requests if found.state_of(rid) == "submitting"]
        assert len(unconfirmed) == 2
        # ...and tells the user how to settle it.
        assert any(f"dagster-kie ledger confirm {rid} <task id>" in message for rid in unconfirmed)
        # Anything lost is a request reported unconfirmed (its task exists, its id is unknown).
        assert set(found.lost) <= set(unconfirmed)
        found.assert_clean(allow_missing=unconfirmed)
        # A second re-execution still sends nothing for them.
        creates = stats["create_calls"]
        again = rig.materialize(partition)
        assert not again.success and emulator.admin.stats()["create_calls"] == creates
    summary = found.summary()
    record(
        "faults",
        fault=scenario.id,
        injected=f"{kind} {scenario.faults[kind]}",
        how_often=scenario.how_often,
        mode="callbacks" if scenario.callbacks else "polling",
        runs=len(runs),
        outcome=(
            "success"
            if runs[-1].success
            else ("retryable failure" if failure_retryable(runs[-1]) else "clear failure")
        ),
        message=message[:600],
        **summary,
    )
