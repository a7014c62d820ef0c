"""Handlers of the jobs API: createTask, recordInfo, credit, download-url, and result files."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .images import IMAGE_SIZE_DIMENSIONS, caption, render_png
from .replies import kie_reply
from .state import EmulatorState, Task
from .validation import ValidationFailed, validate_create_task

if TYPE_CHECKING:
    from .app import Ctx

__all__ = [
    "apply_task_faults",
    "create_task",
    "credit",
    "download_url",
    "record_info",
    "render_task_image",
    "result_file",
]

DEFAULT_FAIL_MSG = "Generation failed: the image could not be generated (emulated fault)."
_FILE_PATH = re.compile(r"^/files/([^/]+)/(\d+)\.png$")


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON; raises ``ValidationFailed("body", ...)`` otherwise."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "body", "must be a JSON object (Content-Type: application/json)"
        ) from None


def apply_task_faults(
    state: EmulatorState, endpoint: str, now: float, duration: float
) -> tuple[float, bool, str, str]:
    """Apply ``slow_tasks``/``fail_tasks`` to a new task: (duration, fails, failCode, failMsg)."""
    slow = state.faults.trigger("slow_tasks", endpoint, now)
    if slow is not None:
        state.stats.faults_triggered["slow_tasks"] += 1
        duration = duration * float(slow.params["multiplier"]) + float(slow.params["extra_seconds"])
    fail = state.faults.trigger("fail_tasks", endpoint, now)
    if fail is None:
        return duration, False, "", ""
    state.stats.faults_triggered["fail_tasks"] += 1
    code = str(fail.params.get("fail_code", "501"))
    msg = str(fail.params.get("fail_msg", DEFAULT_FAIL_MSG))
    return duration, True, code, msg


async def create_task(request: Request, ctx: Ctx) -> Response:
    """``POST /api/v1/jobs/createTask``."""
    state = ctx.state
    try:
        body = await read_json(request)
        req = validate_create_task(body, lenient_required=state.settings.lenient_required)
    except ValidationFailed as exc:
        return kie_reply(state.stats, 422, str(exc))
    cost = round(state.settings.credits_per_image * req.num_images, 6)
    if not state.credits.reserve(cost):
        return kie_reply(
            state.stats,
            402,
            f"Credits insufficient – this task needs {cost:g} credits, "
            f"{max(0.0, state.credits.available):g} available. Please top up.",
        )
    now = time.time()
    state.create_window.record(ctx.api_key, now)
    duration, fails, fail_code, fail_msg = apply_task_faults(
        state, "create", now, state.sample_duration()
    )
    task_id = state.tasks.new_jobs_id(now)
    width, height = IMAGE_SIZE_DIMENSIONS[req.image_size]
    seed = req.seed
    task = Task(
        task_id=task_id,
        kind="jobs",
        model=req.model,
        api_key=ctx.api_key,
        param=body,
        input=req.input,
        num_images=req.num_images,
        width=width,
        height=height,
        seed=seed if seed is not None else task_id,
        prompt=req.prompt,
        created=now,
        duration=duration,
        cost=cost,
        callback_url=req.callback_url,
        will_fail=fails,
        fail_code=fail_code,
        fail_msg=fail_msg,
    )
    state.add_task(task)
    return kie_reply(state.stats, 200, "success", {"taskId": task_id})


async def record_info(request: Request, ctx: Ctx) -> Response:
    """``GET /api/v1/jobs/recordInfo?taskId=``."""
    state = ctx.state
    task_id = request.query_params.get("taskId")
    if not task_id:
        return kie_reply(state.stats, 400, "taskId parameter is required")
    now = time.time()
    task = state.tasks.get(task_id)
    if task is None or task.kind != "jobs" or now - task.created < state.settings.record_delay:
        return kie_reply(state.stats, 422, "recordInfo is null")
    if task.finished is not None and task_id not in state.stats.detection_lag_per_task:
        state.stats.detection_lag_per_task[task_id] = round(max(0.0, now - task.finished), 4)
    return kie_reply(state.stats, 200, "success", state.record_info(task, now))


async def credit(request: Request, ctx: Ctx) -> Response:
    """``GET /api/v1/chat/credit``."""
    return kie_reply(ctx.state.stats, 200, "success", ctx.state.balance())


async def download_url(request: Request, ctx: Ctx) -> Response:
    """``POST /api/v1/common/download-url``: a fresh temporary URL for a file this server made."""
    state = ctx.state
    try:
        body = await read_json(request)
    except ValidationFailed as exc:
        return kie_reply(state.stats, 422, str(exc))
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        return kie_reply(state.stats, 422, "url: is required (the URL of a generated file)")
    path = _own_path(state, url)
    now = time.time()
    if path is not None and _serves(state, path):
        fresh = state.signer.sign(state.base_url, path, now + state.settings.download_url_ttl)
        return kie_reply(state.stats, 200, "success", fresh)
    return kie_reply(state.stats, 422, "url: not a file URL generated by this server")


def _serves(state: EmulatorState, path: str) -> bool:
    """Whether ``path`` is a result image or an uploaded file this server has."""
    match = _FILE_PATH.match(path)
    if match:
        task = state.tasks.get(match.group(1))
        return task is not None and task.succeeded and int(match.group(2)) < task.num_images
    if path.startswith("/uploads/"):
        return state.uploads.get(path[len("/uploads/") :]) is not None
    return False


def _own_path(state: EmulatorState, url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    own = urlsplit(state.base_url)
    if parts.scheme != own.scheme or parts.netloc != own.netloc:
        return None
    return unquote(parts.path)


def render_task_image(state: EmulatorState, task: Task, index: int) -> bytes:
    """The PNG bytes of one result image of ``task`` (cached)."""
    label = caption(task.prompt)
    key = ("img", str(task.seed), task.model, task.width, task.height, index, label)
    data = state.images.get(key)
    if data is None:
        data = render_png(
            task.width, task.height, seed=task.seed, model=task.model, index=index, text=label
        )
        state.images.put(key, data)
    return data


async def result_file(request: Request, ctx: Ctx) -> Response:
    """``GET /files/{taskId}/{index}.png?expires=&sig=`` — a result image (signed, expiring)."""
    state = ctx.state
    path = request.scope["path"]
    match = _FILE_PATH.match(path)
    if match is None:
        state.stats.error(404)
        return PlainTextResponse("Not Found", status_code=404)
    reason = state.signer.check(
        path, request.query_params.get("expires"), request.query_params.get("sig"), time.time()
    )
    if reason is not None:
        state.stats.downloads_forbidden += 1
        state.stats.error(403)
        return PlainTextResponse(f"Forbidden: {reason}", status_code=403)
    task = state.tasks.get(match.group(1))
    index = int(match.group(2))
    if task is None or not task.succeeded or index >= task.num_images:
        state.stats.error(404)
        return PlainTextResponse("Not Found", status_code=404)
    data = await run_in_threadpool(render_task_image, state, task, index)
    state.stats.downloads += 1
    headers = {"Cache-Control": "private, max-age=3600"}
    return Response(data, media_type="image/png", headers=headers)
