"""Where a dagster-kie run's wall time went, from what it left behind.

- The manifests in S3 carry each task's ``created_at`` / ``completed_at`` (the emulator's clock)
  and ``stored_at`` (the client's): submission pacing, and the lag from a task's end to its image
  being in S3 (polling latency + download + upload).
- The Dagster event log carries run and step events: process start-up, step launches, step bodies.

Same machine, same clock, so everything is placed relative to the contender's spawn time.
"""

from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["dagster_phases", "load_manifests", "manifest_timeline", "stored_latency"]


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_manifests(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Every image manifest in ``bucket``."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if o["Key"].endswith("/manifest.json")
    ]

    def load(key: str) -> dict[str, Any]:
        return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(load, keys))


def _ended_and_stored(manifests: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """``(created, completed, stored)`` of every manifest that has all three."""
    return [
        (c, e, s)
        for m in manifests
        if (c := _epoch(m.get("created_at"))) is not None
        and (e := _epoch(m.get("completed_at"))) is not None
        and (s := _epoch(m.get("stored_at"))) is not None
    ]


def stored_latency(manifests: list[dict[str, Any]]) -> float | None:
    """Σ (image stored − task end) / Σ task durations: an upper bound of the added latency that
    also holds when nothing polled (callbacks), since it includes download and upload."""
    times = _ended_and_stored(manifests)
    total = sum(end - created for created, end, _ in times)
    return sum(stored - end for _, end, stored in times) / total if total > 0 else None


def manifest_timeline(
    manifests: list[dict[str, Any]],
    spawned: float,
    ended: float,
    *,
    create_limit: int,
    create_window: float,
) -> str | None:
    """One line on submission pacing and end→stored lag, or ``None`` without manifests."""
    times = _ended_and_stored(manifests)
    if not times:
        return None
    created = [c for c, _, _ in times]
    completed = [e for _, e, _ in times]
    stored = [s for _, _, s in times]
    lags = [s - e for _, e, s in times]
    ideal_span = (len(created) - 1) // create_limit * create_window
    return (
        f"timeline (s after spawn): first createTask +{min(created) - spawned:.1f}, last "
        f"+{max(created) - spawned:.1f} (span {max(created) - min(created):.1f} s, ideal "
        f"{ideal_span:.0f} s); last task end +{max(completed) - spawned:.1f}, last image stored "
        f"+{max(stored) - spawned:.1f}, exit +{ended - spawned:.1f}. Task end → stored in S3: "
        f"median {statistics.median(lags):.2f} s, p95 {_pct(lags, 0.95):.2f} s, "
        f"max {max(lags):.2f} s"
    )


def dagster_phases(home: Path, spawned: float, ended: float) -> str | None:
    """One line on the Dagster run's phases (from the instance's event log)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return None
        entries = instance.all_logs(runs[0].run_id)
    marks: dict[tuple[str, str | None], float] = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        marks.setdefault((event.event_type.name, event.step_key), entry.timestamp)
    parts = []
    run_start = marks.get(("RUN_START", None))
    if run_start is not None:
        parts.append(f"CLI start-up, definitions, run creation {run_start - spawned:.1f} s")
    steps = sorted(
        {key for (_, key) in marks if key},
        key=lambda k: marks.get(("STEP_WORKER_STARTING", k), marks.get(("STEP_START", k), 0.0)),
    )
    for step in steps:
        launch, start = marks.get(("STEP_WORKER_STARTING", step)), marks.get(("STEP_START", step))
        end = marks.get(("STEP_SUCCESS", step)) or marks.get(("STEP_FAILURE", step))
        if launch is not None and start is not None:
            parts.append(f"{step}: subprocess launch {start - launch:.1f} s")
        if start is not None and end is not None:
            parts.append(f"{step}: body {end - start:.1f} s")
    run_end = marks.get(("RUN_SUCCESS", None)) or marks.get(("RUN_FAILURE", None))
    if run_end is not None:
        parts.append(f"run end → process exit {ended - run_end:.1f} s")
    return "Dagster phases: " + "; ".join(parts) if parts else None
