"""Run one contender as a child process and measure its whole process tree.

Wall time, CPU seconds (user + system of the child and every descendant), and peak RSS (the sum
over the tree, sampled every 0.2 s with psutil). CPU comes from ``os.wait4`` (which includes the
descendants the child waited for) or from the samples (for any descendant that outlived its
parent), whichever is larger. The child runs in its own session; on a timeout its process group
is stopped by the child's PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["Measurement", "run_measured"]

SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Measurement:
    """What one measured child process cost."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    peak_processes: int
    timed_out: bool


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(name=f"bench-sampler-{pid}", daemon=True)
        self.root = psutil.Process(pid)
        self.stop_event = threading.Event()
        self.peak_rss = 0
        self.peak_processes = 0
        self.cpu_by_pid: dict[tuple[int, float], float] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        alive = 0
        for process in tree:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
            except psutil.Error:
                continue
            alive += 1
            self.cpu_by_pid[key] = times.user + times.system
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, alive)

    @property
    def sampled_cpu(self) -> float:
        return sum(self.cpu_by_pid.values())


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | Path,
    log_path: Path,
    timeout: float,
) -> Measurement:
    """Run ``argv`` to completion (or ``timeout``) and measure it; output goes to ``log_path``."""
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sampler = _TreeSampler(process.pid)
        sampler.start()
        timed_out = threading.Event()

        def stop_on_timeout() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # the child's own group, by its PID
            time.sleep(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, stop_on_timeout)
        watchdog.daemon = True
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop_event.set()
        sampler.join()
    cpu = max(usage.ru_utime + usage.ru_stime, sampler.sampled_cpu)
    return Measurement(
        returncode=process.returncode,
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=sampler.peak_rss,
        peak_processes=sampler.peak_processes,
        timed_out=timed_out.is_set(),
    )
