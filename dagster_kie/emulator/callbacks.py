"""The callback loop: finalizes tasks as they end and POSTs each ``callBackUrl`` once.

Payload (as kie.ai documents it)::

    {"code": 200 | 501,
     "msg": "Playground task completed successfully." | "Playground task failed.",
     "data": <recordInfo data> + "creditsConsumed" + "remainedCredits"}

With a webhook HMAC key, the headers ``X-Webhook-Timestamp`` (Unix seconds) and
``X-Webhook-Signature`` = base64(HMAC-SHA256(key, f"{taskId}.{timestamp}")) are added.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from .signing import webhook_signature
from .state import EmulatorState, Task

if TYPE_CHECKING:
    import httpx

__all__ = ["CallbackDispatcher", "callback_payload"]

log = logging.getLogger("dagster_kie.emulator.callbacks")

SUCCESS_MSG = "Playground task completed successfully."
FAIL_MSG = "Playground task failed."


def callback_payload(state: EmulatorState, task: Task, now: float) -> dict[str, Any]:
    """The JSON body of ``task``'s callback."""
    data = state.record_info(task, now)
    data["creditsConsumed"] = task.credits_consumed
    data["remainedCredits"] = task.remained_credits
    ok = task.succeeded
    return {"code": 200 if ok else 501, "msg": SUCCESS_MSG if ok else FAIL_MSG, "data": data}


class CallbackDispatcher:
    """Runs inside the server's event loop for the lifetime of the app."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._client: httpx.AsyncClient | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Wake at each task's end time (or when a task is added) and send due callbacks."""
        state = self.state
        wakeup = asyncio.Event()
        state.wakeup = wakeup
        while True:
            wakeup.clear()
            now = time.time()
            state.advance(now)
            while state.pending_callbacks:
                self._spawn(state.pending_callbacks.popleft())
            next_end = state.tasks.next_end()
            timeout = None if next_end is None else max(0.0, next_end - time.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)

    def _spawn(self, task: Task) -> None:
        job = asyncio.create_task(self._send(task))
        self._sending.add(job)
        job.add_done_callback(self._sending.discard)

    async def _send(self, task: Task) -> None:
        import httpx

        state = self.state
        now = time.time()
        if state.faults.trigger("drop_callbacks", "callback", now) is not None:
            state.stats.faults_triggered["drop_callbacks"] += 1
            state.stats.callbacks_dropped += 1
            return
        assert task.callback_url is not None
        body = json.dumps(callback_payload(state, task, now), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "kie-emulator-callback/1.0"}
        key = state.settings.webhook_hmac_key
        if key:
            timestamp = int(time.time())
            headers["X-Webhook-Timestamp"] = str(timestamp)
            headers["X-Webhook-Signature"] = webhook_signature(key, task.task_id, timestamp)
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=state.settings.callback_timeout, trust_env=False
            )
        state.stats.callbacks_sent += 1
        try:
            reply = await self._client.post(task.callback_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            state.stats.callbacks_failed += 1
            log.warning("callback for %s to %s failed: %r", task.task_id, task.callback_url, exc)
            return
        if reply.status_code >= 300:
            state.stats.callbacks_failed += 1

    async def aclose(self) -> None:
        """Wait briefly for callbacks in flight, then close the HTTP client."""
        if self._sending:
            await asyncio.wait(self._sending, timeout=2.0)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
