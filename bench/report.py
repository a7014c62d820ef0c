"""The results table (terminal and Markdown) and ``bench/RESULTS.md``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Row", "added_latency", "markdown", "polls_summary", "table"]

MB = 1024 * 1024
CLIENT_LEVEL = ("dagster-kie AsyncKieClient",)
ENGINE = (
    "dagster-kie batch engine",
    "dagster-kie batch engine, warm",
    "dagster-kie batch engine, callbacks",
)
OURS = (
    *CLIENT_LEVEL,
    *ENGINE,
    "dagster-kie Dagster",
    "dagster-kie Dagster, warm",
    "dagster-kie Dagster, callbacks",
)


@dataclass
class Row:
    """One contender at one size."""

    size: int
    contender: str
    limit_s: float
    wall_s: float
    completed: int
    images_reported: int
    images_stored: int
    tasks_created: int
    rate_limited: int
    polls_median: float | None
    polls_mean: float | None
    added_latency: float | None
    cpu_s: float
    peak_rss: int
    returncode: int
    extrapolated: bool = False
    timed_out: bool = False
    emulator_cpu_s: float = 0.0
    s3_cpu_s: float = 0.0
    peak_processes: int = 0
    load_avg: float = 0.0
    notes: list[str] = field(default_factory=list)
    latency_floor: float | None = None
    callbacks: bool = False
    """Callbacks on: judged on queries per task (≤ 1), not on polling."""

    @property
    def wall_estimate(self) -> float:
        """The wall time, extrapolated linearly to all N requests when the run was capped."""
        if self.extrapolated and self.completed:
            return self.wall_s * self.size / self.completed
        return self.wall_s

    @property
    def ratio(self) -> float:
        return self.wall_estimate / self.limit_s if self.limit_s else float("nan")

    @property
    def cpu_per_image(self) -> float | None:
        images = self.images_stored or self.images_reported
        return self.cpu_s / images if images else None


def polls_summary(stats: dict[str, Any]) -> tuple[float | None, float | None]:
    """Median and mean recordInfo calls per created task (tasks never polled count as 0)."""
    counts = [int(v) for v in stats.get("polls_per_task", {}).values()]
    counts += [0] * max(0, int(stats.get("tasks_created", 0)) - len(counts))
    if not counts:
        return None, None
    return float(statistics.median(counts)), statistics.fmean(counts)


def added_latency(stats: dict[str, Any], tasks: Sequence[dict[str, Any]]) -> float | None:
    """What polling added to the tasks' time: the sum over tasks of (first recordInfo that showed
    the task ended − its end), over the sum of their durations (the emulator's clock)."""
    lags = stats.get("detection_lag_per_task", {})
    lags_and_durations = [
        (float(lags[t["taskId"]]), float(t["finished"]) - float(t["created"]))
        for t in tasks
        if t["taskId"] in lags and t.get("finished") is not None
    ]
    total = sum(duration for _, duration in lags_and_durations)
    return sum(lag for lag, _ in lags_and_durations) / total if total > 0 else None


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _targets(row: Row) -> list[str]:
    """The targets this row is judged against (dagster-kie rows only)."""
    if row.contender not in OURS:
        return []
    marks = []
    if row.contender in CLIENT_LEVEL:
        marks.append(f"≤1.05× {_mark(row.ratio <= 1.05)}")
    elif row.contender in ENGINE:
        marks.append(f"≤1.05× (own goal) {_mark(row.ratio <= 1.05)}")
    elif row.size >= 1000:
        marks.append(f"≤1.15× {_mark(row.ratio <= 1.15)}")
    marks.append(f"0×429 {_mark(row.rate_limited == 0)}")
    if row.callbacks:
        queries_ok = row.polls_mean is not None and row.polls_mean <= 1
        marks.append(f"queries≤1/task {_mark(queries_ok)}")
    else:
        marks.append(f"polls≤3 {_mark(row.polls_median is not None and row.polls_median <= 3)}")
        latency_ok = row.added_latency is not None and row.added_latency <= 0.10
        marks.append(f"latency≤10% {_mark(latency_ok)}")
    marks.append(f"RSS<400MB {_mark(row.peak_rss < 400 * MB)}")
    marks.append(f"all stored {_mark(row.images_stored >= row.size)}")
    return marks


def _cells(row: Row) -> list[str]:
    wall = f"{row.wall_estimate:,.1f}"
    if row.extrapolated:
        wall = f"~{wall} (extrapolated: {row.completed}/{row.size} in {row.wall_s:.0f} s)"
    elif row.timed_out:
        wall = f"{wall} (timed out)"
    polls = (
        "–"
        if row.polls_median is None or row.polls_mean is None
        else f"{row.polls_median:g} / {row.polls_mean:.2f}"
    )
    cpu = "–" if row.cpu_per_image is None else f"{row.cpu_per_image * 1000:.1f}"
    latency = "–" if row.added_latency is None else f"{row.added_latency:.1%}"
    if row.callbacks and row.added_latency is not None:
        latency = f"≤ {latency} (end → stored)"
    elif row.latency_floor is not None and row.added_latency is not None:
        latency += f" (floor {row.latency_floor:.1%})"
    return [
        f"{row.size:,}",
        row.contender,
        wall,
        f"{row.limit_s:.1f}",
        f"{row.ratio:.3f}×",
        str(row.rate_limited),
        polls,
        latency,
        cpu,
        f"{row.peak_rss / MB:.0f}",
        f"{row.images_stored:,}",
        f"{row.tasks_created:,}",
        " ".join(_targets(row)) or "–",
    ]


HEADERS = [
    "N",
    "contender",
    "wall s",
    "limit s",
    "× limit",
    "429s",
    "polls/task med / mean",
    "added latency",
    "CPU ms/image",
    "peak RSS MB",
    "images in S3",
    "tasks created",
    "targets",
]


def markdown(rows: Sequence[Row]) -> str:
    """The results as a Markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def table(rows: Sequence[Row]) -> str:
    """The results as a plain-text table for the terminal."""
    cells = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def server_markdown(rows: Sequence[Row]) -> str:
    """CPU the servers spent per contender (they share the machine with the contender)."""
    lines = [
        "| N | contender | emulator CPU s | S3 server CPU s | contender CPU s | processes (peak) "
        "| machine load (1-min avg at end) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.size:,} | {r.contender} | {r.emulator_cpu_s:.1f} | {r.s3_cpu_s:.1f} | "
        f"{r.cpu_s:.1f} | {r.peak_processes} | {r.load_avg:.1f} |"
        for r in rows
    ]
    return "\n".join(lines)


def results_document(
    rows: Sequence[Row],
    *,
    server_rows: Sequence[Row] = (),
    machine: dict[str, str],
    settings: dict[str, str],
    command: str,
    profile: str,
    notes: Sequence[str],
) -> str:
    """The whole of ``bench/RESULTS.md``."""
    parts = [
        "# dagster-kie benchmark results",
        "",
        f"Generated by `{command}` (see `bench/`). Every figure below is measured on this "
        'machine by that command; only a section titled "Findings" is written by hand.',
        "",
        "## Results",
        "",
        markdown(rows),
        "",
        "- **limit**: `max_i(floor(i / create_limit) * create_window + duration_i)` with the exact "
        "durations the emulator drew (same seed, same per-task sequence), i.e. the fastest any "
        "client could finish under the create rate limit.",
        "- **wall s**: the contender's process from spawn to exit (interpreter start, imports and, "
        "for Dagster, run start-up included). The naive script is capped and extrapolated "
        "linearly from the requests it finished.",
        "- **429s**: `stats()['rate_limited']['total']` of the emulator for that contender; "
        "**polls/task**: `polls_per_task` (tasks never polled count as 0).",
        "- **added latency**: what polling added to the tasks' time, Σ (first recordInfo that "
        "showed a task ended − its end) / Σ task durations, from the emulator's "
        "`detection_lag_per_task` and task list (downloads and uploads not included). "
        "**floor**: the least any polling client can add when tasks start a create window at a "
        "time, `Σ_windows n² / (4 × queries per second) / Σ durations` (`bench/limit.py`): the "
        "n tasks of a window can at best be polled in turn with every query there is. With "
        "callbacks nothing is polled: the cell gives Σ (image stored in S3 − task end) / "
        "Σ task durations from the manifests, an upper bound (downloads and uploads included).",
        "- **CPU ms/image**: user + system CPU of the contender's whole process tree (children "
        "included) per image stored; **peak RSS**: sum over the process tree, sampled every 0.2 s.",
        "- **contenders**: *AsyncKieClient* is the client alone (create, wait, stream download, "
        "`put_object`); the *batch engine* is `BatchRunner`, what the assets run: the client plus "
        "the S3 task ledger (a write before and after each createTask), manifests, checks and "
        "the recent task durations kept in S3; *warm* rows run after an earlier, unmeasured run "
        "of one create window of other requests stored its task durations in the same bucket; "
        "*callbacks* rows send each task with the URL of a callback receiver process (signed "
        "callbacks, stored in the bucket) and read task ends from there, polling only as a "
        "fallback.",
        "- **targets** (dagster-kie rows only): client level (the AsyncKieClient) "
        "≤ 1.05× limit (the batch engine, the Dagster rows' engine without Dagster, is held to "
        "it too, as our own goal), Dagster ≤ 1.15× limit at "
        "N = 1,000, zero 429s, median polls per task ≤ 3 with added latency ≤ 10 % "
        "(with callbacks: ≤ 1 query per task on average), "
        "peak RSS < 400 MB, every image stored.",
        "",
    ]
    if server_rows:
        parts += ["### Server side", "", server_markdown(server_rows), ""]
    if notes:
        parts += ["### Observations", "", *[f"- {note}" for note in notes], ""]
    parts += ["## Settings", "", *[f"- {k}: {v}" for k, v in settings.items()], ""]
    parts += ["## Machine", "", *[f"- {k}: {v}" for k, v in machine.items()], ""]
    parts += ["## Profile", "", profile.strip(), ""]
    return "\n".join(parts)
