"""Handlers of Ideogram Remix through an aggregator (seed 004), and its task query (*assumed*).

``POST /ideogram/remix`` answers seed 004's asynchronous envelope by default
(``{"code": 0, "message": "SUCCEED", "request_id", "data": {"task_id", "task_status", ...}}``),
or — with ``--remix-mode sync`` — waits for the task and answers Ideogram's synchronous shape
(``{"created", "data": [{"url", "prompt", "resolution", "is_image_safe", "seed", "style_type"}]}``).
The seed does not document how to query a task; the emulator serves
``GET /ideogram/tasks/{task_id}`` in the same envelope.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from .config import MB
from .images import sniff_image_mime
from .jobs import apply_task_faults
from .replies import json_reply, remix_error
from .state import Task, ms
from .validation import REMIX_MAX_SEED, ValidationFailed, validate_remix_request

if TYPE_CHECKING:
    from .app import Ctx

__all__ = ["remix", "remix_task"]

MAX_IMAGE_FILE = 10 * MB
_STATUS = {
    "waiting": "submitted",
    "queuing": "submitted",
    "generating": "processing",
    "success": "succeed",
    "fail": "failed",
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


async def remix(request: Request, ctx: Ctx) -> Response:
    """``POST /ideogram/remix`` (multipart: ``image_file``, ``image_request`` JSON string)."""
    state = ctx.state
    stats = state.stats
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return remix_error(stats, 400, "image_file: a multipart/form-data body is required")
    try:
        form = await request.form(max_files=2, max_fields=16)
    except Exception as exc:
        return remix_error(stats, 400, f"image_file: invalid multipart body ({exc})")
    try:
        image = form.get("image_file")
        raw = form.get("image_request")
        if not isinstance(image, UploadFile):
            return remix_error(stats, 400, "image_file: is required (the source image file)")
        raw_request: str | bytes | None = await raw.read() if isinstance(raw, UploadFile) else raw
        try:
            req = validate_remix_request(raw_request)
        except ValidationFailed as exc:
            return remix_error(stats, exc.code, str(exc))
        data = await image.read(MAX_IMAGE_FILE + 1)
    finally:
        await form.close()
    if len(data) > MAX_IMAGE_FILE:
        return remix_error(stats, 422, "image_file: must be at most 10 MB")
    if sniff_image_mime(data) is None:
        return remix_error(stats, 422, "image_file: must be a JPEG, PNG or WebP image")
    cost = round(state.settings.credits_per_image * req.num_images, 6)
    if not state.credits.reserve(cost):
        return remix_error(stats, 402, f"Credits insufficient – this task needs {cost:g} credits.")
    now = time.time()
    state.create_window.record(ctx.api_key, now)
    duration, fails, fail_code, fail_msg = apply_task_faults(
        state, "remix", now, state.sample_duration()
    )
    seed = req.seed if req.seed is not None else state.rng.randrange(REMIX_MAX_SEED)
    task_id = state.new_remix_id()
    task = Task(
        task_id=task_id,
        kind="remix",
        model=str(req.fields["model"]),
        api_key=ctx.api_key,
        param=req.fields,
        input=req.fields,
        num_images=req.num_images,
        width=req.width,
        height=req.height,
        seed=seed,
        prompt=req.prompt,
        created=now,
        duration=duration,
        cost=cost,
        will_fail=fails,
        fail_code=fail_code,
        fail_msg=fail_msg or "Image generation failed.",
    )
    task.input = {**req.fields, "style_type": req.style_type or "AUTO", "seed": seed}
    state.add_task(task)
    if state.settings.remix_mode == "sync":
        # Sleep until the task has really ended (a wake-up a hair early must not read it as
        # unfinished, which would report the images as unsafe).
        while True:
            await asyncio.sleep(max(0.01, task.end - time.time()))
            state.advance()
            if task.finished:
                return json_reply(_sync_body(task))
    return json_reply(
        {
            "code": 0,
            "message": "SUCCEED",
            "request_id": task_id,
            "data": {
                "task_id": task_id,
                "task_status": "submitted",
                "created_at": ms(now),
                "updated_at": ms(now),
            },
        }
    )


def _sync_body(task: Task) -> dict[str, Any]:
    style = task.input.get("style_type", "AUTO")
    images: list[dict[str, Any]] = []
    for i in range(task.num_images):
        item: dict[str, Any] = {
            "prompt": task.prompt,
            "resolution": f"{task.width}x{task.height}",
            "is_image_safe": task.succeeded,
            "seed": task.seed,
            "style_type": "GENERAL" if style == "AUTO" else style,
        }
        if task.succeeded:
            item["url"] = task.result_urls[i]
        images.append(item)
    return {"created": _iso(task.finished or time.time()), "data": images}


async def remix_task(request: Request, ctx: Ctx) -> Response:
    """``GET /ideogram/tasks/{task_id}`` (*assumed* path) — a remix task's status and images."""
    state = ctx.state
    task_id = request.path_params["task_id"]
    task = state.tasks.get(task_id)
    if task is None or task.kind != "remix":
        return remix_error(state.stats, 404, "task_id: task not found")
    now = time.time()
    phase, _progress, changed = task.phase(now)
    status = _STATUS[phase]
    return json_reply(
        {
            "code": 0,
            "message": "SUCCEED",
            "request_id": task_id,
            "data": {
                "task_id": task_id,
                "task_status": status,
                "task_status_msg": task.fail_msg if status == "failed" else "",
                "created_at": ms(task.created),
                "updated_at": ms(changed),
                "task_result": {"images": [{"url": u} for u in task.result_urls]},
            },
        }
    )
