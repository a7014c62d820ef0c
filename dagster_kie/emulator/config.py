"""Settings of the kie.ai emulator, shared by the CLI, the server and the launcher.

This module is import-light on purpose (standard library only): the launcher in
:mod:`dagster_kie.emulator.process` imports it without pulling in starlette or uvicorn.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_API_KEY",
    "MB",
    "READY_MARKER",
    "DurationDist",
    "EmulatorSettings",
    "RemixMode",
]

DEFAULT_API_KEY = "kie-local-dev-key"
"""The API key the emulator accepts when no ``--api-key`` is given."""

READY_MARKER = "KIE_EMULATOR_READY"
"""First word of the single line the server prints to stdout once it listens."""

MB = 1024 * 1024

DurationDist = Literal["fixed", "uniform", "lognormal"]
RemixMode = Literal["async", "sync"]

_DISTS: tuple[str, ...] = ("fixed", "uniform", "lognormal")
_REMIX_MODES: tuple[str, ...] = ("async", "sync")
_LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True)
class EmulatorSettings:
    """Every knob of the emulator; one field per CLI flag (see :meth:`to_argv`).

    Durations are in seconds, sizes in bytes, money in credits.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    # credits
    initial_credits: float = 10000.0
    credits_per_image: float = 1.6
    # rate limits (per API key, sliding windows)
    create_limit: int = 20
    create_window: float = 10.0
    query_limit: int = 10
    query_window: float = 1.0
    rate_limit_status: int = 429
    # task lifecycle
    task_duration: float = 2.0
    task_jitter: float = 0.0
    task_duration_dist: DurationDist = "uniform"
    record_delay: float = 0.0
    random_seed: int | None = None
    # result files
    result_url_ttl: float = 24 * 3600.0
    download_url_ttl: float = 20 * 60.0
    url_secret: str | None = None
    image_cache_mb: float = 64.0
    # remix
    remix_mode: RemixMode = "async"
    # callbacks
    webhook_hmac_key: str | None = None
    callback_timeout: float = 10.0
    # uploads
    upload_dir: str | None = None
    max_base64_upload: int = 10 * MB
    max_stream_upload: int = 100 * MB
    max_url_upload: int = 100 * MB
    url_upload_timeout: float = 30.0
    allow_remote_url_upload: bool = False
    # validation
    lenient_required: bool = False
    # faults given at start, each in the CLI form ``kind:key=value,key=value``
    faults: tuple[str, ...] = field(default_factory=tuple)
    # process
    access_log: bool = False
    log_level: str = "warning"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` if a setting is out of range."""
        if not self.api_keys or any(not k for k in self.api_keys):
            raise ValueError("api_keys: at least one non-empty key is required")
        if not 0 <= self.port <= 65535:
            raise ValueError("port: must be 0..65535")
        for name in ("create_limit", "query_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        for name in (
            "create_window",
            "query_window",
            "result_url_ttl",
            "download_url_ttl",
            "callback_timeout",
            "url_upload_timeout",
        ):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}: must be a positive number")
        for name in ("task_duration", "task_jitter", "record_delay", "initial_credits"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: must be a non-negative number")
        if self.credits_per_image < 0:
            raise ValueError("credits_per_image: must be >= 0")
        if self.task_duration_dist != "lognormal" and self.task_jitter > 1:
            raise ValueError("task_jitter: must be a fraction in [0, 1]")
        if self.task_duration_dist not in _DISTS:
            raise ValueError(f"task_duration_dist: one of {', '.join(_DISTS)}")
        if self.remix_mode not in _REMIX_MODES:
            raise ValueError(f"remix_mode: one of {', '.join(_REMIX_MODES)}")
        if self.rate_limit_status not in (200, 429):
            raise ValueError("rate_limit_status: 200 or 429")
        if self.log_level not in _LOG_LEVELS:
            raise ValueError(f"log_level: one of {', '.join(_LOG_LEVELS)}")
        for name in ("max_base64_upload", "max_stream_upload", "max_url_upload"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1 byte")
        if self.image_cache_mb < 0:
            raise ValueError("image_cache_mb: must be >= 0")

    def replace(self, **changes: object) -> EmulatorSettings:
        """A copy with some fields changed (and checked)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def api_key(self) -> str:
        """The first accepted API key (the one announced on the ready line)."""
        return self.api_keys[0]

    def to_argv(self) -> list[str]:
        """The CLI flags that reproduce these settings (only the non-default ones)."""
        default = EmulatorSettings()
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            flag = _FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
            if f.name == "api_keys":
                for key in value:
                    argv += ["--api-key", key]
            elif f.name == "faults":
                for spec in value:
                    argv += ["--fault", spec]
            elif isinstance(value, bool):
                if value:
                    argv.append(flag)
            elif value is None:
                continue
            else:
                argv += [flag, str(value)]
        return argv


_FLAG_NAMES: dict[str, str] = {
    "initial_credits": "--credits",
    "credits_per_image": "--cost-per-image",
}
"""Settings whose CLI flag is not simply ``--<field-name-with-dashes>``."""
