"""Task durations kept in S3 between runs, so a run polls on a learned plan from its first task.

Polling learns when tasks end from the durations of earlier tasks of the same model
(:class:`~dagster_kie.polling.DurationEstimator`). Within one run that starts cold: a batch's
first create window (20 tasks at kie.ai's limits) is polled on kie.ai's fixed schedule, and with
tasks longer than the window the next one learns from the first one's shortest tasks only. A
Dagster deployment runs batch after batch, each in a new process, so the batch engine keeps the
most recent durations per model in one small JSON object and the next run starts from them:

``{prefix}/_polling/durations.json`` ::

    {"version": 1, "models": {"ideogram/v3-text-to-image": {
        "updated_at": "2026-11-23T21:00:00+00:00", "seconds": [11.52, 9.87, ...]}}}

It is only a hint: a missing, unreadable or stale object (older than ``max_age_s``) means a cold
start, never a failed run, and a failed write is logged and ignored. Concurrent runs may
overwrite each other's update (last writer wins); the next run still starts from recent
durations. Within a run the estimator keeps learning, so durations that drift replace the stored
ones as tasks end.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from dagster_kie.polling import DurationEstimator
from dagster_kie.storage import is_not_found, join_key, normalize_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DURATIONS_KEY", "DurationHistory"]

DURATIONS_KEY = "_polling/durations.json"
"""Where, under the prefix, the recent task durations are kept."""

logger = logging.getLogger("dagster_kie")

_VERSION = 1


class DurationHistory:
    """Recent task durations per model in S3, loaded before a run and saved after it.

    Args:
        client: A boto3 S3 client.
        bucket: The bucket.
        prefix: The prefix images are stored under (the object is ``{prefix}/_polling/...``).
        max_age_s: Durations saved longer ago than this are not used (the service may have
            changed since).
        keep: Durations kept per model (the estimator's ``history``).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "kie",
        *,
        max_age_s: float = 7 * 24 * 3600.0,
        keep: int = 256,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = join_key(normalize_prefix(prefix), DURATIONS_KEY)
        self.max_age_s = max_age_s
        self.keep = keep

    def __repr__(self) -> str:
        return f"DurationHistory(s3://{self.bucket}/{self.key})"

    def load(self, *, now: datetime | None = None) -> dict[str, list[float]]:
        """The stored durations per model, oldest first; ``{}`` when there are none usable."""
        stored = self._read()
        now = now or datetime.now(timezone.utc)
        oldest = now - timedelta(seconds=self.max_age_s)
        usable: dict[str, list[float]] = {}
        for model, entry in stored.items():
            updated = _timestamp(entry.get("updated_at"))
            seconds = _durations(entry.get("seconds"))
            if updated is not None and updated >= oldest and seconds:
                usable[model] = seconds[-self.keep :]
        return usable

    def seed(self, estimator: DurationEstimator, models: Iterable[str]) -> dict[str, list[float]]:
        """Start ``estimator`` from the stored durations of ``models`` (those it knows nothing
        about yet).

        Returns:
            The stored durations of every model (what :meth:`save` compares against).
        """
        models = list(dict.fromkeys(models))
        if not models:
            return {}
        loaded = self.load()
        for model in models:
            if model in loaded:
                estimator.seed(model, loaded[model])
        return loaded

    def save(
        self,
        estimator: DurationEstimator,
        models: Iterable[str],
        loaded: Mapping[str, Sequence[float]],
    ) -> bool:
        """Store the estimator's recent durations of ``models``, if they changed since ``loaded``;
        other models' entries are kept. Returns whether anything was written."""
        changed = {
            model: recent[-self.keep :]
            for model in dict.fromkeys(models)
            if (recent := estimator.recent(model)) and recent != list(loaded.get(model, ()))
        }
        if not changed:
            return False
        stored = self._read()
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for model, seconds in changed.items():
            stored[model] = {"updated_at": stamp, "seconds": [round(s, 3) for s in seconds]}
        body = json.dumps({"version": _VERSION, "models": stored}, sort_keys=True)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body.encode("utf-8"),
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "could not save task durations to s3://%s/%s: %s", self.bucket, self.key, error
            )
            return False
        return True

    def _read(self) -> dict[str, dict[str, Any]]:
        """The stored entries per model as they are (``{}`` when missing or unreadable)."""
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key)
            data = json.loads(reply["Body"].read())
        except ClientError as error:
            if not is_not_found(error):
                logger.warning("could not read s3://%s/%s: %s", self.bucket, self.key, error)
            return {}
        except (BotoCoreError, ValueError) as error:
            logger.warning("ignoring s3://%s/%s: %s", self.bucket, self.key, error)
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict) or data.get("version") != _VERSION:
            logger.warning(
                "ignoring s3://%s/%s: not a version %s file", self.bucket, self.key, _VERSION
            )
            return {}
        return {str(m): e for m, e in models.items() if isinstance(e, dict)}


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _durations(value: object) -> list[float]:
    if not isinstance(value, list):
        return []
    return [
        float(v)
        for v in value
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    ]
