"""Profile one client-level run with py-spy and summarize where its samples fall.

py-spy leaves out threads it sees idle, but a thread blocked in C (a thread pool's queue, a
``select``, a socket read) often still shows up with a Python leaf frame. Samples whose leaf is one
of those waits are counted apart as "waiting"; the rest approximate CPU time and are summarized
three ways: by package of the leaf frame, by leaf frame (self time) and by function anywhere on
the stack (inclusive time).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

__all__ = ["py_spy_argv", "summarize"]

WAIT_LEAVES = {
    ("_worker", "concurrent/futures/thread.py"),
    ("wait", "threading.py"),
    ("Condition.wait", "threading.py"),
    ("Event.wait", "threading.py"),
    ("Thread.join", "threading.py"),
    ("_wait_for_tstate_lock", "threading.py"),
    ("Thread._wait_for_tstate_lock", "threading.py"),
    ("select", "selectors.py"),
    ("EpollSelector.select", "selectors.py"),
    ("_PollLikeSelector.select", "selectors.py"),
    ("poll_wait_for_socket.<locals>.do_poll", "urllib3/util/wait.py"),
    ("do_poll", "urllib3/util/wait.py"),
    ("SocketIO.readinto", "socket.py"),
    ("readinto", "socket.py"),
    ("sleep", "time"),
    ("Condition.__enter__", "threading.py"),
    ("Condition.wait", "multiprocessing/synchronize.py"),
}
"""Leaf frames (function, file suffix) that mean "blocked", not "computing"."""

CATEGORIES = (
    ("start-up imports", ("importlib._bootstrap",)),
    ("S3 calls (boto3/botocore/s3transfer)", ("botocore/", "boto3/", "s3transfer/")),
    ("kie.ai HTTP (httpx/httpcore/h11)", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("image decode (PIL)", ("PIL/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("asyncio event loop (scheduling, rate limiter, polling)", ("asyncio/",)),
    ("Dagster framework (dagster, sqlalchemy)", ("dagster/", "dagster_shared/", "sqlalchemy/")),
)
"""What a sample was doing: the first category any frame of its stack falls in (Dagster last:
its frames enclose everything a step does)."""

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy_argv(output: Path, argv: Sequence[str]) -> list[str] | None:
    """``py-spy record`` around ``argv`` (raw collapsed stacks), or ``None`` without py-spy.

    ``--nonblocking``: the process is not paused for each sample (with dozens of threads the
    pauses tripled the wall time of a run); stacks may be slightly inconsistent instead.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    return [
        py_spy,
        "record",
        "--rate",
        "100",
        "--nonblocking",
        "--subprocesses",
        "--format",
        "raw",
        "--output",
        str(output),
        "--",
        *argv,
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


def _category(files: list[str]) -> str:
    for name, markers in CATEGORIES:
        if any(marker in file for file in files for marker in markers):
            return name
    return "other"


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match["func"], match["file"]


def summarize(raw: Path, top: int = 12) -> str:
    """A Markdown summary of a py-spy ``--format raw`` file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = waiting = 0
    waits: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if f[1]]  # drop "process ..." / "thread ..." pseudo-frames
        if not frames:
            continue
        func, file = frames[-1]
        if any(func == f and _short(file).endswith(suffix) for f, suffix in WAIT_LEAVES):
            waiting += count
            waits[f"{func} ({_short(file)})"] += count
            continue
        total += count
        self_time[f"{func} ({_short(file)})"] += count
        packages[_package(file)] += count
        files = [file for _, file in frames]
        categories[_category(files)] += count
        for name in {f"{fn} ({_short(fl)})" for fn, fl in frames if "dagster_kie/" in fl}:
            inclusive[name] += count
    if not total:
        return "py-spy recorded no samples."

    def rows(counter: Counter[str]) -> list[str]:
        return [f"| {100 * n / total:.1f}% | `{name}` |" for name, n in counter.most_common(top)]

    top_waits = ", ".join(f"`{name}` {n:,}" for name, n in waits.most_common(4))
    return "\n".join(
        [
            f"{total:,} samples on CPU (100 Hz); {waiting:,} more samples of threads blocked "
            f"in a wait ({top_waits}) are left out. Shares below are of the on-CPU samples.",
            "",
            "What the on-CPU samples were doing (first match on the stack, in this order):",
            "",
            "| share | activity |",
            "|---|---|",
            *rows(categories),
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
            "dagster-kie functions, inclusive (anywhere on the stack):",
            "",
            "| share | function |",
            "|---|---|",
            *rows(inclusive),
        ]
    )


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
