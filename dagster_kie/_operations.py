"""Every kie.ai operation, written once as a generator of effects (see ``_protocol``).

:class:`KieCore` holds what one client shares between its calls — the API key (never shown), the
base URLs, the rate limiter, the retry settings, the polling policy and its duration estimator —
and returns, for each operation, a :data:`~dagster_kie._protocol.Step` that the sync or the async
driver in :mod:`dagster_kie.client` runs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx
from pydantic import ValidationError

from dagster_kie._protocol import (
    USER_AGENT,
    CallExternal,
    Close,
    Resolve,
    RetrySettings,
    Secret,
    Sleep,
    Step,
    T,
    parse_envelope,
    parse_retry_after,
    reply_json,
    retrying,
    send,
)
from dagster_kie._uploads import (
    UploadMethod,
    UploadSource,
    build_upload_request,
    load_image,
    plan_upload,
)
from dagster_kie.download import (
    DownloadGuard,
    DownloadPolicy,
    check_addresses,
    check_headers,
    check_peer,
    check_redirect,
    check_url,
    literal_address,
    safe_url,
)
from dagster_kie.errors import (
    GenerationFailedError,
    KieError,
    MalformedResponseError,
    ServerError,
    TransportError,
    WaitTimeoutError,
    error_from_reply,
)
from dagster_kie.models import (
    CharacterRequest,
    ReframeRequest,
    RemixImage,
    RemixImageRequest,
    RemixResult,
    TaskRecord,
    TextToImageRequest,
    UploadedFile,
    parse_remix_request,
    parse_request,
)
from dagster_kie.polling import (
    DurationEstimator,
    PollingPolicy,
    PollingStats,
    PollSchedule,
    WaitingTasks,
)
from dagster_kie.rate_limit import RateLimiter, RateLimits, Ticket

__all__ = ["AnyRequest", "EventHook", "KieCore"]

logger = logging.getLogger("dagster_kie")

AnyRequest = TextToImageRequest | ReframeRequest | CharacterRequest
EventHook = Callable[[str, Any], None]
"""Called as ``hook("task_created", task_id)`` and ``hook("task_finished", record)``."""

_EXPIRED = (403, 404, 410)
_REDIRECTS = (301, 302, 303, 307, 308)
_REMEMBERED_TASKS = 10_000
_EPSILON = 1e-3


def _epoch_seconds(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _server_duration(record: TaskRecord) -> float | None:
    """createTime → completeTime in seconds (kie.ai sends Unix milliseconds)."""
    start, end = record.create_time, record.complete_time
    if start is None or end is None or end < start:
        return None
    divisor = 1000.0 if start > 100_000_000_000 else 1.0
    return (end - start) / divisor


class KieCore:
    """The shared, I/O-free half of a kie.ai client.

    Args:
        api_key: The API key (kept private; never in a repr, log line or error).
        base_url: Jobs API base URL.
        upload_base_url: File-upload API base URL.
        remix_base_url: Remix aggregator base URL (``None``: ``base_url``).
        remix_task_path: Remix task query path, with ``{task_id}`` (*assumed*).
        retry: Retry settings.
        rate_limits: Client-side rate limits.
        polling: Polling policy.
        estimator: Task-duration estimator (``None``: a new one).
        download_policy: What result downloads may fetch.
        on_event: Usage hook (``task_created``, ``task_finished``).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        upload_base_url: str,
        remix_base_url: str | None,
        remix_task_path: str,
        retry: RetrySettings,
        rate_limits: RateLimits,
        polling: PollingPolicy,
        estimator: DurationEstimator | None,
        download_policy: DownloadPolicy,
        on_event: EventHook | None,
    ) -> None:
        self._key = Secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.upload_base_url = upload_base_url.rstrip("/")
        self.remix_base_url = (remix_base_url or base_url).rstrip("/")
        if "{task_id}" not in remix_task_path:
            raise ValueError("remix_task_path must contain '{task_id}'")
        self.remix_task_path = remix_task_path
        self.retry = retry
        self.clock: Callable[[], float] = time.monotonic
        self.wall: Callable[[], float] = time.time
        self.limiter = RateLimiter(rate_limits, clock=lambda: self.clock())
        self.polling = polling
        self.estimator = estimator or polling.new_estimator()
        self.stats = PollingStats()
        self.download_policy = download_policy
        self.on_event = on_event
        self._submitted: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._submitted_lock = threading.Lock()
        self.waiting = WaitingTasks()

    def __repr__(self) -> str:
        return f"KieCore(base_url={self.base_url!r}, api_key='***')"

    # --- helpers --------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with the API key masked (belt and braces for echoed messages)."""
        return self._key.redact(text)

    def headers(
        self, *, json_body: bool = False, accept: str = "application/json"
    ) -> dict[str, str]:
        """Headers of an authenticated API request."""
        headers = {
            "Authorization": f"Bearer {self._key.reveal()}",
            "User-Agent": USER_AGENT,
            "Accept": accept,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _emit(self, event: str, value: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event, value)
        except Exception:
            logger.warning("the on_event hook failed for %s", event, exc_info=True)

    def _call(
        self,
        kind: Literal["create", "query"] | None,
        build: Callable[[], httpx.Request],
        parse: Callable[[httpx.Response], T],
        *,
        idempotent: bool,
        what: str,
        retry_not_found: bool = False,
    ) -> Step[T]:
        """One API call: pace it, send it, parse it, retry it when the rules allow."""

        def attempt() -> Step[T]:
            ticket: Ticket | None = None
            if kind is not None:
                window = self.limiter.window(kind)
                delay = window.reserve()
                while ticket is None:
                    if delay > 0:
                        yield Sleep(delay)
                    delay, ticket = window.admit()
            try:
                response = yield from send(build())
            finally:
                if kind is not None:
                    self.limiter.window(kind).done(ticket)
            try:
                return parse(response)
            except KieError as error:
                retry_after = getattr(error, "retry_after", None)
                if kind is not None and error.code == 429:
                    self.limiter.throttle(kind, retry_after)
                raise

        return (
            yield from retrying(
                attempt,
                settings=self.retry,
                idempotent=idempotent,
                what=what,
                retry_not_found=retry_not_found,
            )
        )

    def _envelope(self, task_id: str | None = None) -> Callable[[httpx.Response], Any]:
        def parse(response: httpx.Response) -> Any:
            return parse_envelope(response, task_id=task_id, redact=self.redact)

        return parse

    # --- jobs -----------------------------------------------------------------------------------

    def create_task(
        self, request: AnyRequest | Mapping[str, Any], *, callback_url: str | None = None
    ) -> Step[str]:
        """``POST /api/v1/jobs/createTask``; returns the task id.

        Resent only when it provably created nothing (connection refused, 429/433/455).
        """
        typed = parse_request(dict(request)) if isinstance(request, Mapping) else request
        body = typed.body()
        if callback_url:
            body["callBackUrl"] = callback_url
        url = f"{self.base_url}/api/v1/jobs/createTask"

        def parse(response: httpx.Response) -> str:
            data = parse_envelope(response, redact=self.redact)
            task_id = data.get("taskId") or data.get("task_id") if isinstance(data, dict) else None
            if not isinstance(task_id, str) or not task_id:
                raise MalformedResponseError(
                    "createTask succeeded without a task id; the task may exist (check the "
                    "kie.ai dashboard before resubmitting)",
                    status_code=response.status_code,
                )
            return task_id

        task_id = yield from self._call(
            "create",
            lambda: httpx.Request("POST", url, headers=self.headers(json_body=True), json=body),
            parse,
            idempotent=False,
            what="createTask",
        )
        with self._submitted_lock:
            self._submitted[task_id] = (self.clock(), typed.model)
            while len(self._submitted) > _REMEMBERED_TASKS:
                self._submitted.popitem(last=False)
        logger.debug("kie.ai task %s created (%s)", task_id, typed.model)
        self._emit("task_created", task_id)
        return task_id

    def get_task(self, task_id: str) -> Step[TaskRecord]:
        """``GET /api/v1/jobs/recordInfo``; retried (including "recordInfo is null" briefly)."""
        if not task_id or not isinstance(task_id, str):
            raise ValueError("task_id must be a non-empty string")
        url = f"{self.base_url}/api/v1/jobs/recordInfo"

        def parse(response: httpx.Response) -> TaskRecord:
            data = parse_envelope(response, task_id=task_id, redact=self.redact)
            if not isinstance(data, dict):
                raise MalformedResponseError(
                    "recordInfo returned no task data", task_id=task_id, status_code=200
                )
            try:
                return TaskRecord.model_validate(data)
            except ValidationError as exc:
                raise MalformedResponseError(
                    f"recordInfo returned an unexpected task record: {exc.errors()[0]['msg']}",
                    task_id=task_id,
                ) from None

        return (
            yield from self._call(
                "query",
                lambda: httpx.Request(
                    "GET", url, params={"taskId": task_id}, headers=self.headers()
                ),
                parse,
                idempotent=True,
                what=f"recordInfo of {task_id}",
                retry_not_found=True,
            )
        )

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
        model: str | None = None,
        submitted_at: float | datetime | None = None,
        external: Callable[[str], Any] | None = None,
    ) -> Step[TaskRecord]:
        """Poll until the task ends; see :meth:`dagster_kie.client.KieClient.wait`."""
        started = self.clock()
        deadline = started + (self.polling.deadline_s if timeout is None else timeout)
        with self._submitted_lock:
            known = self._submitted.get(task_id)
        model = model or (known[1] if known else None)
        if submitted_at is not None:
            age = max(0.0, self.wall() - _epoch_seconds(submitted_at))
            origin, origin_known = started - age, True
        elif known is not None:
            origin, origin_known = known[0], True
        else:
            origin, origin_known = started, False
        schedule = self.polling.schedule_for(self.estimator, model)
        now = started - origin
        # A task we did not see created may have finished long ago: look at once.
        if external is None:
            next_poll = next_check = schedule.next_poll_at(now) if origin_known else now
        else:
            next_check = now + schedule.external_check_interval() if origin_known else now
            next_poll = max(schedule.first_fallback_at(), now) if origin_known else now
        limit = deadline - origin
        polls = checks = 0
        last_state: str | None = None
        pending_at: float | None = None
        last_error: KieError | None = None
        overdue = external_failing = False
        # Cold: a few scouts poll on kie.ai's schedule, the other waits hold their polls until
        # the scouts' ends give a plan (see PollingPolicy.cold_scouts).
        scout = holding = False
        if external is None and origin_known and not schedule.learned and self.polling.learn:
            scout = self.waiting.try_scout(model, self.polling.cold_scouts)
            holding = not scout and self.polling.cold_scouts > 0
        hold_limit = self.polling.cold_hold_s * schedule.scale
        self.waiting.add(model, origin)
        try:
            while True:
                due = min(next_check, next_poll) if external is not None else next_poll
                due = min(due, limit)
                now = self.clock() - origin
                if due > now:
                    yield Sleep(due - now)
                    now = self.clock() - origin
                final = now >= limit - _EPSILON
                if holding and not final:
                    holding, scout, schedule, next_poll = self._hold(
                        schedule, model, now, hold_limit
                    )
                    if next_poll > now + _EPSILON:
                        continue
                record: TaskRecord | None = None
                if external is not None and (now >= next_check - _EPSILON or final):
                    checks += 1
                    record, external_failing = yield from self._check_external(
                        external, task_id, warn=not external_failing
                    )
                    now = self.clock() - origin
                    next_check = now + schedule.external_check_interval()
                if (record is None or not record.is_terminal) and (
                    external is None or now >= next_poll - _EPSILON or final
                ):
                    polls += 1
                    try:
                        record = yield from self.get_task(task_id)
                        last_error = None
                    except KieError as error:
                        if not error.retryable:
                            raise
                        last_error = error
                        logger.info(
                            "kie.ai task %s: poll failed (%s); will poll again", task_id, error
                        )
                    now = self.clock() - origin
                    if external is None:
                        if origin_known:
                            schedule = self._newest_schedule(schedule, model, now)
                        next_poll = schedule.next_poll_at(now)
                        if origin_known and not overdue:
                            overdue = self._is_overdue(model, origin, now)
                            if overdue:
                                self.waiting.mark_overdue()
                        if overdue:
                            next_poll = min(next_poll, now + self._overdue_interval())
                    else:
                        next_poll = now + schedule.fallback_interval(now)
                if record is not None:
                    if record.state != last_state:
                        last_state = record.state
                        if on_update is not None:
                            on_update(record)
                    if record.is_terminal:
                        return self._finish(
                            task_id, record, model, polls, checks,
                            now if origin_known else None, pending_at if origin_known else None,
                        )  # fmt: skip
                    pending_at = now
                if self.clock() >= deadline - _EPSILON:
                    state = last_state or "unknown"
                    why = f"; last poll error: {last_error}" if last_error else ""
                    self.stats.record(polls, checks)
                    raise WaitTimeoutError(
                        f"task did not finish within {deadline - started:.0f} s (last state: "
                        f"{state}{why}); it may still finish — wait again later",
                        task_id=task_id,
                    )
        finally:
            self.waiting.remove(model, origin, overdue=overdue)
            if scout:
                self.waiting.end_scout(model)

    def _hold(
        self, schedule: PollSchedule, model: str | None, age: float, hold_limit: float
    ) -> tuple[bool, bool, PollSchedule, float]:
        """One look of a holding wait: ``(still holding, now a scout, schedule, next poll)``.

        It follows the plan as soon as there is one, takes a scout's place when one is free,
        polls when it held for ``hold_limit``, and otherwise looks again a moment later."""
        learned = self.polling.schedule_for(self.estimator, model)
        if learned.plan is not None:
            planned = learned.plan.next_after(age, 0.0)
            if planned is None:  # all behind the task: look now, then kie.ai's schedule
                return False, False, schedule, age
            return False, False, learned, planned
        if age >= hold_limit:
            return False, False, schedule, age
        if self.waiting.try_scout(model, self.polling.cold_scouts):
            return False, True, schedule, age
        return True, False, schedule, age + self.polling.min_interval_s * schedule.scale

    def _newest_schedule(
        self, schedule: PollSchedule, model: str | None, age: float
    ) -> PollSchedule:
        """The schedule from the newest plan, for a task ``age`` seconds old.

        A wait follows the plan as it is refreshed, not the one of its start: plans learned
        while a burst's tasks run come from the tasks that ended first, the shortest ones, and
        the next ones correct that. A task still on kie.ai's fixed schedule switches only if the
        plan has polls ahead of it: when the plan is all behind the task, its tail would poll the
        task densely for a long time."""
        learned = self.polling.schedule_for(self.estimator, model)
        if learned.plan is None:
            return schedule
        if schedule.learned or learned.plan.next_after(age, 0.0) is not None:
            return learned
        return schedule

    def _is_overdue(self, model: str | None, origin: float, age: float) -> bool:
        peers = self.waiting.peers(model, origin, age)
        return self.polling.is_overdue(self.estimator.estimate(model), age, peers)

    def _overdue_interval(self) -> float:
        return self.polling.overdue_interval(
            self.waiting.overdue, self.limiter.limits.queries_per_second
        )

    def _check_external(
        self, external: Callable[[str], Any], task_id: str, *, warn: bool
    ) -> Step[tuple[TaskRecord | None, bool]]:
        """``(record or None, whether the look failed)``; a failure is logged if ``warn``."""
        problem: object
        try:
            found = yield CallExternal(external, task_id)
        except Exception as error:  # a broken callback store must not stop the kie.ai fallback
            problem = error
        else:
            if found is None or isinstance(found, TaskRecord):
                return found, False
            try:
                return TaskRecord.model_validate(found), False
            except ValidationError:
                problem = "it returned an invalid record"
        if warn:  # looks come every fraction of a second: once per failing streak is enough
            logger.warning(
                "kie.ai task %s: external check failed: %s (kie.ai polls are the fallback)",
                task_id,
                problem,
            )
        return None, True

    def _finish(
        self,
        task_id: str,
        record: TaskRecord,
        model: str | None,
        polls: int,
        checks: int,
        seen_at: float | None,
        pending_at: float | None,
    ) -> TaskRecord:
        self.stats.record(polls, checks)
        with self._submitted_lock:
            self._submitted.pop(task_id, None)
        if record.succeeded:
            duration = _server_duration(record)
            if duration is None and seen_at is not None:
                duration = ((pending_at or 0.0) + seen_at) / 2
            if duration is not None:
                self.estimator.record(record.model or model, duration)
        self._emit("task_finished", record)
        if record.succeeded:
            return record
        code = record.fail_code
        raise GenerationFailedError(
            f"generation failed: {record.fail_msg or 'kie.ai gave no reason'}"
            + (f" (failCode {code})" if code else ""),
            fail_code=code,
            fail_msg=record.fail_msg,
            task_id=task_id,
            code=int(code) if code and code.isdigit() else 501,
        )

    def generate(
        self,
        request: AnyRequest | Mapping[str, Any],
        *,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
    ) -> Step[TaskRecord]:
        """createTask, then wait until the task ends."""
        typed = parse_request(dict(request)) if isinstance(request, Mapping) else request
        task_id = yield from self.create_task(typed, callback_url=callback_url)
        return (
            yield from self.wait(task_id, timeout=timeout, on_update=on_update, model=typed.model)
        )

    # --- account and files ----------------------------------------------------------------------

    def get_credits(self) -> Step[float]:
        """``GET /api/v1/chat/credit``: the balance."""
        url = f"{self.base_url}/api/v1/chat/credit"

        def parse(response: httpx.Response) -> float:
            data = parse_envelope(response, redact=self.redact)
            if isinstance(data, dict):
                data = data.get("balance", data.get("credits"))
            if isinstance(data, bool) or not isinstance(data, (int, float, str)):
                raise MalformedResponseError("the credit endpoint returned no balance")
            try:
                return float(data)
            except ValueError:
                raise MalformedResponseError("the credit endpoint returned no balance") from None

        return (
            yield from self._call(
                "query",
                lambda: httpx.Request("GET", url, headers=self.headers()),
                parse,
                idempotent=True,
                what="credit",
            )
        )

    def get_download_url(self, result_url: str) -> Step[str]:
        """``POST /api/v1/common/download-url``: a fresh temporary URL (valid 20 minutes)."""
        url = f"{self.base_url}/api/v1/common/download-url"

        def parse(response: httpx.Response) -> str:
            data = parse_envelope(response, redact=self.redact)
            if isinstance(data, dict):
                data = data.get("url") or data.get("downloadUrl")
            if not isinstance(data, str) or not data:
                raise MalformedResponseError("download-url returned no URL")
            return data

        return (
            yield from self._call(
                "query",
                lambda: httpx.Request(
                    "POST", url, headers=self.headers(json_body=True), json={"url": result_url}
                ),
                parse,
                idempotent=True,
                what="download-url",
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
    ) -> Step[UploadedFile]:
        """Upload through the file-upload API (checked first; see :func:`plan_upload`)."""
        plan = plan_upload(source, file_name=file_name, method=method, image=image)

        def attempt() -> Step[UploadedFile]:
            request, handle = build_upload_request(
                plan,
                base_url=self.upload_base_url,
                upload_path=upload_path,
                headers=self.headers(json_body=plan.method != "stream"),
            )
            try:
                response = yield from send(request)
            finally:
                if handle is not None:
                    handle.close()
            data = parse_envelope(response, redact=self.redact)
            if not isinstance(data, dict):
                raise MalformedResponseError("the upload API returned no file data")
            try:
                return UploadedFile.model_validate(data)
            except ValidationError:
                raise MalformedResponseError("the upload API returned no file URL") from None

        # Same path and name overwrite silently, so an upload is safe to repeat.
        uploaded = yield from retrying(
            attempt, settings=self.retry, idempotent=True, what=f"{plan.method} upload"
        )
        return uploaded

    # --- downloads ------------------------------------------------------------------------------

    def _open_once(self, url: str) -> Step[httpx.Response]:
        policy = self.download_policy
        host, port = check_url(url, policy)
        if not policy.allow_private_addresses:
            literal = literal_address(host)
            if literal is not None:
                addresses = [literal]
            else:
                try:
                    addresses = yield Resolve(host, port)
                except OSError as exc:
                    raise TransportError(
                        f"cannot resolve {host}: {exc}", request_sent=False
                    ) from None
            check_addresses(url, addresses, policy)
        request = httpx.Request("GET", url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        response = yield from send(request, stream=True)
        check_peer(url, response, policy)
        if response.status_code >= 500:
            yield Close(response)
            raise ServerError(
                f"download of {safe_url(url)} failed: HTTP {response.status_code}",
                code=response.status_code,
                status_code=response.status_code,
            )
        return response

    def open_download(self, url: str) -> Step[tuple[str, str, httpx.Response, DownloadGuard]]:
        """Open a result URL under the download policy, refreshing it once if it expired.

        Returns:
            ``(final URL, content type, streaming response, guard)``; the body is unread.
        """
        policy = self.download_policy
        current = url
        origin_host = check_url(url, policy)[0]
        refreshed = False
        redirects = 0
        while True:
            response = yield from retrying(
                functools.partial(self._open_once, current),
                settings=self.retry,
                idempotent=True,
                what=f"download of {safe_url(current)}",
            )
            status = response.status_code
            if status in _REDIRECTS:
                yield Close(response)
                location = response.headers.get("location")
                if not location:
                    raise error_from_reply(
                        502, f"redirect without Location from {safe_url(current)}"
                    )
                following = urljoin(current, location)
                check_redirect(origin_host, following, policy)
                redirects += 1
                if redirects > policy.max_redirects:
                    raise error_from_reply(
                        508, f"more than {policy.max_redirects} redirects from {safe_url(url)}"
                    )
                current = following
                continue
            if status in _EXPIRED and not refreshed:
                yield Close(response)
                logger.info(
                    "kie.ai result URL %s answered HTTP %d (expired?); asking for a fresh one",
                    safe_url(current),
                    status,
                )
                refreshed = True
                current = yield from self.get_download_url(url)
                origin_host = check_url(current, policy)[0]
                redirects = 0
                continue
            if not 200 <= status < 300:
                yield Close(response)
                raise error_from_reply(
                    status,
                    f"download of {safe_url(current)} failed: HTTP {status}",
                    status_code=status,
                )
            content_type = check_headers(current, response, policy)
            return current, content_type, response, DownloadGuard(current, policy.max_bytes)

    # --- remix ----------------------------------------------------------------------------------

    def remix(
        self,
        image: UploadSource,
        request: RemixImageRequest | Mapping[str, Any],
        *,
        file_name: str | None = None,
    ) -> Step[RemixResult]:
        """``POST {remix_base_url}/ideogram/remix`` (multipart); resent only if provably unsent."""
        typed = request if isinstance(request, RemixImageRequest) else parse_remix_request(request)
        name, data, mime = load_image(image, file_name=file_name)
        url = f"{self.remix_base_url}/ideogram/remix"
        payload = typed.to_json()

        def build() -> httpx.Request:
            return httpx.Request(
                "POST",
                url,
                headers=self.headers(),
                data={"image_request": payload},
                files={"image_file": (name, data, mime)},
            )

        return (
            yield from self._call(
                "create", build, self._parse_remix, idempotent=False, what="remix"
            )
        )

    def get_remix_task(self, task_id: str) -> Step[RemixResult]:
        """``GET {remix_base_url}{remix_task_path}`` (an *assumed* path): a Remix task's state."""
        if not task_id:
            raise ValueError("task_id must be a non-empty string")
        url = self.remix_base_url + self.remix_task_path.format(task_id=quote(task_id, safe=""))
        return (
            yield from self._call(
                "query",
                lambda: httpx.Request("GET", url, headers=self.headers()),
                self._parse_remix,
                idempotent=True,
                what=f"remix task {task_id}",
            )
        )

    def _parse_remix(self, response: httpx.Response) -> RemixResult:
        """Either reply shape: Ideogram's synchronous ``{"created", "data": [...]}`` or the
        aggregator's ``{"code": 0, "message", "data": {"task_id", "task_status", ...}}``."""
        status = response.status_code
        body = reply_json(response, redact=self.redact)
        if not isinstance(body, dict):
            raise MalformedResponseError("the remix reply is not a JSON object", status_code=status)
        data = body.get("data")
        if 200 <= status < 300 and "created" in body and isinstance(data, list):
            images = [RemixImage.model_validate(item) for item in data if isinstance(item, dict)]
            return RemixResult(status="succeed", images=images)
        return self._parse_remix_envelope(body, status, response)

    def _parse_remix_envelope(
        self, body: dict[str, Any], status: int, response: httpx.Response
    ) -> RemixResult:
        code = body.get("code")
        message = body.get("message") or body.get("msg") or ""
        message = self.redact(message if isinstance(message, str) else "")
        data = body.get("data")
        if 200 <= status < 300 and code in (0, 200) and isinstance(data, dict):
            task_id = data.get("task_id") or data.get("taskId") or body.get("request_id")
            result = data.get("task_result")
            items = (result or {}).get("images") if isinstance(result, dict) else data.get("images")
            images = [
                RemixImage.model_validate(item) for item in items or [] if isinstance(item, dict)
            ]
            return RemixResult(
                task_id=str(task_id) if task_id else None,
                status=str(data.get("task_status") or "") or None,
                images=images,
            )
        error_code = code if isinstance(code, int) and code not in (0, 200) else status
        if error_code < 400 and status < 400:
            raise MalformedResponseError(
                f"unexpected remix reply (code {code!r})", status_code=status
            )
        raise error_from_reply(
            error_code if error_code >= 400 else status,
            message or f"remix failed (code {code})",
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
