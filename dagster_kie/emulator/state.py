"""In-memory state of one emulator: tasks, credits, rate windows, statistics.

Task states are a function of time: a task is ``waiting`` for the first 10 % of its duration,
``queuing`` until 25 %, ``generating`` until 100 %, then ``success`` or ``fail``. Tasks are
*finalized* (charged, result URLs issued, callback queued) by :meth:`EmulatorState.advance`, which
every request and the callback loop call, so no per-task timer is needed.

Everything here runs on the event loop thread; nothing is shared with worker threads except the
image cache (which has its own lock).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import random
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from .config import MB, EmulatorSettings
from .faults import FaultManager, parse_fault_arg
from .filestore import UploadStore
from .images import ImageCache
from .signing import UrlSigner

__all__ = [
    "CreditLedger",
    "EmulatorState",
    "SlidingWindow",
    "Stats",
    "Task",
    "TaskStore",
]

WAITING_END = 0.10
QUEUING_END = 0.25


def ms(t: float) -> int:
    """Unix seconds → Unix milliseconds."""
    return int(t * 1000)


@dataclass
class Task:
    """One generation task (a jobs task or a remix task)."""

    task_id: str
    kind: str  # "jobs" or "remix"
    model: str
    api_key: str
    param: dict[str, Any]
    input: dict[str, Any]
    num_images: int
    width: int
    height: int
    seed: int | float | str
    prompt: str
    created: float
    duration: float
    cost: float
    callback_url: str | None = None
    will_fail: bool = False
    fail_code: str = "501"
    fail_msg: str = ""
    finished: float | None = None
    succeeded: bool = False
    result_urls: list[str] = field(default_factory=list)
    credits_consumed: float = 0.0
    remained_credits: float | None = None

    @property
    def end(self) -> float:
        """When the task ends (Unix seconds)."""
        return self.created + self.duration

    def phase(self, now: float) -> tuple[str, int, float]:
        """``(state, progress 0-100, time of the last state change)`` at ``now``."""
        if self.finished is not None:
            return ("success" if self.succeeded else "fail"), 100, self.finished
        elapsed = now - self.created
        d = max(self.duration, 1e-9)
        if elapsed < WAITING_END * d:
            return "waiting", 0, self.created
        if elapsed < QUEUING_END * d:
            return "queuing", 0, self.created + WAITING_END * d
        frac = (elapsed - QUEUING_END * d) / ((1 - QUEUING_END) * d)
        return "generating", max(1, min(99, int(frac * 100))), self.created + QUEUING_END * d


class TaskStore:
    """Tasks by id, plus a heap of end times for :meth:`due`."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self._heap: list[tuple[float, str]] = []
        self._last_id_ms = 0

    def new_jobs_id(self, now: float) -> str:
        """A fresh ``task_ideogram_<digits>`` id (millisecond timestamp, kept unique)."""
        self._last_id_ms = max(self._last_id_ms + 1, ms(now))
        return f"task_ideogram_{self._last_id_ms}"

    def add(self, task: Task) -> None:
        """Register a task."""
        self.tasks[task.task_id] = task
        heapq.heappush(self._heap, (task.end, task.task_id))

    def get(self, task_id: str) -> Task | None:
        """The task with this id, if any."""
        return self.tasks.get(task_id)

    def due(self, now: float) -> list[Task]:
        """Unfinished tasks whose end time has come, in end-time order (removed from the heap)."""
        out: list[Task] = []
        while self._heap and self._heap[0][0] <= now:
            _, task_id = heapq.heappop(self._heap)
            task = self.tasks.get(task_id)
            if task is not None and task.finished is None:
                out.append(task)
        return out

    def next_end(self) -> float | None:
        """The earliest end time of a pending task."""
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        """Forget every task."""
        self.tasks.clear()
        self._heap.clear()


class CreditLedger:
    """The account balance; task costs are reserved at creation and charged on success only."""

    def __init__(self, balance: float) -> None:
        self.balance = balance
        self.reserved = 0.0

    @property
    def available(self) -> float:
        """Balance minus what running tasks may still cost."""
        return self.balance - self.reserved

    def reserve(self, amount: float) -> bool:
        """Reserve ``amount`` for a new task; ``False`` if the balance is insufficient."""
        if amount > self.available + 1e-9:
            return False
        self.reserved += amount
        return True

    def settle(self, amount: float, *, charge: bool) -> None:
        """Release a reservation, charging it if the task succeeded."""
        self.reserved = max(0.0, self.reserved - amount)
        if charge:
            self.balance -= amount


class SlidingWindow:
    """Per-key sliding-window rate limit: at most ``limit`` events per ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until one more event is allowed, or ``None`` if it is allowed now."""
        events = self._events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) < self.limit:
            return None
        return max(0.001, events[0] + self.window - now)

    def record(self, key: str, now: float) -> None:
        """Count one event."""
        self._events[key].append(now)

    def clear(self) -> None:
        """Forget every event."""
        self._events.clear()


@dataclass
class Stats:
    """Counters shown by ``GET /admin/stats``."""

    requests_total: int = 0
    create_calls: int = 0
    tasks_created: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    remix_calls: int = 0
    query_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    polls_per_task: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # seconds from a task's end to the first recordInfo that showed it ended: what polling added
    detection_lag_per_task: dict[str, float] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors_by_code: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    faults_triggered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    callbacks_dropped: int = 0
    downloads: int = 0
    downloads_forbidden: int = 0
    uploads: int = 0
    connections_dropped: int = 0

    def error(self, code: int) -> None:
        """Count a reply whose code is not 200."""
        self.errors_by_code[str(code)] += 1

    def rate_limit(self, endpoint: str) -> None:
        """Count one rate-limited reply."""
        self.rate_limited[endpoint] += 1
        self.rate_limited["total"] += 1

    def query(self, endpoint: str) -> None:
        """Count one query call."""
        self.query_calls[endpoint] += 1
        self.query_calls["total"] += 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            out[name] = dict(value) if isinstance(value, dict) else value
        for key in ("query_calls", "rate_limited"):
            out[key].setdefault("total", 0)
        return out


class EmulatorState:
    """Everything one emulator server knows; created once per server."""

    def __init__(self, settings: EmulatorSettings, base_url: str = "") -> None:
        self.settings = settings
        self.base_url = base_url
        self.upload_base_url = base_url + "/upload"
        self.rng, fault_rng = self._seeded_rngs()
        self.faults = FaultManager(fault_rng)
        self.tasks = TaskStore()
        self.credits = CreditLedger(settings.initial_credits)
        self.create_window = SlidingWindow(settings.create_limit, settings.create_window)
        self.query_window = SlidingWindow(settings.query_limit, settings.query_window)
        self.stats = Stats()
        self.signer = UrlSigner(settings.url_secret)
        self.images = ImageCache(int(settings.image_cache_mb * MB))
        self.api_keys = frozenset(settings.api_keys)
        self.uploads = UploadStore(settings.upload_dir)
        self.pending_callbacks: deque[Task] = deque()
        self.wakeup: asyncio.Event | None = None
        self._task_seq = 0
        self._install_cli_faults(time.time())

    def _install_cli_faults(self, now: float) -> None:
        for text in self.settings.faults:
            kind, params = parse_fault_arg(text)
            self.faults.set(kind, params, now)

    def _seeded_rngs(self) -> tuple[random.Random, random.Random | None]:
        """Fresh (rng, fault rng): seeded from ``random_seed``, else unseeded and ``None``."""
        seed = self.settings.random_seed
        if seed is None:
            return random.Random(), None
        return random.Random(seed), random.Random(f"faults:{seed}")

    def reset(self, credits: float | None = None) -> None:
        """Forget tasks, statistics, rate windows and faults; restore (or set) the balance.

        With a ``random_seed``, the seeded draws start over too: the tasks created after a reset
        get the same durations, ids and fault draws as those after start-up.
        """
        self.tasks.clear()
        self.stats = Stats()
        self.faults.clear()
        self._task_seq = 0
        if self.settings.random_seed is not None:
            self.rng, fault_rng = self._seeded_rngs()
            self.faults = FaultManager(fault_rng)
        self.create_window.clear()
        self.query_window.clear()
        self.pending_callbacks.clear()
        self.images.clear()
        self.credits = CreditLedger(
            self.settings.initial_credits if credits is None else float(credits)
        )

    # --- task creation -------------------------------------------------------------------------

    def sample_duration(self) -> float:
        """A task duration drawn from the configured distribution (seeded per task)."""
        s = self.settings
        self._task_seq += 1
        rng = (
            random.Random(f"{s.random_seed}:{self._task_seq}")
            if s.random_seed is not None
            else self.rng
        )
        mean, jitter = s.task_duration, s.task_jitter
        if s.task_duration_dist == "fixed" or mean == 0:
            return mean
        if s.task_duration_dist == "uniform":
            return max(0.0, mean * (1 + rng.uniform(-jitter, jitter)))
        sigma = jitter if jitter > 0 else 0.5
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    def new_remix_id(self) -> str:
        """A fresh 22-character remix task id (like ``CjMT7WdSwWcAAAAAALvB3g``)."""
        if self.settings.random_seed is None:
            return secrets.token_urlsafe(16)[:22]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self.rng.choice(alphabet) for _ in range(22))

    def add_task(self, task: Task) -> None:
        """Register a new task and wake the callback loop."""
        self.tasks.add(task)
        self.stats.tasks_created += 1
        if self.wakeup is not None:
            self.wakeup.set()

    # --- progress ------------------------------------------------------------------------------

    def advance(self, now: float | None = None) -> list[Task]:
        """Finalize every task whose end has come; returns them (callbacks are queued)."""
        now = time.time() if now is None else now
        done = self.tasks.due(now)
        for task in done:
            self._finalize(task)
        return done

    def _finalize(self, task: Task) -> None:
        task.finished = task.end
        task.succeeded = not task.will_fail
        self.credits.settle(task.cost, charge=task.succeeded)
        if task.succeeded:
            task.credits_consumed = task.cost
            self.stats.tasks_succeeded += 1
            expired = self.faults.trigger("expire_result_urls", _task_endpoint(task), task.end)
            if expired is not None:
                self.stats.faults_triggered["expire_result_urls"] += 1
                expires = task.end - 1
            else:
                expires = task.end + self.settings.result_url_ttl
            task.result_urls = [
                self.signer.sign(self.base_url, self.file_path(task.task_id, i), expires)
                for i in range(task.num_images)
            ]
        else:
            self.stats.tasks_failed += 1
        task.remained_credits = round(self.credits.balance, 6)
        if task.callback_url:
            self.pending_callbacks.append(task)
            if self.wakeup is not None:
                self.wakeup.set()

    @staticmethod
    def file_path(task_id: str, index: int) -> str:
        """The URL path of one result image."""
        return f"/files/{task_id}/{index}.png"

    def record_info(self, task: Task, now: float) -> dict[str, Any]:
        """The ``data`` of a recordInfo reply for ``task``."""
        state, progress, changed = task.phase(now)
        finished = task.finished
        failed = state == "fail"
        return {
            "taskId": task.task_id,
            "model": task.model,
            "state": state,
            "param": json.dumps(task.param, ensure_ascii=False, separators=(",", ":")),
            "resultJson": (
                json.dumps({"resultUrls": task.result_urls}, separators=(",", ":"))
                if state == "success"
                else ""
            ),
            "failCode": task.fail_code if failed else None,
            "failMsg": task.fail_msg if failed else "",
            "costTime": None if finished is None else ms(finished) - ms(task.created),
            "completeTime": None if finished is None else ms(finished),
            "createTime": ms(task.created),
            "updateTime": ms(changed),
            "creditsConsumed": task.credits_consumed,
            "progress": progress,
        }

    def balance(self) -> float:
        """The balance as shown by the credit endpoint."""
        return round(self.credits.balance, 6)


def _task_endpoint(task: Task) -> str:
    return "remix" if task.kind == "remix" else "create"
