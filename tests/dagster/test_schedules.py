"""The daily batch schedule, evaluated against a real temporary Dagster instance."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pytest

from dagster_kie.schedules import SCHEDULED_FOR_TAG, build_batch_schedule

PARTITIONS = dg.DynamicPartitionsDefinition(name="kie_prompt_files")
JOB_NAME = "kie_generate_images"


@dg.asset(partitions_def=PARTITIONS)
def stand_in(context: dg.AssetExecutionContext) -> None:
    """Stands in for the generation assets."""
    context.log.info(f"materializing {context.partition_key}")


STAND_IN_JOB = dg.define_asset_job(JOB_NAME, selection=[stand_in])
SCHEDULE = build_batch_schedule(job=STAND_IN_JOB, partitions_def=PARTITIONS)
DEFS = dg.Definitions(assets=[stand_in], jobs=[STAND_IN_JOB], schedules=[SCHEDULE])
WHEN = datetime(2025, 5, 1, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def instance(dagster_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """A real, temporary Dagster instance (``dagster_instance`` of ``tests/conftest.py``)."""
    return dagster_instance


def evaluate(instance: dg.DagsterInstance) -> Any:
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=WHEN,
        repository_def=DEFS.get_repository_def(),
    )
    return SCHEDULE.evaluate_tick(context)


def test_schedule_definition() -> None:
    assert SCHEDULE.name == "kie_daily_batch"
    assert SCHEDULE.cron_schedule == "0 6 * * *"
    assert SCHEDULE.execution_timezone == "UTC"
    assert SCHEDULE.default_status == dg.DefaultScheduleStatus.STOPPED
    assert SCHEDULE.job_name == JOB_NAME


def test_no_partitions_skips(instance: dg.DagsterInstance) -> None:
    data = evaluate(instance)

    assert not data.run_requests
    assert data.skip_message and "No partitions" in data.skip_message


def test_one_run_per_partition(instance: dg.DagsterInstance) -> None:
    partitions = ["batch/dogs.txt", "cats.jsonl", "poster.json"]
    instance.add_dynamic_partitions("kie_prompt_files", partitions)

    data = evaluate(instance)

    requests = data.run_requests or []
    assert sorted(str(r.partition_key) for r in requests) == partitions
    stamp = WHEN.isoformat()
    assert sorted(str(r.run_key) for r in requests) == [f"{stamp}:{p}" for p in partitions]
    for request in requests:
        assert request.tags["dagster/partition"] == request.partition_key
        assert request.tags[SCHEDULED_FOR_TAG] == stamp
        assert request.tags["dagster-kie/trigger"] == "schedule"

    # The requested runs are runnable as they are.
    job = DEFS.resolve_job_def(JOB_NAME)
    result = job.execute_in_process(instance=instance, partition_key=requests[0].partition_key)
    assert result.success


def test_custom_cron_and_name(instance: dg.DagsterInstance) -> None:
    schedule = build_batch_schedule(
        job=STAND_IN_JOB,
        partitions_def=PARTITIONS,
        cron_schedule="0 * * * *",
        name="hourly_sweep",
        execution_timezone="Europe/Berlin",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    instance.add_dynamic_partitions("kie_prompt_files", ["cats.jsonl"])
    defs = dg.Definitions(assets=[stand_in], jobs=[STAND_IN_JOB], schedules=[schedule])
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=WHEN, repository_def=defs.get_repository_def()
    )

    data = schedule.evaluate_tick(context)

    assert schedule.name == "hourly_sweep"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert [r.run_key for r in data.run_requests or []] == [f"{WHEN.isoformat()}:cats.jsonl"]
