"""Start the callback receiver as a child process (on loopback, stopped by PID).

Example::

    env = {"AWS_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": ..., ...}
    with CallbackReceiverProcess(bucket="b", hmac_key="k", env=env) as receiver:
        url = callback_url_for(receiver.url, request_id)

Does not import starlette, uvicorn or boto3.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .._process import ServerProcess, package_env, ready_json
from .urls import DEFAULT_PATH

__all__ = ["READY_MARKER", "CallbackReceiverProcess", "parse_ready_line"]

READY_MARKER = "KIE_CALLBACKS_READY"
DEFAULT_HMAC_KEY_ENV = "KIE_WEBHOOK_HMAC_KEY"

parse_ready_line = ready_json(READY_MARKER)
"""The JSON of a ``KIE_CALLBACKS_READY {...}`` line, or ``None`` for any other line."""


class CallbackReceiverProcess(ServerProcess):
    """``python -m dagster_kie.callbacks`` as a child process.

    The HMAC key is handed over in the child's environment (``hmac_key_env``), never on its
    command line; it is not kept in any attribute shown by ``repr``.

    Args:
        bucket: S3 bucket of the ledger and the inbox.
        prefix: S3 key prefix.
        hmac_key: kie.ai's ``webhookHmacKey``; ``None`` accepts unsigned callbacks.
        host: Interface to bind.
        port: Port (0: a free one).
        path: Callback path.
        env: Extra environment for the child (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
        hmac_key_env: Name of the variable that carries the key.
        max_body_bytes: Largest accepted body.
        max_age_s: Signature timestamp tolerance.
        python: The interpreter (default: the current one).
        log_path: Where the child's output goes (default: kept in memory, see ``tail()``).
        start_timeout: Seconds to wait for the ready line.
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "kie",
        hmac_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = DEFAULT_PATH,
        env: dict[str, str] | None = None,
        hmac_key_env: str = DEFAULT_HMAC_KEY_ENV,
        max_body_bytes: int = 1_000_000,
        max_age_s: float = 300,
        python: str | None = None,
        log_path: str | Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        argv = [
            python or sys.executable,
            "-m",
            "dagster_kie.callbacks",
            "--host", host,
            "--port", str(port),
            "--bucket", bucket,
            "--prefix", prefix,
            "--path", path,
            "--max-body-bytes", str(max_body_bytes),
            "--max-age-s", str(max_age_s),
        ]  # fmt: skip
        child_env = package_env(env)
        if hmac_key:
            argv += ["--hmac-key-env", hmac_key_env]
            child_env[hmac_key_env] = hmac_key
        super().__init__(
            argv,
            name="kie-callbacks",
            ready_line=parse_ready_line,
            env=child_env,
            log_path=log_path,
            start_timeout=start_timeout,
        )
        self.bucket = bucket
        self.prefix = prefix
        self.signed = bool(hmac_key)

    def __repr__(self) -> str:
        return (
            f"CallbackReceiverProcess(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"signed={self.signed})"
        )

    @property
    def info(self) -> dict[str, Any]:
        """The ready line's JSON (``url``, ``pid``)."""
        if not isinstance(self.ready_value, dict):
            raise RuntimeError("the callback receiver is not running")
        return self.ready_value

    @property
    def url(self) -> str:
        """The callback URL, e.g. ``http://127.0.0.1:PORT/kie/callback``."""
        return str(self.info["url"])

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the receiver."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"
