"""Sensors: pick up new prompt files, and retry runs that failed for a passing reason.

:func:`build_prompt_sensor` watches a :class:`~dagster_kie.sources.PromptSource` (a folder or an
S3 prefix). Every new or changed prompt file becomes a dynamic partition and one run request; a
file that cannot be used is reported once in the sensor's log and skipped until it changes.

:func:`build_retry_sensor` watches failed runs of the generation job and requests a fresh run of
the same partition when the failure was retryable (rate limit, maintenance, server error, wait
timeout). Re-running a partition never pays twice for a request: the task ledger skips every
request that was already submitted.

Example:
    .. code-block:: python

        import dagster as dg
        from dagster_kie import (
            LocalPromptSource, build_kie_assets, build_prompt_sensor, build_retry_sensor,
        )

        source = LocalPromptSource("prompts")
        kie = build_kie_assets(source=source, bucket="images")
        defs = dg.Definitions(
            assets=kie.assets,
            jobs=[kie.job],
            sensors=[
                build_prompt_sensor(job=kie.job, partitions_def=kie.partitions_def, source=source),
                build_retry_sensor(job=kie.job),
            ],
        )
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import dagster as dg

from dagster_kie.prompts import PromptFileError, RecordDefaults, parse_prompt_file
from dagster_kie.sources import PromptSource

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

    KieJob: TypeAlias = dg.JobDefinition | UnresolvedAssetJobDefinition

__all__ = [
    "ATTEMPT_TAG",
    "FINGERPRINT_TAG",
    "PROMPT_FILE_TAG",
    "REQUESTS_TAG",
    "RETRYABLE_TAG",
    "RETRY_OF_TAG",
    "TRIGGER_TAG",
    "build_prompt_sensor",
    "build_retry_sensor",
    "decode_prompt_cursor",
    "encode_prompt_cursor",
    "failure_is_retryable",
]

PROMPT_FILE_TAG = "dagster-kie/prompt-file"
"""Run tag: the prompt file (partition key) a sensor run was requested for."""
FINGERPRINT_TAG = "dagster-kie/fingerprint"
"""Run tag: the fingerprint of the file version a sensor run was requested for."""
REQUESTS_TAG = "dagster-kie/requests"
"""Run tag: how many valid requests the file held when the run was requested."""
TRIGGER_TAG = "dagster-kie/trigger"
"""Run tag: what requested the run (``sensor``, ``retry`` or ``schedule``)."""
RETRYABLE_TAG = "dagster-kie/retryable"
"""Run tag set by the asset layer on a failed run: ``true`` when retrying may succeed."""
RETRY_OF_TAG = "dagster-kie/retry-of"
"""Run tag: the id of the failed run a retry run replaces."""
ATTEMPT_TAG = "dagster-kie/attempt"
"""Run tag: the attempt number of a retry run (the original run is attempt 1)."""

_PARTITION_TAG = "dagster/partition"
_CURSOR_PREFIX = "kie1:"
_DIGEST_SIZE = 8
_RETRY_CURSOR_PREFIX = "kie-retry1:"
_TICK_TIME_BUDGET_SECONDS = 30.0
"""Stop reading files after this long in one tick (Dagster gives a tick 60 s); the rest wait."""
_MAX_LOGGED_INVALID = 3
_INVALID_PARTITION_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")
"""What Dagster refuses in a partition key (``dagster``'s ``INVALID_PARTITION_SUBSTRINGS``)."""


# --------------------------------------------------------------------------------------------
# Prompt-file cursor
# --------------------------------------------------------------------------------------------


def _version_digest(name: str, fingerprint: str) -> bytes:
    """A 64-bit digest of one file version (its name and fingerprint)."""
    return hashlib.blake2b(
        f"{name}\0{fingerprint}".encode("utf-8", "surrogatepass"), digest_size=_DIGEST_SIZE
    ).digest()


def encode_prompt_cursor(handled: Mapping[str, str]) -> str:
    """Encode the file versions a prompt sensor has handled as a compact cursor string.

    The cursor is ``"kie1:"`` followed by the URL-safe base64 of the sorted 64-bit BLAKE2b digests
    of every ``name\\0fingerprint`` pair: 8 bytes a file whatever the names and fingerprints look
    like (10,000 files take about 107 KB). A file version is *handled* when its digest is in the
    set; a renamed, changed or copied-in file has a new digest, and a deleted file's digest drops
    out of the next cursor.

    Args:
        handled: ``{name: fingerprint}`` of the file versions already handled.

    Returns:
        The cursor string.
    """
    digests = sorted({_version_digest(name, fp) for name, fp in handled.items()})
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(b"".join(digests)).decode("ascii")


def decode_prompt_cursor(cursor: str) -> frozenset[bytes]:
    """Decode a cursor made by :func:`encode_prompt_cursor` into its set of version digests.

    Args:
        cursor: The cursor string.

    Returns:
        The digests of the handled file versions.

    Raises:
        ValueError: when the cursor is not one this version wrote (old format or corrupt).
    """
    if not cursor.startswith(_CURSOR_PREFIX):
        raise ValueError(f"unknown cursor format (expected the prefix {_CURSOR_PREFIX!r})")
    try:
        raw = base64.urlsafe_b64decode(cursor[len(_CURSOR_PREFIX) :].encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"cursor is not base64: {exc}") from None
    if len(raw) % _DIGEST_SIZE:
        raise ValueError(f"cursor length {len(raw)} is not a multiple of {_DIGEST_SIZE}")
    return frozenset(raw[i : i + _DIGEST_SIZE] for i in range(0, len(raw), _DIGEST_SIZE))


def _invalid_partition_key(name: str) -> str | None:
    for substring in _INVALID_PARTITION_SUBSTRINGS:
        if substring in name:
            return f"its name contains {substring!r}, which Dagster refuses in a partition key"
    return None


@dataclass
class _TickPlan:
    """What one prompt-sensor tick found and decided."""

    handled: dict[str, str] = field(default_factory=dict)
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deferred: int = 0


def _evaluate_prompt_files(
    context: dg.SensorEvaluationContext,
    *,
    source: PromptSource,
    partitions_name: str,
    partitions_def: dg.DynamicPartitionsDefinition,
    max_runs_per_tick: int,
    record_defaults: RecordDefaults | None,
) -> dg.SensorResult:
    log = context.log
    started = time.monotonic()
    known: frozenset[bytes] = frozenset()
    if context.cursor:
        try:
            known = decode_prompt_cursor(context.cursor)
        except ValueError as exc:
            log.warning(
                f"The sensor's cursor could not be read ({exc}); starting fresh: every prompt "
                f"file in {source.description} counts as new. Run keys stop runs already "
                "requested from being requested again, and the task ledger stops any request "
                "from being paid for twice."
            )

    scanned = source.scan()
    plan = _TickPlan()
    pending: list[tuple[str, str]] = []
    for name, fingerprint in scanned.items():
        if _version_digest(name, fingerprint) in known:
            plan.handled[name] = fingerprint
        else:
            pending.append((name, fingerprint))
    pending.sort()

    existing: set[str] = set()
    if pending:
        existing = set(context.instance.get_dynamic_partitions(partitions_name))

    for index, (name, fingerprint) in enumerate(pending):
        if len(plan.run_requests) >= max_runs_per_tick or (
            time.monotonic() - started > _TICK_TIME_BUDGET_SECONDS
        ):
            plan.deferred = len(pending) - index
            break
        _evaluate_one(context, source, name, fingerprint, name in existing, plan, record_defaults)

    if plan.new_partitions:
        log.info(f"Adding {len(plan.new_partitions)} partition(s): {_sample(plan.new_partitions)}")
    if plan.deferred:
        log.info(
            f"{plan.deferred} more new or changed prompt file(s) wait for the next tick "
            f"(at most {max_runs_per_tick} runs a tick)."
        )
    cursor = encode_prompt_cursor(plan.handled)
    if not plan.run_requests:
        reason = f"No new or changed prompt files with valid requests in {source.description}"
        if plan.skipped:
            reason += f" ({len(plan.skipped)} skipped: {_sample(plan.skipped)})"
        if plan.deferred:
            reason += f" ({plan.deferred} left for the next tick)"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)
    return dg.SensorResult(
        run_requests=plan.run_requests,
        dynamic_partitions_requests=(
            [partitions_def.build_add_request(plan.new_partitions)] if plan.new_partitions else []
        ),
        cursor=cursor,
    )


def _evaluate_one(
    context: dg.SensorEvaluationContext,
    source: PromptSource,
    name: str,
    fingerprint: str,
    partition_exists: bool,
    plan: _TickPlan,
    record_defaults: RecordDefaults | None,
) -> None:
    log = context.log
    problem = _invalid_partition_key(name)
    if problem:
        log.warning(f"Skipping prompt file {name!r}: {problem}. Rename the file.")
        plan.handled[name] = fingerprint
        plan.skipped.append(name)
        return
    try:
        content = source.read(name)
    except FileNotFoundError:
        log.info(f"Prompt file {name!r} disappeared before it could be read.")
        return
    except Exception as exc:
        # Not remembered: the file is tried again next tick.
        log.warning(
            f"Could not read prompt file {name!r} from {source.description} "
            f"({type(exc).__name__}: {exc}); trying again next tick."
        )
        return
    try:
        batch = parse_prompt_file(name, content, defaults=record_defaults)
    except PromptFileError as exc:
        log.warning(
            f"Skipping prompt file {name!r}: {exc.reason}. It is tried again once it changes."
        )
        plan.handled[name] = fingerprint
        plan.skipped.append(name)
        return
    if batch.invalid:
        details = "; ".join(str(record) for record in batch.invalid[:_MAX_LOGGED_INVALID])
        more = len(batch.invalid) - _MAX_LOGGED_INVALID
        log.warning(
            f"Prompt file {name!r}: {len(batch.invalid)} invalid record(s) will not be "
            f"submitted: {details}" + (f" (and {more} more)" if more > 0 else "")
        )
    if not batch.parsed:
        log.warning(
            f"Skipping prompt file {name!r}: it has no valid prompt records. "
            "It is tried again once it changes."
        )
        plan.handled[name] = fingerprint
        plan.skipped.append(name)
        return
    if not partition_exists:
        plan.new_partitions.append(name)
    plan.run_requests.append(
        dg.RunRequest(
            partition_key=name,
            run_key=f"{name}@{fingerprint}",
            tags={
                PROMPT_FILE_TAG: name,
                FINGERPRINT_TAG: fingerprint,
                REQUESTS_TAG: str(len(batch.parsed)),
                TRIGGER_TAG: "sensor",
            },
        )
    )
    plan.handled[name] = fingerprint
    log.info(
        f"Requesting a run for {'changed' if partition_exists else 'new'} prompt file "
        f"{name!r} ({len(batch.parsed)} request(s), {batch.num_images} image(s))."
    )


def _sample(names: Iterable[str], limit: int = 5) -> str:
    items = list(names)
    text = ", ".join(repr(name) for name in items[:limit])
    return text + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def _partitions_name(partitions_def: dg.DynamicPartitionsDefinition) -> str:
    """The name of the dynamic partitions (``ValueError`` when they have none)."""
    if not partitions_def.name:
        raise ValueError("partitions_def must be a DynamicPartitionsDefinition with a name")
    return partitions_def.name


def build_prompt_sensor(
    *,
    job: KieJob,
    partitions_def: dg.DynamicPartitionsDefinition,
    source: PromptSource,
    name: str = "kie_prompt_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
    max_runs_per_tick: int = 200,
    record_defaults: RecordDefaults | None = None,
) -> dg.SensorDefinition:
    """Build a sensor that turns every new or changed prompt file into a partition and a run.

    Each tick lists the source (no file is read to list it) and compares every file's
    fingerprint with the cursor. A new or changed file is read and parsed: when it holds at least
    one valid request, its partition is added (if missing) and a run is requested with the run key
    ``"<name>@<fingerprint>"``, so one file version is never requested twice. A file that cannot
    be used (bad encoding, bad JSON, empty, too large, no valid record) is reported once with
    ``context.log.warning`` and skipped until it changes. Every file name is tracked, so a file
    copied in with an old modification time is still new. Deleted files drop out of the cursor;
    their partitions stay.

    Args:
        job: The job that materializes one partition (e.g. ``build_kie_assets(...).job``, an
            unresolved asset job is fine).
        partitions_def: The dynamic partitions of that job: one partition per prompt file.
        source: Where the prompt files are (:class:`~dagster_kie.sources.LocalPromptSource` or
            :class:`~dagster_kie.sources.S3PromptSource`).
        name: The sensor's name.
        minimum_interval_seconds: Seconds between ticks.
        default_status: Whether the sensor runs as soon as it is loaded.
        description: Shown in the UI; a default names the source.
        max_runs_per_tick: At most this many files are requested per tick; the rest wait for the
            next tick (the cursor only advances over handled files).
        record_defaults: Default model and input fields applied to every record when a file
            is parsed to check it (pass the same as to ``build_kie_assets``).

    Returns:
        The sensor definition.
    """
    if max_runs_per_tick < 1:
        raise ValueError("max_runs_per_tick must be at least 1")
    partitions_name = _partitions_name(partitions_def)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description
        or f"Requests a run of {job.name} for every new or changed prompt file in "
        f"{source.description}.",
    )
    def _prompt_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return _evaluate_prompt_files(
            context,
            source=source,
            partitions_name=partitions_name,
            partitions_def=partitions_def,
            max_runs_per_tick=max_runs_per_tick,
            record_defaults=record_defaults,
        )

    return _prompt_sensor


# --------------------------------------------------------------------------------------------
# Retry sensor
# --------------------------------------------------------------------------------------------


def _metadata_flag(value: object) -> bool | None:
    raw = getattr(value, "value", value)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    return None


def failure_is_retryable(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[bool, str]:
    """Decide whether a failed run failed for a reason that may pass.

    The run tag ``dagster-kie/retryable`` decides when present. Otherwise the run's step failures
    decide: retryable when at least one carries the metadata ``retryable: True`` (set by the
    asset layer on ``dagster.Failure``) and none carries ``False`` or no marker at all.

    Args:
        instance: The Dagster instance holding the run's event log.
        run: The failed run.

    Returns:
        Whether to retry, and why, for the sensor's log.
    """
    tag = run.tags.get(RETRYABLE_TAG)
    if tag is not None:
        retryable = tag.strip().lower() == "true"
        return retryable, f"run tag {RETRYABLE_TAG}={tag}"
    flags: list[tuple[str, bool | None]] = []
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None:
            continue
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        flag = _metadata_flag(user.metadata.get("retryable")) if user is not None else None
        flags.append((event.step_key or "?", flag))
    if not flags:
        return False, "no step failed with a retryable error (the run failed outside its steps)"
    refused = [step for step, flag in flags if flag is False]
    if refused:
        return False, f"step(s) {', '.join(refused)} failed with a non-retryable error"
    unmarked = [step for step, flag in flags if flag is None]
    if unmarked:
        return False, f"step(s) {', '.join(unmarked)} failed with an error not marked retryable"
    return True, f"step(s) {', '.join(step for step, _ in flags)} failed with retryable errors"


def _attempt(run: dg.DagsterRun) -> int:
    try:
        return max(1, int(run.tags.get(ATTEMPT_TAG, "1")))
    except ValueError:
        return 1


def _carried_tags(run: dg.DagsterRun) -> dict[str, str]:
    dropped = {RETRYABLE_TAG, RETRY_OF_TAG, ATTEMPT_TAG, TRIGGER_TAG}
    return {
        key: value
        for key, value in run.tags.items()
        if not key.startswith(("dagster/", ".dagster/")) and key not in dropped
    }


def _decode_retry_cursor(cursor: str | None) -> int | None:
    if not cursor or not cursor.startswith(_RETRY_CURSOR_PREFIX):
        return None
    try:
        return int(cursor[len(_RETRY_CURSOR_PREFIX) :])
    except ValueError:
        return None


def build_retry_sensor(
    *,
    job: KieJob,
    name: str = "kie_retry_sensor",
    max_attempts: int = 3,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
    lookback_seconds: float = 24 * 3600,
    max_runs_per_tick: int = 100,
) -> dg.SensorDefinition:
    """Build a sensor that re-runs partitions whose run failed for a retryable reason.

    The sensor reads run-failure events of ``job`` from the instance's event log (its cursor is
    the last event's storage id, so no failure is seen twice). A failed run is retried when its
    failure was retryable (see :func:`failure_is_retryable`): a rate limit, maintenance, a server
    error, a wait timeout, or a generation failure that is not a content-policy rejection. Bad
    keys, missing credits and invalid requests are never retried. The retry is a run of the same
    partition (and asset selection) with the run key ``"retry:<failed run id>"`` and the tags
    ``dagster-kie/retry-of`` and ``dagster-kie/attempt``. It is not requested when a newer run of
    the partition exists (it supersedes the failed one) or when the partition has had
    ``max_attempts`` attempts. Re-running is cheap: requests already submitted are not paid again.

    Args:
        job: The job whose failed runs are retried (an unresolved asset job is fine).
        name: The sensor's name.
        max_attempts: Attempts per partition, counting the original run (3 = up to 2 retries).
        minimum_interval_seconds: Seconds between ticks.
        default_status: Whether the sensor runs as soon as it is loaded.
        description: Shown in the UI.
        lookback_seconds: On its first tick (no cursor) the sensor considers failures this recent.
        max_runs_per_tick: At most this many retries are requested per tick; the rest wait.

    Returns:
        The sensor definition.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if max_runs_per_tick < 1:
        raise ValueError("max_runs_per_tick must be at least 1")
    job_name = job.name

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description
        or f"Retries runs of {job_name} that failed for a retryable reason "
        f"(at most {max_attempts} attempts a partition).",
    )
    def _retry_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        after_storage_id = _decode_retry_cursor(context.cursor)
        if context.cursor and after_storage_id is None:
            context.log.warning(
                f"The sensor's cursor {context.cursor[:40]!r} could not be read; looking back "
                f"{lookback_seconds:.0f} s for failed runs (run keys prevent double retries)."
            )
        records_filter = dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE,
            after_storage_id=after_storage_id,
            after_timestamp=(time.time() - lookback_seconds) if after_storage_id is None else None,
        )
        result = instance.fetch_run_status_changes(
            records_filter, limit=max(500, 5 * max_runs_per_tick), ascending=True
        )
        run_requests: list[dg.RunRequest] = []
        last_storage_id = after_storage_id
        for record in result.records:
            if len(run_requests) >= max_runs_per_tick:
                break
            last_storage_id = record.storage_id
            entry = record.event_log_entry
            if entry.job_name != job_name:
                continue
            request = _retry_request(context, job_name, entry.run_id, max_attempts)
            if request is not None:
                run_requests.append(request)

        cursor = (
            f"{_RETRY_CURSOR_PREFIX}{last_storage_id}"
            if last_storage_id is not None
            else context.cursor
        )
        if not run_requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"No retryable failed runs of {job_name}"),
                cursor=cursor,
            )
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)

    return _retry_sensor


def _retry_request(
    context: dg.SensorEvaluationContext, job_name: str, run_id: str, max_attempts: int
) -> dg.RunRequest | None:
    instance = context.instance
    log = context.log
    run = instance.get_run_by_id(run_id)
    if run is None or run.status != dg.DagsterRunStatus.FAILURE:
        return None
    partition = run.tags.get(_PARTITION_TAG)
    label = f"run {run_id}" + (f" (partition {partition!r})" if partition else "")
    retryable, why = failure_is_retryable(instance, run)
    if not retryable:
        log.info(f"Not retrying {label}: {why}.")
        return None
    attempt = _attempt(run)
    if attempt >= max_attempts:
        log.warning(
            f"Not retrying {label}: it was attempt {attempt} of {max_attempts}; giving up. "
            "Re-run the partition by hand once the cause has passed."
        )
        return None
    if partition:
        newest = instance.get_runs(
            dg.RunsFilter(job_name=job_name, tags={_PARTITION_TAG: partition}), limit=1
        )
        if newest and newest[0].run_id != run_id:
            log.info(
                f"Not retrying {label}: a newer run {newest[0].run_id} of the partition exists."
            )
            return None
    log.info(f"Retrying {label} ({why}): attempt {attempt + 1} of {max_attempts}.")
    return dg.RunRequest(
        run_key=f"retry:{run_id}",
        partition_key=partition,
        asset_selection=list(run.asset_selection) if run.asset_selection else None,
        asset_check_keys=(
            list(run.asset_check_selection)
            if run.asset_selection and run.asset_check_selection is not None
            else None
        ),
        tags={
            **_carried_tags(run),
            RETRY_OF_TAG: run_id,
            ATTEMPT_TAG: str(attempt + 1),
            TRIGGER_TAG: "retry",
        },
    )
