"""Start the emulator as a child process (by PID, on loopback) and drive its admin API.

Example::

    with EmulatorProcess(task_duration=0.2, faults={"fail_tasks": {"fraction": 0.1}}) as emu:
        httpx.get(emu.base_url + "/api/v1/chat/credit", headers=...)
        emu.admin.set_faults(server_error={"count": 2, "endpoint": "create"})
        print(emu.admin.stats()["create_calls"])

Does not import starlette or uvicorn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .._process import ServerProcess, package_env, ready_json
from ..download import DownloadPolicy
from .config import READY_MARKER, EmulatorSettings
from .faults import format_fault_arg

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EmulatorAdmin", "EmulatorProcess", "FaultsArg", "parse_ready_line"]

FaultsArg = Mapping[str, Mapping[str, Any] | bool | None] | Sequence[str]
"""Faults as ``{kind: params}`` (``True``: no parameters) or CLI strings ``"kind:k=v,..."``."""

parse_ready_line = ready_json(READY_MARKER)
"""The JSON of a ``KIE_EMULATOR_READY {...}`` line, or ``None`` for any other line."""


def _fault_strings(faults: FaultsArg) -> tuple[str, ...]:
    if isinstance(faults, Mapping):
        return tuple(
            format_fault_arg(kind, {} if params is True else params)
            for kind, params in faults.items()
            if params is not None and params is not False
        )
    if isinstance(faults, str):
        return (faults,)
    return tuple(faults)


class EmulatorAdmin:
    """Client of the admin API of a running emulator."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        with httpx.Client(timeout=self.timeout, trust_env=False) as client:
            reply = client.request(method, self.base_url + path, json=body)
        if reply.status_code >= 400:
            raise RuntimeError(f"emulator admin {method} {path}: {reply.status_code} {reply.text}")
        data = reply.json()
        assert isinstance(data, dict)
        return data

    def set_faults(
        self,
        faults: Mapping[str, Mapping[str, Any] | bool | None] | None = None,
        /,
        *,
        clear: bool = False,
        **by_kind: Mapping[str, Any] | bool | None,
    ) -> dict[str, Any]:
        """Install faults by kind, as a mapping and/or keywords (``None`` removes one kind,
        ``True`` means "every matching request"); ``clear=True`` removes the others first.

        Example: ``set_faults(server_error={"count": 2, "endpoint": "create"})``.
        Returns the configured faults.
        """
        body: dict[str, Any] = {**(faults or {}), **by_kind}
        if clear:
            body["clear"] = True
        return dict(self._call("POST", "/admin/faults", body)["faults"])

    def faults(self) -> dict[str, Any]:
        """The configured faults."""
        return dict(self._call("GET", "/admin/faults")["faults"])

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._call("DELETE", "/admin/faults")

    def reset(self, credits: float | None = None) -> None:
        """Forget tasks, statistics, rate windows and faults; restore (or set) the balance."""
        self._call("POST", "/admin/reset", {} if credits is None else {"credits": credits})

    def set_credits(self, balance: float) -> None:
        """Set the account balance."""
        self._call("POST", "/admin/credits", {"balance": balance})

    def tasks(self) -> list[dict[str, Any]]:
        """Every task the emulator holds (``GET /admin/tasks``): id, model, state, prompt, seed,
        ``num_images``, ``callBackUrl``, ``creditsConsumed``, ``created`` — for tests that must
        prove which request got which task."""
        return list(self._call("GET", "/admin/tasks")["tasks"])

    def stats(self) -> dict[str, Any]:
        """The counters of ``GET /admin/stats``."""
        return self._call("GET", "/admin/stats")


class EmulatorProcess(ServerProcess):
    """``python -m dagster_kie.emulator`` as a child process, stopped by PID.

    Args:
        settings: Base settings; keyword arguments override its fields (``task_duration=``,
            ``create_limit=``, ``webhook_hmac_key=``, ``faults=``, ``api_key=`` for one key, …).
        python: The interpreter (default: the current one).
        log_path: Where the child's output goes (default: kept in memory, see ``tail()``).
        start_timeout: Seconds to wait for the ready line.
        env: Extra environment variables.
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        python: str | None = None,
        log_path: str | Path | None = None,
        start_timeout: float = 30.0,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        if "faults" in overrides:
            overrides["faults"] = _fault_strings(overrides["faults"])
        if "api_key" in overrides:
            overrides["api_keys"] = (overrides.pop("api_key"),)
        if "api_keys" in overrides:
            overrides["api_keys"] = tuple(overrides["api_keys"])
        self.settings = (settings or EmulatorSettings()).replace(**overrides)
        super().__init__(
            [python or sys.executable, "-m", "dagster_kie.emulator", *self.settings.to_argv()],
            name="kie-emulator",
            ready_line=parse_ready_line,
            env=package_env(env),
            log_path=log_path,
            start_timeout=start_timeout,
        )
        self.startup_seconds: float | None = None

    def start(self) -> Self:
        """Start the child and wait for its ready line."""
        began = time.perf_counter()
        super().start()
        self.startup_seconds = time.perf_counter() - began
        return self

    @property
    def info(self) -> dict[str, Any]:
        """The ready line's JSON (``base_url``, ``upload_base_url``, ``api_key``, ``pid``)."""
        if not isinstance(self.ready_value, dict):
            raise RuntimeError("the emulator is not running")
        return self.ready_value

    @property
    def base_url(self) -> str:
        """Jobs API base URL, e.g. ``http://127.0.0.1:PORT``."""
        return str(self.info["base_url"])

    @property
    def upload_base_url(self) -> str:
        """Upload API base URL, ``<base_url>/upload``."""
        return str(self.info["upload_base_url"])

    @property
    def api_key(self) -> str:
        """An API key the emulator accepts."""
        return str(self.info["api_key"])

    @property
    def admin(self) -> EmulatorAdmin:
        """Admin API helpers (faults, reset, stats)."""
        return EmulatorAdmin(self.base_url)

    def client_options(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments that point a :class:`~dagster_kie.KieClient` or
        :class:`~dagster_kie.AsyncKieClient` at this emulator.

        Its API key and URLs, and result downloads from loopback allowed (clients refuse private
        addresses unless told). ``options`` are added and win.

        Example::

            async with AsyncKieClient(**emu.client_options(max_retries=2)) as client:
                record = await client.generate(request)
        """
        return {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "upload_base_url": self.upload_base_url,
            "download_policy": DownloadPolicy(allow_private_addresses=True),
            **options,
        }
