"""Every createTask validation rule of the seeds, as a table (code 422, msg names the field)."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Kie

pytestmark = pytest.mark.integration

T2I = "ideogram/v3-text-to-image"
REFRAME = "ideogram/v3-reframe"
CHAR = "ideogram/character"
URL = "http://127.0.0.1:1/ref.png"

VALID: dict[str, dict[str, Any]] = {
    T2I: {"prompt": "a cat"},
    REFRAME: {
        "image_url": URL,
        "image_size": "square_hd",
        "rendering_speed": "BALANCED",
        "style": "AUTO",
        "num_images": "1",
    },
    CHAR: {"prompt": "a cat", "reference_image_urls": [URL]},
}

_DROP = object()

# (model, field, value, words the message must contain) — _DROP removes the field
CASES: list[tuple[str, str, Any, str]] = [
    # prompt
    (T2I, "prompt", _DROP, "prompt"),
    (T2I, "prompt", "", "prompt"),
    (T2I, "prompt", 5, "prompt"),
    (T2I, "prompt", "x" * 5001, "prompt"),
    (CHAR, "prompt", _DROP, "prompt"),
    (CHAR, "prompt", "y" * 5001, "prompt"),
    # negative_prompt
    (T2I, "negative_prompt", "n" * 5001, "negative_prompt"),
    (T2I, "negative_prompt", 3, "negative_prompt"),
    (CHAR, "negative_prompt", "n" * 5001, "negative_prompt"),
    # image_size
    (T2I, "image_size", "huge", "image_size"),
    (CHAR, "image_size", "SQUARE", "image_size"),
    (REFRAME, "image_size", "square_xl", "image_size"),
    (REFRAME, "image_size", _DROP, "image_size"),
    # rendering_speed
    (T2I, "rendering_speed", "FAST", "rendering_speed"),
    (CHAR, "rendering_speed", "turbo", "rendering_speed"),
    (REFRAME, "rendering_speed", _DROP, "rendering_speed"),
    # style per model
    (T2I, "style", "FICTION", "style"),
    (REFRAME, "style", "FICTION", "style"),
    (REFRAME, "style", _DROP, "style"),
    (CHAR, "style", "GENERAL", "style"),
    (CHAR, "style", "DESIGN", "style"),
    # num_images: the strings "1".."4"
    (T2I, "num_images", 1, "num_images"),
    (T2I, "num_images", "5", "num_images"),
    (T2I, "num_images", "0", "num_images"),
    (CHAR, "num_images", "four", "num_images"),
    (REFRAME, "num_images", _DROP, "num_images"),
    # seed: integer (reframe: number)
    (T2I, "seed", "7", "seed"),
    (T2I, "seed", 1.5, "seed"),
    (T2I, "seed", True, "seed"),
    (CHAR, "seed", 2.5, "seed"),
    (REFRAME, "seed", "1", "seed"),
    # expand_prompt: boolean
    (T2I, "expand_prompt", "yes", "expand_prompt"),
    (CHAR, "expand_prompt", 1, "expand_prompt"),
    # reframe image_url
    (REFRAME, "image_url", _DROP, "image_url"),
    (REFRAME, "image_url", "not a url", "image_url"),
    (REFRAME, "image_url", "ftp://127.0.0.1/a.png", "image_url"),
    (REFRAME, "image_url", ["http://127.0.0.1/a.png"], "image_url"),
    # character reference_image_urls
    (CHAR, "reference_image_urls", _DROP, "reference_image_urls"),
    (CHAR, "reference_image_urls", [], "reference_image_urls"),
    (CHAR, "reference_image_urls", URL, "reference_image_urls"),
    (CHAR, "reference_image_urls", [5], "reference_image_urls"),
    (CHAR, "reference_image_urls", ["nope"], "reference_image_urls"),
    # fields a model does not take
    (T2I, "image_url", URL, "image_url"),
    (T2I, "style_codes", ["abc"], "style_codes"),
    (REFRAME, "prompt", "a cat", "prompt"),
    (REFRAME, "negative_prompt", "", "negative_prompt"),
    (REFRAME, "expand_prompt", True, "expand_prompt"),
    (CHAR, "image_url", URL, "image_url"),
]


@pytest.mark.parametrize(("model", "field", "value", "word"), CASES)
def test_invalid_input(kie: Kie, model: str, field: str, value: Any, word: str) -> None:
    input_ = dict(VALID[model])
    if value is _DROP:
        input_.pop(field, None)
    else:
        input_[field] = value
    reply = kie.create({"model": model, "input": input_})
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 422, body
    assert body["data"] is None
    assert word in body["msg"], body["msg"]
    assert body["msg"].startswith(f"input.{field}"), body["msg"]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"input": {"prompt": "x"}}, "model"),
        ({"model": "ideogram/v2", "input": {"prompt": "x"}}, "model"),
        ({"model": T2I}, "input"),
        ({"model": T2I, "input": "prompt"}, "input"),
        ({"model": T2I, "input": {"prompt": "x"}, "callBackUrl": "not-a-url"}, "callBackUrl"),
        ({"model": T2I, "input": {"prompt": "x"}, "webhook": "http://x"}, "webhook"),
        ([1, 2], "body"),
    ],
)
def test_invalid_body(kie: Kie, body: Any, word: str) -> None:
    reply = kie.create(body)
    assert reply.status_code == 200
    assert reply.json()["code"] == 422
    assert word in reply.json()["msg"]


def test_not_json_body(kie: Kie) -> None:
    reply = kie.http.post(kie.base + "/api/v1/jobs/createTask", content=b"{nope")
    assert reply.json()["code"] == 422 and "body" in reply.json()["msg"]


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (T2I, {"rendering_speed": "QUALITY", "style": "DESIGN", "expand_prompt": False}),
        (T2I, {"seed": 123, "negative_prompt": "", "num_images": "4", "image_size": "square"}),
        (T2I, {"prompt": "p" * 5000, "negative_prompt": "n" * 5000}),
        (REFRAME, {"seed": 0.5}),
        (REFRAME, {"seed": 7, "style": "REALISTIC", "rendering_speed": "TURBO"}),
        (CHAR, {"style": "FICTION", "expand_prompt": True, "seed": 9}),
        (CHAR, {"reference_image_urls": [URL, URL], "negative_prompt": "blur"}),
    ],
)
def test_valid_inputs(kie: Kie, model: str, extra: dict[str, Any]) -> None:
    reply = kie.create({"model": model, "input": {**VALID[model], **extra}}).json()
    assert reply["code"] == 200, reply


def test_lenient_required_reframe(start_emulator: Any) -> None:
    emu = start_emulator(lenient_required=True)
    kie = Kie(emu)
    reply = kie.create({"model": REFRAME, "input": {"image_url": URL}}).json()
    assert reply["code"] == 200
    kie.close()
