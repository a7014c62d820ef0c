"""Profile one client-level run with py-spy and summarize where its samples fall.

py-spy samples every Python thread that is running (idle threads are left out), so the counts
approximate CPU time. The raw (collapsed-stack) output is summarized three ways: by leaf frame
(self time), by function anywhere in the stack (inclusive time) and by package.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

__all__ = ["py_spy_argv", "summarize"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy_argv(output: Path, argv: Sequence[str]) -> list[str] | None:
    """``py-spy record`` around ``argv`` (raw collapsed stacks), or ``None`` without py-spy."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    return [
        py_spy, "record", "--rate", "100", "--subprocesses", "--format", "raw",
        "--output", str(output), "--", *argv,
    ]


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file


def _package(file: str) -> str:
    short = _short(file)
    if short.startswith(("dagster_kie/", "bench/")):
        return "/".join(short.split("/")[:2])
    if short.startswith(".") or "/" not in short:
        return "stdlib: " + short.split("/", 1)[-1].split("/")[0]
    head = short.split("/")[0]
    return head if not re.match(r"^\.\d+", head) else "stdlib: " + short.split("/")[1]


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match["func"], match["file"]


def summarize(raw: Path, top: int = 12) -> str:
    """A Markdown summary of a py-spy ``--format raw`` file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if f[1]]  # drop "process ..." / "thread ..." pseudo-frames
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_time[f"{func} ({_short(file)})"] += count
        packages[_package(file)] += count
        for name in {f"{fn} ({_short(fl)})" for fn, fl in frames}:
            inclusive[name] += count
    if not total:
        return "py-spy recorded no samples."

    def rows(counter: Counter[str]) -> list[str]:
        return [f"| {100 * n / total:.1f}% | `{name}` |" for name, n in counter.most_common(top)]

    return "\n".join(
        [
            f"{total:,} samples (100 Hz, active threads only).",
            "",
            "Self time by package (leaf frame's file):",
            "",
            "| share | package |",
            "|---|---|",
            *rows(packages),
            "",
            "Self time (leaf frames):",
            "",
            "| share | function |",
            "|---|---|",
            *rows(self_time),
            "",
            "Inclusive time (function anywhere on the stack):",
            "",
            "| share | function |",
            "|---|---|",
            *rows(inclusive),
        ]
    )
