"""Typed errors for every way a kie.ai call can fail.

The tree, in the style of httpx's exceptions module::

    KieError                      code, message, task_id, retryable, status_code
    ├── AuthenticationError       401: missing or invalid API key            (never retried)
    ├── InsufficientCreditsError  402: the account cannot pay                (never retried)
    ├── NotFoundError             404, and 422 "recordInfo is null"          (never retried)
    ├── InvalidRequestError       400 / 422: parameters failed validation    (never retried)
    ├── RateLimitError            429: too many requests                     (retried)
    │   └── UsageLimitError       433: a sub-key's usage limit               (retried)
    ├── MaintenanceError          455: service under maintenance             (retried)
    ├── ServerError               500: unexpected server error               (retried)
    ├── GenerationFailedError     501, or a task that ended in state "fail"
    ├── FeatureDisabledError      505: the feature is switched off           (never retried)
    ├── EdgeBlockedError          HTTP 403 "error code: 1010" (no User-Agent)
    ├── TransportError            the network failed (connect, read, reset)  (retried if safe)
    ├── MalformedResponseError    a reply that is not the documented JSON    (retried if safe)
    ├── DownloadRefusedError      a download broke the DownloadPolicy        (never retried)
    ├── WaitTimeoutError          a task did not finish before the deadline (resume later)
    └── BudgetExceededError       the next submission would cross a credit budget

``retryable`` says whether the same call may succeed later. Whether a call is *safe* to repeat is
a separate question the client answers: a ``createTask`` is only resent when the request provably
did not create a task.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "DownloadRefusedError",
    "EdgeBlockedError",
    "FeatureDisabledError",
    "GenerationFailedError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "KieError",
    "MaintenanceError",
    "MalformedResponseError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UsageLimitError",
    "WaitTimeoutError",
    "error_from_reply",
]


class KieError(Exception):
    """Base class of every dagster-kie error raised for a kie.ai call.

    Attributes:
        code: The envelope's ``code`` (or the HTTP status when there was no envelope).
        message: The server's message (``msg``/``message``), or ours.
        task_id: The task concerned, when known.
        retryable: Whether the same call may succeed if made again later.
        status_code: The HTTP status of the reply, when there was one.
    """

    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        task_id: str | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.task_id = task_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.status_code = status_code

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"(code {self.code})")
        if self.task_id:
            parts.append(f"[task {self.task_id}]")
        return " ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps errors picklable across Dagster's process boundaries with their attributes.
        return (_rebuild_error, (type(self), self.message, self.__dict__))


def _rebuild_error(cls: type[KieError], message: str, state: dict[str, object]) -> KieError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthenticationError(KieError):
    """401: the API key is missing or invalid. Check ``KIE_API_KEY``; never retried."""


class InsufficientCreditsError(KieError):
    """402: the account has too few credits for this request. Top up; never retried."""


class NotFoundError(KieError):
    """404 (or 422 "recordInfo is null"): the task or endpoint does not exist."""


class InvalidRequestError(KieError):
    """400/422: kie.ai rejected the parameters. The message says which; never retried."""


class RateLimitError(KieError):
    """429: too many requests. The request was rejected, not queued; retried with backoff.

    Attributes:
        retry_after: Seconds the server asked us to wait, when it said so.
    """

    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UsageLimitError(RateLimitError):
    """433: a sub-key's usage limit was reached."""


class MaintenanceError(KieError):
    """455: kie.ai is under maintenance. Retried with backoff."""

    default_retryable = True


class ServerError(KieError):
    """500: an unexpected server error. Retried with backoff, a bounded number of times."""

    default_retryable = True


class GenerationFailedError(KieError):
    """501, or a task that ended in state ``fail``. Failed tasks are not charged.

    Attributes:
        fail_code: The task's ``failCode``.
        fail_msg: The task's ``failMsg``.
    """

    _PERMANENT_HINTS = ("sensitive", "moderation", "safety", "nsfw", "policy", "prohibited")

    def __init__(
        self,
        message: str,
        *,
        fail_code: str | None = None,
        fail_msg: str | None = None,
        **kwargs: object,
    ) -> None:
        if kwargs.get("retryable") is None:
            # A content-policy rejection fails again; anything else may succeed on a new task.
            text = f"{fail_msg or ''} {message}".lower()
            kwargs["retryable"] = not any(hint in text for hint in self._PERMANENT_HINTS)
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.fail_code = fail_code
        self.fail_msg = fail_msg


class FeatureDisabledError(KieError):
    """505: the feature is disabled for this account or model; never retried."""


class EdgeBlockedError(KieError):
    """HTTP 403 "error code: 1010": kie.ai's edge refused the request (usually no User-Agent)."""


class TransportError(KieError):
    """The network failed: connection refused, reset, or a timeout.

    Attributes:
        request_sent: False only when the request provably never reached the server (the
            connection was refused or could not be opened); then even a ``createTask`` may be
            resent safely.
    """

    default_retryable = True

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.request_sent = request_sent


class MalformedResponseError(KieError):
    """The reply was not the documented JSON envelope."""

    default_retryable = True


class DownloadRefusedError(KieError):
    """A download was refused by the client's ``DownloadPolicy``: a scheme other than http(s),
    a private or loopback address (allowed only by ``KieResource(allow_private_downloads=True)``
    or ``dagster-kie --allow-private-downloads``, for a local emulator), a redirect to a host not
    allowed, a reply that is not an image, or a file larger than the size cap. Never retried."""


class WaitTimeoutError(KieError):
    """A task did not finish before the deadline. It may still finish: resume waiting later."""

    default_retryable = True


class BudgetExceededError(KieError):
    """The next submission would cross the credit budget the user allowed; nothing was sent."""


_BY_CODE: Mapping[int, type[KieError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    422: InvalidRequestError,
    429: RateLimitError,
    433: UsageLimitError,
    455: MaintenanceError,
    500: ServerError,
    501: GenerationFailedError,
    505: FeatureDisabledError,
}


def error_from_reply(
    code: int,
    message: str,
    *,
    status_code: int | None = None,
    task_id: str | None = None,
    retry_after: float | None = None,
) -> KieError:
    """Map a kie.ai reply code (envelope ``code`` or HTTP status) to its typed error.

    Args:
        code: The envelope's ``code``, or the HTTP status when the body had none.
        message: The server's message.
        status_code: The HTTP status of the reply.
        task_id: The task concerned, when known.
        retry_after: Seconds from a ``Retry-After`` header.

    Returns:
        The error to raise (not raised here).
    """
    if code == 422 and "recordinfo is null" in message.lower():
        return NotFoundError(message, code=code, task_id=task_id, status_code=status_code)
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = ServerError if code >= 500 else InvalidRequestError
    if issubclass(cls, RateLimitError):
        return cls(
            message, code=code, task_id=task_id, status_code=status_code, retry_after=retry_after
        )
    return cls(message, code=code, task_id=task_id, status_code=status_code)
