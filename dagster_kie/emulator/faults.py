"""Fault injection: which requests, tasks or callbacks misbehave, and how.

A fault is one *kind* (see :data:`FAULT_KINDS`) with trigger conditions:

* ``count``: only the next N matching events trigger (then the fault removes itself);
* ``fraction``: each matching event triggers with this probability;
* ``duration`` (and ``start``): only events inside the time window
  ``[set_at + start, set_at + start + duration)`` trigger;
* ``endpoint``: which endpoints match (names or groups, see :data:`ENDPOINT_GROUPS`).

Without ``count``/``fraction``/``duration`` a fault triggers on every matching event until cleared.
Kind-specific parameters are listed in :data:`FAULT_PARAMS`. The CLI form is
``kind:key=value,key=value`` (endpoint lists joined with ``+``), e.g.
``server_error:count=3,endpoint=create`` or ``fail_tasks:fraction=0.1``.

Standard library only, so the launcher can use :func:`format_fault_arg`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENDPOINTS",
    "ENDPOINT_GROUPS",
    "FAULT_KINDS",
    "FAULT_PARAMS",
    "FaultError",
    "FaultManager",
    "FaultSpec",
    "format_fault_arg",
    "parse_fault_arg",
]

ENDPOINTS: tuple[str, ...] = (
    "create",
    "record_info",
    "credit",
    "download_url",
    "upload_stream",
    "upload_base64",
    "upload_url",
    "remix",
    "remix_task",
    "files",
    "uploads",
)
"""Endpoint names used to scope faults (``files``: result images; ``uploads``: uploaded files)."""

ENDPOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ENDPOINTS,
    "api": tuple(e for e in ENDPOINTS if e not in ("files", "uploads")),
    "jobs": ("create", "record_info", "credit", "download_url"),
    "query": ("record_info", "credit", "download_url", "remix_task"),
    "upload": ("upload_stream", "upload_base64", "upload_url"),
    "tasks": ("create", "remix"),
    "callbacks": ("callback",),
}
"""Names that stand for several endpoints in a fault's ``endpoint``."""

_COMMON = frozenset({"count", "fraction", "duration", "start", "endpoint"})

FAULT_PARAMS: dict[str, frozenset[str]] = {
    "rate_limit_storm": frozenset({"status", "retry_after"}),
    "maintenance": frozenset({"status", "msg"}),
    "server_error": frozenset({"status", "msg"}),
    "fail_tasks": frozenset({"fail_code", "fail_msg"}),
    "slow_tasks": frozenset({"multiplier", "extra_seconds"}),
    "drop_connection": frozenset({"when", "mode"}),
    "malformed_json": frozenset(),
    "expire_result_urls": frozenset(),
    "drop_callbacks": frozenset(),
    "latency": frozenset({"ms"}),
}
"""Kind-specific parameters of each fault kind (besides count/fraction/duration/start/endpoint)."""

FAULT_KINDS: tuple[str, ...] = tuple(FAULT_PARAMS)

_DEFAULT_SCOPE: dict[str, str] = {
    "rate_limit_storm": "api",
    "maintenance": "api",
    "server_error": "api",
    "fail_tasks": "tasks",
    "slow_tasks": "tasks",
    "drop_connection": "api",
    "malformed_json": "api",
    "expire_result_urls": "tasks",
    "drop_callbacks": "callbacks",
    "latency": "all",
}


class FaultError(ValueError):
    """A fault specification is not valid."""


def _expand_endpoints(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        names = [n for n in value.replace(",", "+").split("+") if n]
    elif isinstance(value, Iterable):
        names = [str(n) for n in value]
    else:
        raise FaultError("endpoint: a name or a list of names")
    out: list[str] = []
    for name in names:
        if name in ENDPOINT_GROUPS:
            out.extend(ENDPOINT_GROUPS[name])
        elif name in ENDPOINTS or name == "callback":
            out.append(name)
        else:
            allowed = ", ".join((*ENDPOINTS, *ENDPOINT_GROUPS))
            raise FaultError(f"endpoint: unknown {name!r}; one of {allowed}")
    return tuple(dict.fromkeys(out))


def _number(kind: str, key: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FaultError(f"{kind}.{key}: must be a number")
    try:
        number = float(value)
    except ValueError:
        raise FaultError(f"{kind}.{key}: must be a number") from None
    if not math.isfinite(number) or number < minimum:
        raise FaultError(f"{kind}.{key}: must be a number >= {minimum:g}")
    return number


@dataclass
class FaultSpec:
    """One configured fault and its trigger state."""

    kind: str
    endpoints: tuple[str, ...]
    count: int | None = None
    fraction: float | None = None
    duration: float | None = None
    start: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    set_at: float = 0.0
    triggered: int = 0

    @classmethod
    def build(cls, kind: str, params: Mapping[str, Any], now: float) -> FaultSpec:
        """Check ``params`` for ``kind`` and build the spec (``FaultError`` if invalid)."""
        if kind not in FAULT_PARAMS:
            raise FaultError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        unknown = set(params) - _COMMON - FAULT_PARAMS[kind]
        if unknown:
            allowed = ", ".join(sorted(_COMMON | FAULT_PARAMS[kind]))
            raise FaultError(f"{kind}: unknown parameter(s) {sorted(unknown)}; allowed: {allowed}")
        spec = cls(
            kind=kind,
            endpoints=_expand_endpoints(params.get("endpoint", _DEFAULT_SCOPE[kind])),
            set_at=now,
        )
        if params.get("count") is not None:
            count = _number(kind, "count", params["count"], minimum=1)
            if count != int(count):
                raise FaultError(f"{kind}.count: must be a whole number")
            spec.count = int(count)
        if params.get("fraction") is not None:
            spec.fraction = _number(kind, "fraction", params["fraction"])
            if spec.fraction > 1:
                raise FaultError(f"{kind}.fraction: must be in [0, 1]")
        if params.get("duration") is not None:
            spec.duration = _number(kind, "duration", params["duration"])
        spec.start = _number(kind, "start", params.get("start", 0))
        extra = {k: v for k, v in params.items() if k not in _COMMON}
        spec.params = _check_extra(kind, extra)
        return spec

    def in_window(self, now: float) -> bool:
        """Whether ``now`` is inside the fault's time window."""
        begin = self.set_at + self.start
        if now < begin:
            return False
        return self.duration is None or now < begin + self.duration

    def expired(self, now: float) -> bool:
        """Whether the fault can never trigger again."""
        if self.count is not None and self.triggered >= self.count:
            return True
        return self.duration is not None and now >= self.set_at + self.start + self.duration

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-able description (what ``GET /admin/faults`` shows)."""
        out: dict[str, Any] = {
            "endpoint": list(self.endpoints),
            "count": self.count,
            "fraction": self.fraction,
            "duration": self.duration,
            "start": self.start,
            "triggered": self.triggered,
            "remaining": None if self.count is None else max(0, self.count - self.triggered),
            "active": self.in_window(now) and not self.expired(now),
        }
        out.update(self.params)
        return out


def _check_extra(kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(extra)
    if kind == "drop_connection":
        when = str(out.get("when", "before"))
        if when not in ("before", "after"):
            raise FaultError("drop_connection.when: 'before' or 'after'")
        mode = str(out.get("mode", "close"))
        if mode not in ("close", "partial"):
            raise FaultError("drop_connection.mode: 'close' or 'partial'")
        out["when"], out["mode"] = when, mode
    elif kind == "latency":
        if "ms" not in out:
            raise FaultError("latency.ms: required (milliseconds added to each reply)")
        out["ms"] = _number(kind, "ms", out["ms"])
    elif kind == "slow_tasks":
        default_multiplier = 1.0 if "extra_seconds" in out else 5.0
        out["multiplier"] = _number(kind, "multiplier", out.get("multiplier", default_multiplier))
        out["extra_seconds"] = _number(kind, "extra_seconds", out.get("extra_seconds", 0.0))
    elif kind in ("maintenance", "server_error", "rate_limit_storm"):
        if "status" in out:
            status = _number(kind, "status", out["status"], minimum=100)
            if status != int(status) or status > 599:
                raise FaultError(f"{kind}.status: an HTTP status 100..599")
            out["status"] = int(status)
        if "retry_after" in out:
            out["retry_after"] = _number(kind, "retry_after", out["retry_after"])
        if "msg" in out:
            out["msg"] = str(out["msg"])
    elif kind == "fail_tasks":
        out["fail_code"] = str(out.get("fail_code", "501"))
        if "fail_msg" in out:
            out["fail_msg"] = str(out["fail_msg"])
    return out


class FaultManager:
    """The set of active faults (at most one per kind) and their trigger logic."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._faults: dict[str, FaultSpec] = {}
        self._rng = rng or random.Random()

    def set(self, kind: str, params: Mapping[str, Any] | None, now: float) -> None:
        """Install (replacing) or, with ``params=None``, remove the fault of one kind."""
        if params is None:
            if kind not in FAULT_PARAMS:
                raise FaultError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
            self._faults.pop(kind, None)
            return
        self._faults[kind] = FaultSpec.build(kind, params, now)

    def set_many(self, faults: Mapping[str, Mapping[str, Any] | None], now: float) -> None:
        """Install several faults at once; nothing changes if one of them is invalid."""
        built: dict[str, FaultSpec | None] = {}
        for kind, params in faults.items():
            if params is None:
                if kind not in FAULT_PARAMS:
                    raise FaultError(f"unknown fault kind {kind!r}")
                built[kind] = None
            else:
                built[kind] = FaultSpec.build(kind, params, now)
        for kind, spec in built.items():
            if spec is None:
                self._faults.pop(kind, None)
            else:
                self._faults[kind] = spec

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """Every configured fault, described."""
        return {kind: spec.describe(now) for kind, spec in self._faults.items()}

    def trigger(self, kind: str, endpoint: str, now: float) -> FaultSpec | None:
        """Decide whether the fault ``kind`` fires for one event at ``endpoint``.

        Returns the spec (and counts the trigger) if it fires, else ``None``.
        """
        spec = self._faults.get(kind)
        if spec is None or endpoint not in spec.endpoints:
            return None
        if spec.expired(now):
            del self._faults[kind]
            return None
        if not spec.in_window(now):
            return None
        if spec.fraction is not None and self._rng.random() >= spec.fraction:
            return None
        spec.triggered += 1  # an exhausted fault stays visible until the next lookup drops it
        return spec


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


_TEXT_PARAMS = frozenset({"endpoint", "msg", "fail_msg", "fail_code", "when", "mode"})


def parse_fault_arg(text: str) -> tuple[str, dict[str, Any]]:
    """Parse the CLI form ``kind[:key=value,...]`` into ``(kind, params)``."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in FAULT_PARAMS:
        raise FaultError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultError(f"{kind}: expected key=value, got {item!r}")
        key = key.strip()
        raw = value.strip()
        params[key] = raw if key in _TEXT_PARAMS else _parse_value(raw)
    FaultSpec.build(kind, params, 0.0)  # validate now, fail early
    return kind, params


def format_fault_arg(kind: str, params: Mapping[str, Any] | None = None) -> str:
    """The CLI form of a fault (inverse of :func:`parse_fault_arg`)."""
    parts: list[str] = []
    for key, value in (params or {}).items():
        if key == "endpoint" and not isinstance(value, str):
            value = "+".join(str(v) for v in value)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "," in text or "=" in text:
            raise FaultError(f"{kind}.{key}: the CLI form cannot carry ',' or '=' in values")
        parts.append(f"{key}={text}")
    FaultSpec.build(kind, dict(params or {}), 0.0)
    return kind + (":" + ",".join(parts) if parts else "")
