"""The periodic batch: one run per prompt-file partition, as a safety-net sweep.

Re-materializing a partition only generates what is missing or failed (the task ledger skips every
request already submitted, and stored images are not fetched again), so running every partition
on a schedule is cheap, and it catches whatever a sensor missed or a run left unfinished.

Example:
    .. code-block:: python

        import dagster as dg
        from dagster_kie import LocalPromptSource, build_batch_schedule, build_kie_assets

        kie = build_kie_assets(source=LocalPromptSource("prompts"), bucket="images")
        defs = dg.Definitions(
            assets=kie.assets,
            jobs=[kie.job],
            schedules=[build_batch_schedule(job=kie.job, partitions_def=kie.partitions_def)],
        )
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeAlias

import dagster as dg

from dagster_kie.sensors import TRIGGER_TAG, _partitions_name

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

    KieJob: TypeAlias = dg.JobDefinition | UnresolvedAssetJobDefinition

__all__ = ["SCHEDULED_FOR_TAG", "build_batch_schedule"]

SCHEDULED_FOR_TAG = "dagster-kie/scheduled-for"
"""Run tag: the scheduled time (ISO 8601) of the batch tick that requested the run."""


def build_batch_schedule(
    *,
    job: KieJob,
    partitions_def: dg.DynamicPartitionsDefinition,
    cron_schedule: str = "0 6 * * *",
    name: str = "kie_daily_batch",
    execution_timezone: str = "UTC",
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """Build a schedule that requests one run per current partition at every tick.

    The partitions are read from the instance when the tick runs (``get_dynamic_partitions``), so
    files the sensor added since the code was loaded are included. Each run's key is
    ``"<scheduled time ISO 8601>:<partition>"``: unique per tick and partition. A tick with no
    partitions is skipped with a reason.

    Args:
        job: The job that materializes one partition (an unresolved asset job is fine).
        partitions_def: The dynamic partitions of that job (one per prompt file).
        cron_schedule: When the batch runs (cron syntax), by default daily at 06:00.
        name: The schedule's name.
        execution_timezone: Time zone of ``cron_schedule``.
        default_status: Whether the schedule runs as soon as it is loaded.
        description: Shown in the UI.

    Returns:
        The schedule definition.

    Raises:
        ValueError: when ``partitions_def`` has no name.
    """
    partitions_name = _partitions_name(partitions_def)

    @dg.schedule(
        cron_schedule=cron_schedule,
        job=job,
        name=name,
        execution_timezone=execution_timezone,
        default_status=default_status,
        description=description
        or f"Runs {job.name} for every prompt-file partition: only missing or failed requests "
        "are generated, so this sweep is cheap.",
    )
    def _batch_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        partitions = list(context.instance.get_dynamic_partitions(partitions_name))
        if not partitions:
            return dg.SkipReason(
                f"No partitions in {partitions_name!r} yet: no prompt file has been added."
            )
        scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
        stamp = scheduled.isoformat()
        context.log.info(f"Requesting {len(partitions)} run(s) of {job.name} for {stamp}.")
        return [
            dg.RunRequest(
                run_key=f"{stamp}:{partition}",
                partition_key=partition,
                tags={TRIGGER_TAG: "schedule", SCHEDULED_FOR_TAG: stamp},
            )
            for partition in partitions
        ]

    return _batch_schedule
