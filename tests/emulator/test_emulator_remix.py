"""Remix (seed 004): the async task envelope, the task query, the sync mode, validation."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from dagster_kie.emulator import EmulatorProcess

from .helpers import Kie, png_bytes

pytestmark = pytest.mark.integration


def remix(kie: Kie, request: Any, image: bytes | None = None) -> httpx.Response:
    files: dict[str, Any] = {}
    if image is not None:
        files["image_file"] = ("src.png", image, "image/png")
    data = (
        {}
        if request is None
        else {"image_request": request if isinstance(request, str) else json.dumps(request)}
    )
    return kie.http.post(
        kie.base + "/ideogram/remix",
        files=files or {"unused": ("", b"", "text/plain")},
        data=data,
        headers={"Accept": "application/json"},
    )


def test_remix_async_and_task_query(kie: Kie) -> None:
    request = {
        "prompt": "a beautiful sunset over mountains",
        "aspect_ratio": "ASPECT_16_9",
        "color_palette": {"name": "FRESH"},
        "image_weight": 50,
        "magic_prompt_option": "AUTO",
        "model": "V_2",
        "negative_prompt": "clouds,blur",
        "num_images": 2,
        "seed": 123456,
        "style_type": "REALISTIC",
    }
    reply = remix(kie, request, png_bytes())
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 0 and body["message"] == "SUCCEED"
    data = body["data"]
    assert body["request_id"] == data["task_id"] and len(data["task_id"]) == 22
    assert data["task_status"] == "submitted"
    assert data["created_at"] == data["updated_at"] and data["created_at"] > 1e12
    url = f"{kie.base}/ideogram/tasks/{data['task_id']}"
    statuses = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        task = kie.http.get(url).json()
        assert task["code"] == 0
        statuses.add(task["data"]["task_status"])
        if task["data"]["task_status"] in ("succeed", "failed"):
            break
        time.sleep(0.03)
    assert task["data"]["task_status"] == "succeed"
    assert statuses <= {"submitted", "processing", "succeed"}
    images = task["data"]["task_result"]["images"]
    assert len(images) == 2
    content = httpx.get(images[0]["url"]).content
    assert Image.open(io.BytesIO(content)).size == (1312, 736)
    assert kie.credit() == pytest.approx(10000 - 3.2)
    missing = kie.http.get(kie.base + "/ideogram/tasks/nope")
    assert missing.status_code == 404 and "task" in missing.json()["message"]


def test_remix_resolution_and_members(kie: Kie) -> None:
    request = {
        "prompt": "p",
        "resolution": "RESOLUTION_1024_640",
        "color_palette": {"members": [{"color_hex": "#FF0000", "color_weight": 1.0}]},
    }
    reply = remix(kie, request, png_bytes(fmt="JPEG"))
    task_id = reply.json()["data"]["task_id"]
    time.sleep(0.3)
    task = kie.http.get(f"{kie.base}/ideogram/tasks/{task_id}").json()
    url = task["data"]["task_result"]["images"][0]["url"]
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (1024, 640)


def test_remix_sync_mode(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(remix_mode="sync")
    kie = Kie(emu)
    reply = remix(kie, {"prompt": "sync please", "num_images": 3, "seed": 5}, png_bytes())
    assert reply.status_code == 200
    body = reply.json()
    assert body["created"].endswith("Z")
    assert len(body["data"]) == 3
    for item in body["data"]:
        assert item["is_image_safe"] is True and item["prompt"] == "sync please"
        assert item["resolution"] == "1024x1024" and item["seed"] == 5
        assert item["style_type"] in ("AUTO", "GENERAL")
        assert httpx.get(item["url"]).status_code == 200
    emu.admin.set_faults(fail_tasks={"count": 1, "endpoint": "remix"})
    failed = remix(kie, {"prompt": "unsafe"}, png_bytes()).json()
    assert failed["data"][0]["is_image_safe"] is False and "url" not in failed["data"][0]


REMIX_CASES: list[tuple[Any, str]] = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "aspect_ratio": "16:9"}, "aspect_ratio"),
    ({"prompt": "x", "color_palette": {"name": "RED"}}, "color_palette.name"),
    (
        {"prompt": "x", "color_palette": {"name": "EMBER", "members": []}},
        "color_palette",
    ),
    ({"prompt": "x", "color_palette": {"members": []}}, "color_palette.members"),
    (
        {"prompt": "x", "color_palette": {"members": [{"color_hex": "red"}]}},
        "color_hex",
    ),
    (
        {
            "prompt": "x",
            "color_palette": {"members": [{"color_hex": "#FFFFFF", "color_weight": 0.01}]},
        },
        "color_weight",
    ),
    ({"prompt": "x", "image_weight": 0}, "image_weight"),
    ({"prompt": "x", "image_weight": 101}, "image_weight"),
    ({"prompt": "x", "magic_prompt_option": "MAYBE"}, "magic_prompt_option"),
    ({"prompt": "x", "model": "V_3"}, "model"),
    ({"prompt": "x", "num_images": 0}, "num_images"),
    ({"prompt": "x", "num_images": 9}, "num_images"),
    ({"prompt": "x", "num_images": "2"}, "num_images"),
    ({"prompt": "x", "resolution": "1024x1024"}, "resolution"),
    ({"prompt": "x", "resolution": "RESOLUTION_100_100"}, "resolution"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": 2147483648}, "seed"),
    ({"prompt": "x", "style_type": "PHOTO"}, "style_type"),
    ({"prompt": "x", "negative_prompt": 5}, "negative_prompt"),
    ({"prompt": "x", "image_fidelity": 0.5}, "image_fidelity"),
    ("not json", "image_request"),
    ("[1, 2]", "image_request"),
    (None, "image_request"),
]


@pytest.mark.parametrize(("request_", "word"), REMIX_CASES)
def test_remix_validation(kie: Kie, request_: Any, word: str) -> None:
    reply = remix(kie, request_, png_bytes())
    assert reply.status_code in (400, 422)
    body = reply.json()
    assert body["code"] == reply.status_code
    assert word in body["message"], body


def test_remix_image_file_rules(kie: Kie) -> None:
    missing = remix(kie, {"prompt": "x"}, None)
    assert missing.status_code == 400 and "image_file" in missing.json()["message"]
    not_image = remix(kie, {"prompt": "x"}, b"hello")
    assert not_image.status_code == 422 and "image_file" in not_image.json()["message"]
    not_multipart = kie.http.post(kie.base + "/ideogram/remix", json={"prompt": "x"})
    assert not_multipart.status_code == 400
