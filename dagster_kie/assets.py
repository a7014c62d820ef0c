"""Asset factory: prompt files → validated requests → kie.ai tasks → images in S3.

Example:
    .. code-block:: python

        import dagster as dg
        from dagster_aws.s3 import S3Resource
        from dagster_kie import KieResource, LocalPromptSource, build_kie_assets

        kie_assets = build_kie_assets(source=LocalPromptSource("prompts"), bucket="my-images")
        defs = dg.Definitions(
            assets=kie_assets.assets,
            jobs=[kie_assets.job],
            resources={"kie": KieResource(api_key=dg.EnvVar("KIE_API_KEY")), "s3": S3Resource()},
        )

One dynamic partition per prompt file: a run materializes one file's requests, submitting and
waiting on all of them concurrently inside the run (one run per prompt could not keep up with the
API on two cores). Per-request lineage lives in the manifests and in the metadata.

Spend control: ``KieResource(credit_budget_per_run=..., credit_budget_per_day=...)`` makes each run
reserve the expected cost of a request before it is submitted; when the next one would cross a
budget (or the account balance read at the start), the run stops submitting, finishes and stores
what is in flight, and fails (not retried) with a message naming the budget and what was spent.
"""

import asyncio
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from dagster_kie.batch import BatchReport, BatchRunner, is_transient_error
from dagster_kie.budget import DailySpendLog, SpendGuard
from dagster_kie.callbacks import CallbackInbox
from dagster_kie.checks import IMAGE_CHECKS, check_results
from dagster_kie.client import AsyncKieClient
from dagster_kie.duration_history import DurationHistory
from dagster_kie.errors import KieError
from dagster_kie.ledger import TaskLedger
from dagster_kie.metadata import images_metadata, requests_metadata, tasks_metadata
from dagster_kie.prompts import ParsedRequest, RecordDefaults, parse_prompt_file
from dagster_kie.resource import KieResource
from dagster_kie.sources import PromptSource
from dagster_kie.storage import ImageStore

__all__ = ["KieAssets", "build_kie_assets"]

RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class KieAssets:
    """What :func:`build_kie_assets` builds: pass its parts to ``dg.Definitions``."""

    assets: list[dg.AssetsDefinition]
    job: UnresolvedAssetJobDefinition
    partitions_def: dg.DynamicPartitionsDefinition
    requests_key: dg.AssetKey
    tasks_key: dg.AssetKey
    images_key: dg.AssetKey


def _snapshot_key(prefix: str, partition: str) -> str:
    digest = hashlib.sha256(partition.encode("utf-8")).hexdigest()[:24]
    return f"{prefix.strip('/')}/_requests/{digest}.json"


def build_kie_assets(
    *,
    source: PromptSource,
    bucket: str,
    prefix: str = "kie",
    key_prefix: Sequence[str] = ("kie",),
    partitions_def: dg.DynamicPartitionsDefinition | None = None,
    group_name: str = "kie",
    pool: str | None = "kie",
    job_name: str = "kie_generate_images",
    kie_resource_key: str = "kie",
    s3_resource_key: str = "s3",
    max_in_flight: int = 2000,
    max_downloads: int = 16,
    resubmit_unconfirmed: bool = False,
    retry_policy: dg.RetryPolicy | None = RETRY_POLICY,
    record_defaults: RecordDefaults | None = None,
    executor_def: dg.ExecutorDefinition | None = dg.in_process_executor,
) -> KieAssets:
    """Build the generation asset graph for prompt files from ``source``.

    Args:
        source: Where prompt files come from (a folder or an S3 prefix).
        bucket: S3 bucket for images, manifests, the task ledger and callbacks.
        prefix: Key prefix inside the bucket (``KIE_S3_PREFIX``).
        key_prefix: Asset key prefix.
        partitions_def: The dynamic partitions (one per prompt file); made for you if omitted.
        group_name: Asset group shown in the UI.
        pool: Dagster concurrency pool bounding kie.ai use across runs (``None`` for none).
        job_name: Name of the job that materializes one partition.
        kie_resource_key: Resource key of the :class:`KieResource`.
        s3_resource_key: Resource key of the ``dagster_aws.s3.S3Resource``.
        max_in_flight: Requests processed concurrently inside one run.
        max_downloads: Concurrent image downloads/uploads inside one run.
        resubmit_unconfirmed: Resend requests whose earlier createTask was never confirmed
            (may pay twice for them; see :class:`~dagster_kie.batch.BatchRunner`).
        retry_policy: Dagster's in-run retries of the generation step after a retryable failure
            (``None``: leave retries to a new run, e.g. the retry sensor's).
        record_defaults: Default model and input fields applied to every prompt record.
        executor_def: Executor of the job. Default: in-process: both steps run in the run
            worker, saving a step subprocess launch (1.5-2 s each) per run; the work is I/O
            bound and async, and the ``pool`` limit still applies. ``None``: the executor of
            ``dg.Definitions`` (Dagster's default: a subprocess per step).
    """
    partitions = partitions_def or dg.DynamicPartitionsDefinition(name="kie_prompt_files")
    requests_key = dg.AssetKey([*key_prefix, "generation_requests"])
    tasks_key = dg.AssetKey([*key_prefix, "submitted_tasks"])
    images_key = dg.AssetKey([*key_prefix, "generated_images"])
    resource_keys = {kie_resource_key, s3_resource_key}

    def stores(context: dg.OpExecutionContext) -> tuple[ImageStore, TaskLedger, Any]:
        # S3Resource hands op contexts its boto3 client directly; other resources hand themselves.
        resource = getattr(context.resources, s3_resource_key)
        s3 = resource.get_client() if hasattr(resource, "get_client") else resource
        return ImageStore(s3, bucket, prefix), TaskLedger(s3, bucket, prefix), s3

    @dg.asset(
        key=requests_key,
        partitions_def=partitions,
        group_name=group_name,
        required_resource_keys=resource_keys,
        kinds={"python", "s3"},
        description=(
            f"Prompt records from {source.description}, validated into kie.ai requests. "
            "Invalid records are reported (file, line, field) and never submitted."
        ),
    )
    def generation_requests(context: dg.AssetExecutionContext) -> dg.MaterializeResult[None]:
        partition = context.partition_key
        try:
            batch = parse_prompt_file(partition, source.read(partition), defaults=record_defaults)
        except FileNotFoundError:
            raise dg.Failure(
                f"prompt file {partition!r} is no longer in {source.description}",
                allow_retries=False,
            ) from None
        except ValueError as error:  # PromptFileError (unreadable), or a name leaving the source
            raise dg.Failure(str(error), allow_retries=False) from None
        for invalid in batch.invalid:
            context.log.warning(f"invalid record, not submitted: {invalid}")
        _, _, s3 = stores(context.op_execution_context)
        snapshot = [
            {
                "request_id": item.request_id,
                "line": item.line,
                "body": item.request.model_dump(mode="json", exclude_none=True),
            }
            for item in batch.parsed
        ]
        s3.put_object(
            Bucket=bucket,
            Key=_snapshot_key(prefix, partition),
            Body=json.dumps({"file": partition, "requests": snapshot}).encode("utf-8"),
            ContentType="application/json",
        )
        return dg.MaterializeResult(metadata=requests_metadata(batch))

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                tasks_key,
                deps=[requests_key],
                partitions_def=partitions,
                group_name=group_name,
                kinds={"python"},
                skippable=True,
                description="One kie.ai task per request, recorded in the S3 ledger the moment "
                "it exists, so no request is ever paid for twice.",
            ),
            dg.AssetSpec(
                images_key,
                deps=[tasks_key],
                partitions_def=partitions,
                group_name=group_name,
                kinds={"s3"},
                skippable=True,
                description="Every result image streamed into S3 with a JSON manifest "
                "(request, task id, seed, credits, sha256, dimensions, source URL).",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset=images_key, description=text)
            for name, text in IMAGE_CHECKS.items()
        ],
        can_subset=True,
        pool=pool,
        retry_policy=retry_policy,
        required_resource_keys=resource_keys,
        name=f"{'_'.join(key_prefix)}_generate" if key_prefix else "kie_generate",
    )
    def generate(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[None]]:
        partition = context.partition_key
        op_context = context.op_execution_context
        store, ledger, s3 = stores(op_context)
        kie: KieResource = getattr(context.resources, kie_resource_key)
        requests = _load_snapshot(s3, bucket, prefix, partition)
        submit_only = images_key not in context.selected_asset_keys
        inbox = CallbackInbox(s3, bucket, prefix) if kie.callback_url else None

        guards: list[SpendGuard] = []

        async def run() -> BatchReport:
            async with kie.get_async_client() as client:
                spend = await _spend_guard(kie, client, context, s3, bucket, prefix)
                guards.append(spend)
                runner = BatchRunner(
                    client=client,
                    store=store,
                    ledger=ledger,
                    inbox=inbox,
                    callback_url=kie.callback_url,
                    max_in_flight=max_in_flight,
                    max_downloads=max_downloads,
                    resubmit_unconfirmed=resubmit_unconfirmed,
                    spend=spend,
                    confirm_timeout_s=kie.wait_timeout_seconds,
                    on_progress=context.log.info,
                    durations=DurationHistory(s3, bucket, prefix),
                )
                return await runner.run(requests, submit_only=submit_only)

        try:
            report = asyncio.run(run())
        except (BotoCoreError, ClientError) as error:
            # S3 failed outside any one request (reading the ledger or the day's spend).
            retryable = is_transient_error(error)
            raise dg.Failure(
                f"S3 (bucket {bucket!r}) failed before the batch could start, nothing was "
                f"submitted: {type(error).__name__}: {error}",
                metadata={"retryable": retryable},
                allow_retries=retryable,
            ) from None
        spend = guards[0]
        spend.flush()
        for failure in report.failures:
            context.log.warning(
                f"{failure.file}:{failure.line} request {failure.request_id} "
                f"(task {failure.task_id}): {failure.error}"
            )
        if tasks_key in context.selected_asset_keys:
            metadata = tasks_metadata(report)
            if spend.budget.enabled:
                metadata.update(spend.summary())
            yield dg.MaterializeResult(asset_key=tasks_key, metadata=metadata)
        if not submit_only:
            yield dg.MaterializeResult(
                asset_key=images_key,
                metadata=images_metadata(report, store),
                check_results=check_results(report, images_key),
            )
        over_budget = [f for f in report.failures if f.error_type == "BudgetExceededError"]
        if over_budget:
            raise dg.Failure(
                f"{len(over_budget)} of {len(report.outcomes)} requests were not submitted: "
                f"{over_budget[0].error}. This run spent {spend.spent:g} credits "
                f"({report.tasks_created} tasks created, {report.count('stored')} requests "
                f"stored, {len(report.failures) - len(over_budget)} other failures). Raise the "
                "budget (KieResource credit_budget_per_run / credit_budget_per_day) or wait for "
                "the next day, then run the partition again: nothing stored is paid twice.",
                metadata={
                    "retryable": False,
                    "kie.credits_spent": spend.spent,
                    "kie.budget_per_run": spend.budget.per_run,
                    "kie.budget_per_day": spend.budget.per_day,
                    "kie.requests_not_submitted": len(over_budget),
                    "failed_requests": dg.MetadataValue.json(
                        {f.request_id: f.error for f in report.failures[:200]}
                    ),
                },
                allow_retries=False,
            )
        if report.failures:
            # Worth another run while any request may still succeed: a re-execution never pays
            # twice and skips the requests that cannot (permanent failures, unconfirmed tasks).
            again = [f for f in report.failures if f.retryable]
            retryable = report.any_retryable
            stuck = len(report.failures) - len(again)
            first = (again or report.failures)[0]
            raise dg.Failure(
                f"{len(report.failures)} of {len(report.outcomes)} requests did not finish "
                f"(retryable: {retryable}); the others are stored. {len(again)} may succeed if "
                f"the partition runs again, {stuck} will not (later runs skip them, see "
                f"failed_requests). First: {first.file}:{first.line}: {first.error}",
                metadata={
                    "retryable": retryable,
                    "failed_requests": dg.MetadataValue.json(
                        {f.request_id: f.error for f in report.failures[:200]}
                    ),
                },
                allow_retries=retryable,
            )

    job = dg.define_asset_job(
        job_name,
        selection=dg.AssetSelection.assets(requests_key, tasks_key, images_key),
        description="Materialize one prompt file: validate, submit, wait, store in S3.",
        executor_def=executor_def,
    )
    return KieAssets(
        assets=[generation_requests, generate],
        job=job,
        partitions_def=partitions,
        requests_key=requests_key,
        tasks_key=tasks_key,
        images_key=images_key,
    )


async def _spend_guard(
    kie: KieResource,
    client: AsyncKieClient,
    context: dg.AssetExecutionContext,
    s3: Any,
    bucket: str,
    prefix: str,
) -> SpendGuard:
    """This run's credit guard: the resource's budget, the day's spend in S3, the balance."""
    try:
        balance: float | None = await client.get_credits()
    except KieError as error:
        balance = None
        context.log.warning(f"could not read the credit balance ({error}); not checking it")
    budget = kie.credit_budget()
    log = DailySpendLog(s3, bucket, prefix) if budget.per_day is not None else None
    return await asyncio.to_thread(
        SpendGuard, budget, run_id=context.run.run_id, log=log, balance=balance
    )


def _load_snapshot(s3: Any, bucket: str, prefix: str, partition: str) -> list[ParsedRequest]:
    from dagster_kie.models import parse_request

    try:
        reply = s3.get_object(Bucket=bucket, Key=_snapshot_key(prefix, partition))
    except s3.exceptions.NoSuchKey:
        raise dg.Failure(
            f"no validated requests for partition {partition!r}: materialize "
            "generation_requests for it first",
            allow_retries=False,
        ) from None
    document = json.loads(reply["Body"].read())
    return [
        ParsedRequest(request=parse_request(item["body"]), file=partition, line=item["line"])
        for item in document["requests"]
    ]
