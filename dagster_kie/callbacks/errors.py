"""The one exception of the callback receiver: a callback that must not be stored."""

from __future__ import annotations

__all__ = ["CallbackRejected", "InvalidTaskId"]


class CallbackRejected(Exception):
    """A callback was refused; ``status_code`` is the HTTP status to answer with.

    The ``reason`` is short, safe to log and to send back: it never contains the HMAC key,
    the signature or the request body.

    Args:
        reason: Why the callback was refused (e.g. ``"bad signature"``).
        status_code: The HTTP status for the reply (401 for signature failures).
    """

    def __init__(self, reason: str, status_code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"CallbackRejected({self.reason!r}, status_code={self.status_code})"


class InvalidTaskId(ValueError):
    """A task id that cannot name an S3 key safely (allowed: ``[A-Za-z0-9._-]{1,128}``)."""
