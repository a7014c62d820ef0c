"""The sans-I/O core shared by :class:`~dagster_kie.client.KieClient` and its async twin.

Every operation is written once, as a generator of *effects*: it yields :class:`Send` (an
``httpx.Request`` to send), :class:`Sleep`, :class:`Resolve` (a host name to look up) or
:class:`CallExternal` and receives the outcome; a thin sync driver and a thin async driver perform
the effects (``client.send`` or ``await client.send``, ``time.sleep`` or ``await asyncio.sleep``)
and nothing else. Exceptions raised by an effect are thrown back into the generator at the
``yield``, so retries, rate limiting and error mapping live here, once.

This module holds the building blocks: the effects, request headers, the kie.ai envelope parser,
``Retry-After`` parsing, the retry rules and a tenacity-driven retry loop for generators.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, TypeVar

import httpx
from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    stop_after_attempt,
)

from dagster_kie import __version__
from dagster_kie.errors import (
    EdgeBlockedError,
    KieError,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_reply,
)

__all__ = [
    "USER_AGENT",
    "CallExternal",
    "Close",
    "Effect",
    "Resolve",
    "RetrySettings",
    "Secret",
    "Send",
    "Sleep",
    "Step",
    "parse_envelope",
    "parse_retry_after",
    "retrying",
    "send",
    "should_retry",
    "transport_error",
]

logger = logging.getLogger("dagster_kie")

T = TypeVar("T")

USER_AGENT = f"dagster-kie/{__version__} httpx/{httpx.__version__}"
"""kie.ai's edge answers ``403 error code: 1010`` to requests without a real User-Agent."""

MAX_RETRY_AFTER_S = 300.0
"""A ``Retry-After`` longer than this is clamped (a broken header must not stall a run)."""


class Secret:
    """An API key that never shows itself: ``repr``, ``str`` and ``vars`` of its holders print
    ``'***'``; only :meth:`reveal` (used to build the ``Authorization`` header) returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***``."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an API key is not picklable; pass it again where it is needed")


# --- Effects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send a request; the driver answers with the ``httpx.Response``.

    With ``stream=True`` the body is not read: the driver closes the response when the
    operation fails, otherwise whoever receives it does.
    """

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (interruptibly); the driver answers ``None``."""

    seconds: float


@dataclass(frozen=True)
class Resolve:
    """Look up ``host``; the driver answers with the list of its IP addresses."""

    host: str
    port: int


@dataclass(frozen=True)
class Close:
    """Close a streamed response that is no longer needed."""

    response: httpx.Response


@dataclass(frozen=True)
class CallExternal:
    """Call ``fn(task_id)`` (awaited when it returns an awaitable); answers its result."""

    fn: Callable[[str], Any]
    task_id: str


Effect = Send | Sleep | Resolve | Close | CallExternal
Step = Generator[Effect, Any, T]
"""An operation: yields effects, receives their outcomes, returns ``T``."""


def send(request: httpx.Request, *, stream: bool = False) -> Step[httpx.Response]:
    """Send one request, mapping network failures to :class:`TransportError`."""
    try:
        response: httpx.Response = yield Send(request, stream)
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc
    return response


# --- Network errors ----------------------------------------------------------------------------

_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def transport_error(exc: Exception, *, task_id: str | None = None) -> TransportError:
    """Map an httpx network error to a :class:`TransportError`.

    ``request_sent`` is False only when the request provably never reached the server (the
    connection could not be opened); a read timeout or a dropped connection may come after the
    server acted on the request.
    """
    sent = not isinstance(exc, _NOT_SENT)
    detail = str(exc) or type(exc).__name__
    note = "the server may have received the request" if sent else "the request was not sent"
    return TransportError(
        f"network error ({type(exc).__name__}: {detail}); {note}",
        request_sent=sent,
        task_id=task_id,
    )


# --- Replies -----------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Args:
        value: The header value.
        now: The current Unix time (for HTTP dates; default ``time.time()``).

    Returns:
        Seconds in ``[0, 300]``, or ``None`` when absent or unparseable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _as_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _identity(text: str) -> str:
    return text


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def reply_json(response: httpx.Response, *, redact: Callable[[str], str] = _identity) -> Any:
    """The JSON body of a reply, or the right error when there is none.

    Raises:
        EdgeBlockedError: HTTP 403 with ``error code: 1010``.
        KieError: An HTTP error status with a non-JSON body (by status: 429, 5xx, ...).
        MalformedResponseError: A 2xx reply whose body is not JSON.
    """
    status = response.status_code
    text = response.text
    if status == 403 and "error code: 1010" in text:
        raise EdgeBlockedError(
            "kie.ai's edge refused the request (HTTP 403, error code 1010: missing or blocked "
            "User-Agent)",
            code=1010,
            status_code=403,
        )
    try:
        return response.json()
    except ValueError:
        if status >= 400:
            raise error_from_reply(
                status,
                redact(f"HTTP {status}: {_snippet(text) or response.reason_phrase}"),
                status_code=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            ) from None
        raise MalformedResponseError(
            redact(f"the reply is not JSON (HTTP {status}): {_snippet(text)!r}"),
            status_code=status,
        ) from None


def parse_envelope(
    response: httpx.Response,
    *,
    task_id: str | None = None,
    ok_codes: tuple[int, ...] = (200,),
    redact: Callable[[str], str] = _identity,
) -> Any:
    """Unwrap kie.ai's ``{"code", "msg" | "message", "data"}`` envelope.

    Success means HTTP 2xx **and** ``code`` in ``ok_codes``. Errors often arrive as HTTP 200 with
    the error in ``code``; a 429 may be a real HTTP 429.

    Args:
        response: The reply (body read).
        task_id: The task concerned, for error messages.
        ok_codes: Envelope codes that mean success.
        redact: Applied to every message taken from the reply.

    Returns:
        The envelope's ``data``.

    Raises:
        KieError: The typed error of the reply's code (see ``errors.error_from_reply``).
    """
    status = response.status_code
    body = reply_json(response, redact=redact)
    if not isinstance(body, dict):
        if status >= 400:
            raise error_from_reply(status, f"HTTP {status}", status_code=status, task_id=task_id)
        raise MalformedResponseError(
            f"the reply is not a JSON object (HTTP {status})", status_code=status, task_id=task_id
        )
    code = _as_code(body.get("code"))
    message = body.get("msg")
    if not isinstance(message, str) or not message:
        message = body.get("message")
    message = redact(message if isinstance(message, str) else "")
    if 200 <= status < 300 and code in ok_codes:
        return body.get("data")
    if code is None or code in ok_codes:
        # No usable code, or a "success" code in an HTTP error: the HTTP status decides.
        if status < 300:
            raise MalformedResponseError(
                f"the reply has no valid 'code' field: {_snippet(str(body))!r}",
                status_code=status,
                task_id=task_id,
            )
        code = status
    raise error_from_reply(
        code,
        message or f"kie.ai answered code {code}",
        status_code=status,
        task_id=task_id,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


# --- Retries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySettings:
    """How calls that are safe to repeat are retried.

    Attributes:
        max_retries: Retries after the first attempt.
        initial_s: First backoff (doubles each retry, plus jitter).
        max_s: Longest backoff (a ``Retry-After`` may ask for more, up to 300 s).
        jitter_s: Random seconds added to each backoff.
        not_found_retries: Extra attempts of a query answered "recordInfo is null" (a task
            created a moment ago).
        not_found_initial_s: First wait before re-asking about such a task (doubles).
    """

    max_retries: int = 5
    initial_s: float = 0.5
    max_s: float = 30.0
    jitter_s: float = 0.5
    not_found_retries: int = 4
    not_found_initial_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.not_found_retries < 0:
            raise ValueError("retry counts must not be negative")
        if self.initial_s < 0 or self.max_s < 0 or self.jitter_s < 0:
            raise ValueError("backoff times must not be negative")


def should_retry(error: BaseException, *, idempotent: bool) -> bool:
    """Whether a failed call may be made again.

    Args:
        error: What the attempt raised.
        idempotent: The call is safe to repeat (a query, an upload). ``createTask`` and Remix are
            not: they are only repeated when the request provably did not create anything — the
            connection could not be opened, or kie.ai rejected it with 429/433/455, which are
            documented as rejected, not queued.
    """
    if not isinstance(error, KieError):
        return False
    if isinstance(error, TransportError):
        return idempotent or not error.request_sent
    if isinstance(error, (RateLimitError, MaintenanceError)):
        return True
    if isinstance(error, (ServerError, MalformedResponseError)):
        return idempotent
    return False


def _is_not_yet_recorded(error: BaseException | None) -> bool:
    return (
        isinstance(error, NotFoundError)
        and error.code == 422
        and "recordinfo is null" in error.message.lower()
    )


@dataclass
class _Policy:
    settings: RetrySettings
    idempotent: bool
    retry_not_found: bool
    rng: random.Random = field(default_factory=random.Random)

    def retry(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        if self.retry_not_found and _is_not_yet_recorded(error):
            return state.attempt_number <= self.settings.not_found_retries
        return should_retry(error, idempotent=self.idempotent) if error else False

    def stop(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        if _is_not_yet_recorded(error):
            return state.attempt_number > self.settings.not_found_retries
        return bool(stop_after_attempt(self.settings.max_retries + 1)(state))

    def wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        n = state.attempt_number
        if _is_not_yet_recorded(error):
            return float(self.settings.not_found_initial_s * 2.0 ** (n - 1))
        s = self.settings
        backoff = min(s.max_s, s.initial_s * 2.0 ** (n - 1)) + self.rng.uniform(0, s.jitter_s)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return max(error.retry_after, backoff)
        return backoff


def _log_retry(what: str, settings: RetrySettings) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        delay = state.upcoming_sleep
        logger.info(
            "kie.ai %s failed (%s: %s); retry %d of %d in %.1f s",
            what,
            type(error).__name__,
            error,
            state.attempt_number,
            settings.max_retries,
            delay,
        )

    return before_sleep


def retrying(
    attempt: Callable[[], Step[T]],
    *,
    settings: RetrySettings,
    idempotent: bool,
    what: str,
    retry_not_found: bool = False,
) -> Step[T]:
    """Run ``attempt()`` under tenacity's retry rules, sleeping through :class:`Sleep` effects.

    tenacity decides (stop after ``max_retries``, exponential backoff with jitter, at least the
    ``Retry-After`` of a 429); this generator only performs its decisions, so the same loop
    serves the sync and the async client. Each retry's reason is logged at INFO on the
    ``dagster_kie`` logger. Only ``Exception`` is caught: ``KeyboardInterrupt``, cancellation and
    ``GeneratorExit`` always propagate at once.

    Args:
        attempt: Makes a fresh attempt (a new generator each call).
        settings: Retry counts and backoff.
        idempotent: The call is safe to repeat (see :func:`should_retry`).
        what: The call's name, for log lines.
        retry_not_found: Re-ask a few times when kie.ai says "recordInfo is null".

    Returns:
        The first successful attempt's result.

    Raises:
        KieError: The last attempt's error, when it is not retryable or retries ran out.
    """
    policy = _Policy(settings, idempotent, retry_not_found)
    controller = Retrying(
        stop=policy.stop,
        wait=policy.wait,
        retry=policy.retry,
        before_sleep=_log_retry(what, settings),
        reraise=True,
    )
    state = RetryCallState(controller, fn=None, args=(), kwargs={})
    controller.begin()
    while True:
        action = controller.iter(state)
        if isinstance(action, DoAttempt):
            try:
                result = yield from attempt()
            except Exception:
                state.set_exception(sys.exc_info())  # type: ignore[arg-type]
            else:
                state.set_result(result)
        elif isinstance(action, DoSleep):
            state.prepare_for_next_attempt()
            yield Sleep(float(action))
        else:
            return action  # type: ignore[no-any-return]
