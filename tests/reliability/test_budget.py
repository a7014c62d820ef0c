"""Spend control: credit budgets per run and per day, the account balance, and the dry run.

When the next submission would cross a budget, the run stops submitting, finishes what is in
flight, and fails (not retried) naming the budget and what was spent. ``dagster-kie validate``
says how many tasks and images a batch would create before anything is spent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_kie.budget import CreditBudget, DailySpendLog, SpendGuard
from dagster_kie.cli import main as cli_main
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.errors import BudgetExceededError
from tests.reliability.helpers import Rig, failure_message, failure_of, prompt_lines
from tests.reliability.report import record


def _user_failure(result: dg.ExecuteInProcessResult) -> Any:
    data = failure_of(result)
    assert data is not None and data.user_failure_data is not None
    return data.user_failure_data


def test_budget_per_run_stops_submitting_and_names_the_budget(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator, credit_budget_per_run=8.0, credits_per_image=1.6)
    partition = rig.write("budget-run.jsonl", prompt_lines("budget-run", 8))

    result = rig.materialize(partition)

    assert not result.success
    message = failure_message(result)
    assert "3 of 8 requests were not submitted" in message
    assert "credit budget per run of 8 reached" in message
    assert "This run spent 8 credits (5 tasks created, 5 requests stored" in message
    failure = _user_failure(result)
    assert failure.metadata["retryable"].value is False
    assert failure.metadata["kie.credits_spent"].value == 8.0
    stats = emulator.admin.stats()
    assert stats["tasks_created"] == 5 and stats["create_calls"] == 5
    found = rig.audit()
    assert len(found.stored) == 5 and found.duplicates == 0 and found.lost == []
    # Not submitted means no ledger entry: a later run (a new budget) sends them normally.
    assert len(found.ledger) == 5
    tasks_event = next(
        e.materialization
        for e in result.all_events
        if e.is_step_materialization and e.materialization.asset_key.path[-1] == "submitted_tasks"
    )
    assert tasks_event.metadata["kie.budget_per_run"].value == 8.0
    record("budget", case="per run 8 credits, 8 requests x 1.6", message=message,
           tasks_created=5, requests_stored=5, not_submitted=3)  # fmt: skip


def test_budget_per_day_is_shared_by_runs(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator, credit_budget_per_day=4.8, credits_per_image=1.6)
    first = rig.write("day-1.jsonl", prompt_lines("day-one", 2))
    second = rig.write("day-2.jsonl", prompt_lines("day-two", 4))

    assert rig.materialize(first).success  # 3.2 credits today
    result = rig.materialize(second)

    assert not result.success
    message = failure_message(result)
    assert "3 of 4 requests were not submitted" in message
    assert "credit budget per day of 4.8 reached" in message
    assert "This run spent 1.6 credits" in message
    assert emulator.admin.stats()["tasks_created"] == 3
    record("budget", case="per day 4.8 credits, two runs (2 then 4 requests)",
           message=message, tasks_created=3, requests_stored=3, not_submitted=3)  # fmt: skip


def test_account_balance_is_never_overdrawn(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator)
    emulator.admin.set_credits(3.2)
    partition = rig.write("balance.jsonl", prompt_lines("balance", 4))

    result = rig.materialize(partition)

    message = failure_message(result)
    assert "account balance of 3.2 credits would be exceeded" in message, message
    stats = emulator.admin.stats()
    assert stats["tasks_created"] == 2
    assert stats["errors_by_code"].get("402", 0) == 0  # kie.ai never had to refuse one


def test_day_spend_of_concurrent_runs_is_seen(moto_s3: tuple[Any, str]) -> None:
    s3, bucket = moto_s3
    log = DailySpendLog(s3, bucket, "kie")
    budget = CreditBudget(per_day=5.0, credits_per_image=1.0)
    one = SpendGuard(budget, run_id="one", log=log, refresh_interval_s=0, write_interval_s=0)
    two = SpendGuard(budget, run_id="two", log=log, refresh_interval_s=0, write_interval_s=0)
    for _ in range(3):
        one.settle(one.reserve(1), 1.0, 1)
    two.settle(two.reserve(1), 1.0, 1)
    with pytest.raises(BudgetExceededError, match="per day of 5 reached: 4 spent"):
        two.reserve(2)
    assert two.reserve(1) == 1.0


def test_validate_is_a_dry_run(
    emulator: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.admin.reset()
    good = tmp_path / "batch.jsonl"
    good.write_text(
        '{"prompt": "one"}\n{"prompt": "two", "num_images": 2}\n'
        '{"prompt": "four", "num_images": "4"}\n{"prompt": "bad", "style": "PIXEL"}\n'
    )
    text = tmp_path / "more.txt"
    text.write_text("a fox\na hen\n")

    code = cli_main(["validate", str(good), str(text), "--credits-per-image", "1.6"])

    out = capsys.readouterr().out
    assert code == 1  # one invalid record
    assert re.search(r"batch.jsonl:4: input.style: .*'AUTO'.*'DESIGN'", out), out
    assert "would create 5 tasks and 9 images (~14.4 credits); 1 problem" in out
    assert emulator.admin.stats()["requests_total"] == 0  # nothing was sent anywhere
    record("budget", case="dagster-kie validate (dry run)", message=out.strip().splitlines()[-1])
