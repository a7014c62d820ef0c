"""Start and stop local server processes (the emulator, SeaweedFS) by PID.

Used by the demo, the tests and the benchmarks. Every process is started in its own session so
that stopping it never touches anything else, and it is stopped by its PID, never by name.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ServerProcess", "ServerStartError", "free_port", "package_env", "ready_json"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class ServerStartError(RuntimeError):
    """A local server did not become ready in time (its last output lines are in the message)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready_json(marker: str) -> Callable[[str], dict[str, Any] | None]:
    """A ``ready_line`` parser: the JSON object of a ``{marker} {...}`` line, ``None`` otherwise."""
    prefix = marker + " "

    def parse(line: str) -> dict[str, Any] | None:
        if not line.startswith(prefix):
            return None
        info = json.loads(line[len(prefix) :])
        return info if isinstance(info, dict) else None

    return parse


def package_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``python -m dagster_kie...`` child: this checkout first on
    ``PYTHONPATH``, unbuffered output, then ``env``."""
    python_path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + python_path if python_path else ""),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


class ServerProcess:
    """A child server process, started on loopback and stopped by PID.

    Args:
        argv: The command line.
        name: A short name used in errors.
        ready_line: Called with each output line until it returns something other than ``None``;
            that value is kept in :attr:`ready_value`. Use it for servers that announce themselves.
        ready_probe: Called repeatedly until it returns ``True``; for servers that do not announce
            themselves (probe an HTTP endpoint instead).
        env: Extra environment variables for the child.
        cwd: Working directory of the child.
        log_path: Where the child's output is written (kept in memory otherwise).
        start_timeout: Seconds to wait for readiness.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        ready_line: Callable[[str], object | None] | None = None,
        ready_probe: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: str | Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self._ready_line = ready_line
        self._ready_probe = ready_probe
        self._env = env
        self._cwd = cwd
        self._log_path = Path(log_path) if log_path else None
        self._start_timeout = start_timeout
        self._tail: collections.deque[str] = collections.deque(maxlen=50)
        self._ready_event = threading.Event()
        self.ready_value: object | None = None
        self.process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        """PID of the running child."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> Self:
        """Start the child and block until it is ready."""
        env = {**os.environ, **(self._env or {})}
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
            cwd=self._cwd,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, name=f"{self.name}-output", daemon=True).start()
        deadline = time.monotonic() + self._start_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"{self.name} exited with code {self.process.returncode}:\n" + self.tail()
                    )
                if self._ready_line is not None:
                    if self._ready_event.wait(0.05):
                        if self._ready_probe is None:
                            return self
                        self._ready_line = None
                    continue
                if self._ready_probe is not None and self._ready_probe():
                    return self
                time.sleep(0.1)
            raise ServerStartError(
                f"{self.name} was not ready after {self._start_timeout:.0f} s:\n" + self.tail()
            )
        except BaseException:
            self.stop()
            raise

    def tail(self) -> str:
        """The last lines the child printed."""
        return "\n".join(self._tail)

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        log = self._log_path.open("a", encoding="utf-8") if self._log_path else None
        try:
            for line in self.process.stdout:
                self._tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
                if not self._ready_event.is_set() and self._ready_line is not None:
                    value = self._ready_line(line.strip())
                    if value is not None:
                        self.ready_value = value
                        self._ready_event.set()
        finally:
            if log is not None:
                log.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child by PID: SIGTERM to its process group, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
