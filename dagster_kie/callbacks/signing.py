"""kie.ai webhook signatures: ``X-Webhook-Signature`` = base64(HMAC-SHA256(key, "taskId.ts")).

Example:
    >>> sig = sign("task_1", 1700000000, "k")
    >>> verify("task_1", "1700000000", sig, "k", now=1700000010)  # passes silently
    >>> verify("task_1", "1700000000", sig, "other", now=1700000010)
    Traceback (most recent call last):
    ...
    dagster_kie.callbacks.errors.CallbackRejected: bad signature
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

from .errors import CallbackRejected

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallbackRejected",
    "sign",
    "verify",
]

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
"""Unix seconds at which kie.ai signed the callback."""
SIGNATURE_HEADER = "X-Webhook-Signature"
"""base64(HMAC-SHA256(webhookHmacKey, f"{taskId}.{timestamp}"))."""

_DIGITS = re.compile(r"^[0-9]{1,20}$")
_MILLISECONDS_ABOVE = 100_000_000_000  # a "seconds" value this large is really milliseconds


def _as_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8")


def sign(task_id: str, timestamp: int | str, key: str | bytes) -> str:
    """The signature kie.ai sends for ``task_id`` at ``timestamp``.

    Args:
        task_id: The task id (``data.taskId`` of the callback).
        timestamp: Unix seconds, as sent in ``X-Webhook-Timestamp``.
        key: The account's ``webhookHmacKey``.

    Returns:
        base64(HMAC-SHA256(key, f"{task_id}.{timestamp}")).
    """
    message = f"{task_id}.{timestamp}".encode()
    digest = hmac.new(_as_bytes(key), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    task_id: str,
    timestamp_header: str | None,
    signature_header: str | None,
    key: str | bytes,
    *,
    now: float | None = None,
    max_age_s: float = 300,
) -> None:
    """Check a callback's signature headers; return quietly if they are good.

    The signature is compared in constant time. A timestamp older than ``max_age_s`` or more than
    ``max_age_s`` in the future is refused (a replayed or forged callback). A timestamp in
    milliseconds is accepted too (the signature covers the header exactly as sent).

    Args:
        task_id: The callback's task id.
        timestamp_header: The ``X-Webhook-Timestamp`` header (``None`` if absent).
        signature_header: The ``X-Webhook-Signature`` header (``None`` if absent).
        key: The account's ``webhookHmacKey``.
        now: The current Unix time (default: the clock).
        max_age_s: Largest accepted distance between the timestamp and ``now``.

    Raises:
        CallbackRejected: With status 401 and a reason without secrets.
    """
    if not timestamp_header or not signature_header:
        raise CallbackRejected("missing signature headers", 401)
    stamp = timestamp_header.strip()
    if not _DIGITS.match(stamp):
        raise CallbackRejected("timestamp is not an integer", 401)
    expected = sign(task_id, stamp, key).encode("ascii")
    given = signature_header.strip().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given):
        raise CallbackRejected("bad signature", 401)
    signed_at = int(stamp)
    if signed_at > _MILLISECONDS_ABOVE:
        signed_at //= 1000
    age = (time.time() if now is None else now) - signed_at
    if age > max_age_s:
        raise CallbackRejected("stale timestamp", 401)
    if age < -max_age_s:
        raise CallbackRejected("timestamp in the future", 401)
