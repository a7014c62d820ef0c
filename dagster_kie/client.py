"""``KieClient`` and ``AsyncKieClient``: kie.ai's jobs, upload, credit and Remix APIs over httpx.

Both clients run the same operations from :mod:`dagster_kie._operations` (each written once, as a
generator of effects); the only code that differs here is how an effect is performed — sending
with ``httpx.Client`` or ``httpx.AsyncClient``, sleeping with ``time.sleep`` (in short,
interruptible slices) or ``asyncio.sleep`` — and the one-line methods that hand an operation to
the driver.

Example:
    .. code-block:: python

        from dagster_kie.client import KieClient

        with KieClient() as client:  # the key comes from KIE_API_KEY
            record = client.generate(
                {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a red fox"}}
            )
            with client.stream_download(record.result_urls[0]) as download:
                with open("fox.png", "wb") as sink:
                    for chunk in download.iter_bytes():
                        sink.write(chunk)
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from dagster_kie._operations import AnyRequest, EventHook, KieCore
from dagster_kie._protocol import (
    CallExternal,
    Close,
    Effect,
    Resolve,
    RetrySettings,
    Send,
    Sleep,
    Step,
    transport_error,
)
from dagster_kie._transport import async_transport
from dagster_kie._uploads import UploadMethod, UploadSource
from dagster_kie.download import AsyncDownload, Download, DownloadGuard, DownloadPolicy
from dagster_kie.errors import AuthenticationError
from dagster_kie.models import RemixImageRequest, RemixResult, TaskRecord, UploadedFile
from dagster_kie.polling import DurationEstimator, PollingPolicy, PollingStats
from dagster_kie.rate_limit import RateLimiter, RateLimits

__all__ = ["API_KEY_ENV", "AsyncKieClient", "KieClient"]

T = TypeVar("T")

API_KEY_ENV = "KIE_API_KEY"
"""Environment variable the clients read the API key from when none is passed."""
BASE_URL_ENV = "KIE_BASE_URL"
"""Environment variable read for the jobs API base URL when none is passed."""
UPLOAD_BASE_URL_ENV = "KIE_UPLOAD_BASE_URL"
"""Environment variable read for the file-upload base URL when none is passed."""
DEFAULT_BASE_URL = "https://api.kie.ai"
DEFAULT_UPLOAD_BASE_URL = "https://kieai.redpandaai.co"

_SLEEP_SLICE_S = 0.25
DEFAULT_MAX_CONNECTIONS = 32
"""Connections per client: enough for 100 queries/s plus a createTask burst and 16 downloads."""
_DEFAULT_REMIX_TASK_PATH = "/ideogram/tasks/{task_id}"


def _interruptible_sleep(seconds: float) -> None:
    """``time.sleep`` in short slices, so interrupts and signals are handled promptly."""
    end = time.monotonic() + seconds
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, _SLEEP_SLICE_S))


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _kept(result: Any) -> set[int]:
    items = result if isinstance(result, tuple) else (result,)
    return {id(item) for item in items if isinstance(item, httpx.Response)}


class _SyncDriver:
    """Performs effects with an ``httpx.Client``."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.sleep: Callable[[float], None] = _interruptible_sleep
        self.resolve: Callable[[str, int], list[str]] = _resolve

    def run(self, step: Step[T]) -> T:
        """Drive ``step`` to its end; streamed responses it opened and did not return are closed."""
        opened: list[httpx.Response] = []
        keep: set[int] = set()
        value: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = step.send(value) if error is None else step.throw(error)
                except StopIteration as stop:
                    keep = _kept(stop.value)
                    return stop.value  # type: ignore[no-any-return]
                value, error = None, None
                try:
                    value = self._perform(effect, opened)
                except Exception as exc:  # thrown back into the step at its yield
                    error = exc
        finally:
            step.close()
            for response in opened:
                if id(response) not in keep:
                    response.close()

    def _perform(self, effect: Effect, opened: list[httpx.Response]) -> Any:
        if isinstance(effect, Send):
            response = self.http.send(effect.request, stream=effect.stream)
            if effect.stream:
                opened.append(response)
            return response
        if isinstance(effect, Sleep):
            if effect.seconds > 0:
                self.sleep(effect.seconds)
            return None
        if isinstance(effect, Resolve):
            return self.resolve(effect.host, effect.port)
        if isinstance(effect, Close):
            effect.response.close()
            return None
        if isinstance(effect, CallExternal):
            return effect.fn(effect.task_id)
        raise TypeError(f"unknown effect {effect!r}")


class _AsyncDriver:
    """Performs effects with an ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.resolve: Callable[[str, int], Awaitable[list[str]]] = self._resolve

    @staticmethod
    async def _resolve(host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    async def run(self, step: Step[T]) -> T:
        """Drive ``step`` to its end; streamed responses it opened and did not return are closed."""
        opened: list[httpx.Response] = []
        keep: set[int] = set()
        value: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = step.send(value) if error is None else step.throw(error)
                except StopIteration as stop:
                    keep = _kept(stop.value)
                    return stop.value  # type: ignore[no-any-return]
                value, error = None, None
                try:
                    value = await self._perform(effect, opened)
                except Exception as exc:  # thrown back into the step at its yield
                    error = exc
        finally:
            step.close()
            for response in opened:
                if id(response) not in keep:
                    await response.aclose()

    async def _perform(self, effect: Effect, opened: list[httpx.Response]) -> Any:
        if isinstance(effect, Send):
            response = await self.http.send(effect.request, stream=effect.stream)
            if effect.stream:
                opened.append(response)
            return response
        if isinstance(effect, Sleep):
            if effect.seconds > 0:
                await self.sleep(effect.seconds)
            return None
        if isinstance(effect, Resolve):
            return await self.resolve(effect.host, effect.port)
        if isinstance(effect, Close):
            await effect.response.aclose()
            return None
        if isinstance(effect, CallExternal):
            found = effect.fn(effect.task_id)
            return await found if inspect.isawaitable(found) else found
        raise TypeError(f"unknown effect {effect!r}")


def _sync_chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc


async def _async_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc


class _ClientBase:
    """Configuration shared by both clients (see :class:`KieClient` for the arguments)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        upload_base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        rate_limits: RateLimits | None = None,
        polling: PollingPolicy | None = None,
        remix_base_url: str | None = None,
        remix_task_path: str = _DEFAULT_REMIX_TASK_PATH,
        download_policy: DownloadPolicy | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        on_event: EventHook | None = None,
        estimator: DurationEstimator | None = None,
        retry_backoff_s: tuple[float, float] = (0.5, 30.0),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
        if not key:
            raise AuthenticationError(
                f"no kie.ai API key: pass api_key=... or set the {API_KEY_ENV} environment "
                "variable (create a key at https://kie.ai/api-key)"
            )
        self.timeout = timeout
        self.max_connections = max_connections
        self._core = KieCore(
            api_key=key,
            base_url=base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
            upload_base_url=(
                upload_base_url or os.environ.get(UPLOAD_BASE_URL_ENV) or DEFAULT_UPLOAD_BASE_URL
            ),
            remix_base_url=remix_base_url,
            remix_task_path=remix_task_path,
            retry=RetrySettings(
                max_retries=max_retries,
                initial_s=retry_backoff_s[0],
                max_s=retry_backoff_s[1],
                jitter_s=retry_backoff_s[0],
                not_found_initial_s=retry_backoff_s[0],
            ),
            rate_limits=rate_limits or RateLimits(),
            polling=polling or PollingPolicy(),
            estimator=estimator,
            download_policy=download_policy or DownloadPolicy(),
            on_event=on_event,
        )
        self._setup(transport)

    def _setup(self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """Jobs API base URL."""
        return self._core.base_url

    @property
    def upload_base_url(self) -> str:
        """File-upload API base URL."""
        return self._core.upload_base_url

    @property
    def polling_stats(self) -> PollingStats:
        """kie.ai polls per finished wait (for benchmarks: ``polling_stats.summary()``)."""
        return self._core.stats

    @property
    def estimator(self) -> DurationEstimator:
        """The learned task durations per model."""
        return self._core.estimator

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter every call of this client goes through."""
        return self._core.limiter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key='***')"

    def _http_options(self) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(self.timeout),
            "follow_redirects": False,
            # Keep-alive = max: httpcore checks every pooled connection on each request, and
            # connections above the keep-alive count would be closed and reopened in bursts.
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
        }


class KieClient(_ClientBase):
    """A synchronous kie.ai client (thread-safe; one rate limiter for all its threads).

    Args:
        api_key: kie.ai API key; default: the ``KIE_API_KEY`` environment variable.
        base_url: Jobs API base URL; default: ``KIE_BASE_URL``, else https://api.kie.ai.
        upload_base_url: File-upload API base URL; default: ``KIE_UPLOAD_BASE_URL``, else
            https://kieai.redpandaai.co.
        timeout: Timeout of one HTTP call, in seconds.
        max_retries: Retries of a call that is safe to repeat.
        rate_limits: Client-side pacing (default :class:`RateLimits`: 20 createTask per 10 s,
            10 queries per second).
        polling: When to poll tasks (default :class:`PollingPolicy`).
        remix_base_url: Remix aggregator base URL (default: ``base_url``).
        remix_task_path: Remix task query path with ``{task_id}`` — *assumed* (seed 004 does not
            document one); keep it configurable.
        download_policy: What :meth:`stream_download` may fetch (default :class:`DownloadPolicy`).
        transport: An httpx transport (e.g. ``httpx.MockTransport`` in tests).
        on_event: Usage hook, called as ``("task_created", task_id)`` and
            ``("task_finished", record)``.
        estimator: A task-duration estimator to share between clients.
        retry_backoff_s: (first, longest) backoff between retries, in seconds (doubling, with
            jitter; a ``Retry-After`` may ask for longer).
        max_connections: HTTP connections kept open at most (all kept alive between calls).

    Raises:
        AuthenticationError: No API key was given or found in the environment.
    """

    def _setup(self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError("KieClient needs a sync transport (httpx.BaseTransport)")
        self._http = httpx.Client(transport=transport, **self._http_options())
        self._driver = _SyncDriver(self._http)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KieClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create_task(
        self, request: AnyRequest | Mapping[str, Any], *, callback_url: str | None = None
    ) -> str:
        """Create a task (``POST /api/v1/jobs/createTask``).

        Args:
            request: A typed request (:func:`~dagster_kie.models.parse_request`) or a createTask
                body, validated first: nothing is sent if it is invalid.
            callback_url: Where kie.ai posts the result (``callBackUrl``).

        Returns:
            The task id.

        Raises:
            pydantic.ValidationError: The request is invalid (nothing was sent).
            KieError: kie.ai refused it. The call is resent only when it provably created no
                task (connection refused, 429/433/455); after a read timeout, a dropped
                connection, a 500 or a malformed reply the task may exist, so the error
                (``TransportError.request_sent`` is True, or code 500/None) is raised instead.
        """
        return self._driver.run(self._core.create_task(request, callback_url=callback_url))

    def get_task(self, task_id: str) -> TaskRecord:
        """A task's details (``GET /api/v1/jobs/recordInfo``), retried on 429/455/500/network.

        Raises:
            NotFoundError: kie.ai does not know the task (after a few short retries, since a
                task created a moment ago may not be queryable yet).
        """
        return self._driver.run(self._core.get_task(task_id))

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
        model: str | None = None,
        submitted_at: float | datetime | None = None,
        external: Callable[[str], TaskRecord | None] | None = None,
    ) -> TaskRecord:
        """Poll a task until it ends, following the client's :class:`PollingPolicy`.

        Args:
            task_id: The task.
            timeout: Seconds to wait at most (default: the policy's ``deadline_s``).
            on_update: Called with the record on every state change (e.g. ``context.log``).
            model: The task's model, for learned poll times (known for tasks this client made).
            submitted_at: When the task was created (Unix seconds or datetime), if not by this
                client.
            external: ``external(task_id) -> TaskRecord | None``, consulted every
                ``PollingPolicy.external_check_interval_s`` (e.g. callback payloads in S3,
                :meth:`~dagster_kie.callbacks.CallbackInbox.get`); kie.ai polls then become a
                sparse fallback.

        Returns:
            The record of the successful task.

        Raises:
            GenerationFailedError: The task ended in ``fail`` (``fail_code``, ``fail_msg``).
            WaitTimeoutError: The deadline passed; the task may still finish (wait again).
        """
        return self._driver.run(
            self._core.wait(
                task_id,
                timeout=timeout,
                on_update=on_update,
                model=model,
                submitted_at=submitted_at,
                external=external,
            )
        )

    def generate(
        self,
        request: AnyRequest | Mapping[str, Any],
        *,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """Create a task and wait for it (see :meth:`create_task` and :meth:`wait`)."""
        return self._driver.run(
            self._core.generate(
                request, callback_url=callback_url, timeout=timeout, on_update=on_update
            )
        )

    def upload_file(
        self,
        source: UploadSource,
        *,
        upload_path: str = "dagster-kie",
        file_name: str | None = None,
        method: UploadMethod = "auto",
        image: bool = True,
    ) -> UploadedFile:
        """Upload a file to kie.ai's file-upload API; pass ``.url`` as an ``image_url``.

        Args:
            source: A local path, bytes, a binary file object, or an http(s) URL.
            upload_path: Folder on the upload service.
            file_name: Stored name (default: stable, from the content's hash).
            method: ``auto`` (URL → url upload; ≤ 10 MB → base64; bigger → streamed multipart),
                ``url``, ``base64`` or ``stream``.
            image: Check it is a JPEG/PNG/WebP of at most 10 MB (model inputs); ``False``
                accepts any file up to 100 MB.

        Raises:
            InvalidRequestError: The file is missing, too large, or not an accepted image
                (nothing was sent).
        """
        return self._driver.run(
            self._core.upload_file(
                source, upload_path=upload_path, file_name=file_name, method=method, image=image
            )
        )

    def get_credits(self) -> float:
        """The account's credit balance (``GET /api/v1/chat/credit``)."""
        return self._driver.run(self._core.get_credits())

    def get_download_url(self, url: str) -> str:
        """A fresh temporary URL (20 minutes) for a kie.ai result URL."""
        return self._driver.run(self._core.get_download_url(url))

    @contextmanager
    def stream_download(self, url: str) -> Iterator[Download]:
        """Download a result image in chunks, under the client's :class:`DownloadPolicy`.

        An expired result URL (403/404/410) is refreshed once through :meth:`get_download_url`.

        Yields:
            A :class:`~dagster_kie.download.Download` (``.content_type``, ``.url``,
            ``.iter_bytes()``), its first bytes already checked to be PNG/JPEG/WebP.

        Raises:
            DownloadRefusedError: The URL, its address, a redirect, the type or the size broke
                the policy.
        """
        final_url, content_type, response, guard = self._driver.run(self._core.open_download(url))
        try:
            chunks = _sync_chunks(response)
            head = _sync_head(chunks, guard)
            yield Download(final_url, content_type, response, head, guard, chunks)
        finally:
            response.close()

    def remix(
        self,
        image: UploadSource,
        request: RemixImageRequest | Mapping[str, Any],
        *,
        file_name: str | None = None,
    ) -> RemixResult:
        """Ideogram Remix through the aggregator (``POST {remix_base_url}/ideogram/remix``).

        Accepts both reply shapes: seed 004's queued task (``task_id``, ``status``) and Ideogram's
        synchronous images. Not resent unless the request provably did not arrive.

        Args:
            image: The source image: a local path, bytes or a binary file (JPEG/PNG/WebP, ≤ 10 MB).
            request: The ``image_request`` (validated first).
            file_name: Name of the multipart file part.
        """
        return self._driver.run(self._core.remix(image, request, file_name=file_name))

    def get_remix_task(self, task_id: str) -> RemixResult:
        """A Remix task's state at ``remix_task_path`` (an *assumed* path, configurable)."""
        return self._driver.run(self._core.get_remix_task(task_id))


class AsyncKieClient(_ClientBase):
    """The asyncio twin of :class:`KieClient`: same arguments, same methods, awaited.

    One rate limiter paces every task of the event loop that uses the client. ``external`` in
    :meth:`wait` may be an async callable.
    """

    def _setup(self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError("AsyncKieClient needs an async transport (httpx.AsyncBaseTransport)")
        options = self._http_options()
        if transport is None:
            transport = async_transport(options["limits"])
        self._http = httpx.AsyncClient(transport=transport, **options)
        self._driver = _AsyncDriver(self._http)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKieClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def create_task(
        self, request: AnyRequest | Mapping[str, Any], *, callback_url: str | None = None
    ) -> str:
        """See :meth:`KieClient.create_task`."""
        return await self._driver.run(self._core.create_task(request, callback_url=callback_url))

    async def get_task(self, task_id: str) -> TaskRecord:
        """See :meth:`KieClient.get_task`."""
        return await self._driver.run(self._core.get_task(task_id))

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
        model: str | None = None,
        submitted_at: float | datetime | None = None,
        external: Callable[[str], Awaitable[TaskRecord | None] | TaskRecord | None] | None = None,
    ) -> TaskRecord:
        """See :meth:`KieClient.wait` (``external`` may be async)."""
        return await self._driver.run(
            self._core.wait(
                task_id,
                timeout=timeout,
                on_update=on_update,
                model=model,
                submitted_at=submitted_at,
                external=external,
            )
        )

    async def generate(
        self,
        request: AnyRequest | Mapping[str, Any],
        *,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """See :meth:`KieClient.generate`."""
        return await self._driver.run(
            self._core.generate(
                request, callback_url=callback_url, timeout=timeout, on_update=on_update
            )
        )

    async def upload_file(
        self,
        source: UploadSource,
        *,
        upload_path: str = "dagster-kie",
        file_name: str | None = None,
        method: UploadMethod = "auto",
        image: bool = True,
    ) -> UploadedFile:
        """See :meth:`KieClient.upload_file`."""
        return await self._driver.run(
            self._core.upload_file(
                source, upload_path=upload_path, file_name=file_name, method=method, image=image
            )
        )

    async def get_credits(self) -> float:
        """See :meth:`KieClient.get_credits`."""
        return await self._driver.run(self._core.get_credits())

    async def get_download_url(self, url: str) -> str:
        """See :meth:`KieClient.get_download_url`."""
        return await self._driver.run(self._core.get_download_url(url))

    @asynccontextmanager
    async def stream_download(self, url: str) -> AsyncIterator[AsyncDownload]:
        """See :meth:`KieClient.stream_download`; yields an :class:`AsyncDownload`
        (``aiter_bytes()``)."""
        final_url, content_type, response, guard = await self._driver.run(
            self._core.open_download(url)
        )
        try:
            chunks = _async_chunks(response)
            head = await _async_head(chunks, guard)
            yield AsyncDownload(final_url, content_type, response, head, guard, chunks)
        finally:
            await response.aclose()

    async def remix(
        self,
        image: UploadSource,
        request: RemixImageRequest | Mapping[str, Any],
        *,
        file_name: str | None = None,
    ) -> RemixResult:
        """See :meth:`KieClient.remix`."""
        return await self._driver.run(self._core.remix(image, request, file_name=file_name))

    async def get_remix_task(self, task_id: str) -> RemixResult:
        """See :meth:`KieClient.get_remix_task`."""
        return await self._driver.run(self._core.get_remix_task(task_id))


def _sync_head(chunks: Iterator[bytes], guard: DownloadGuard) -> bytes:
    """Read until the image signature is checked (or the body ends)."""
    for chunk in chunks:
        head = guard.feed(chunk)
        if head:
            return head
    return guard.finish()


async def _async_head(chunks: AsyncIterator[bytes], guard: DownloadGuard) -> bytes:
    """Read until the image signature is checked (or the body ends)."""
    async for chunk in chunks:
        head = guard.feed(chunk)
        if head:
            return head
    return guard.finish()
