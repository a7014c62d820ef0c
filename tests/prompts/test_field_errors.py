"""Validation errors users read: unknown fields list the allowed ones, a bad model is ``model``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dagster_kie.models import (
    CHARACTER,
    MODELS,
    REFRAME,
    TEXT_TO_IMAGE,
    parse_remix_request,
    parse_request,
)
from dagster_kie.prompts import RecordDefaults


def _errors(record: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        parse_request(record)
    return caught.value.errors(include_url=False)


def test_unknown_input_field_lists_the_model_input_fields() -> None:
    [error] = _errors({"model": CHARACTER, "input": {"prompt": "p", "reference_image_urls": ["u"],
                                                     "seeed": 1}})  # fmt: skip
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (CHARACTER, "input", "seeed")
    assert (
        "'seeed' is not a field of ideogram/character input (did you mean 'seed'?)"
        in (error["msg"])
    )
    assert error["msg"].endswith(
        "allowed: expand_prompt, image_size, negative_prompt, num_images, prompt, "
        "reference_image_urls, rendering_speed, seed, style"
    )


def test_unrelated_field_gets_no_guess() -> None:
    [error] = _errors({"model": REFRAME, "input": {"image_url": "u", "priority": 1}})
    assert "did you mean" not in error["msg"]
    assert "allowed: image_size, image_url" in error["msg"]


@pytest.mark.parametrize("model", ["ideogram/v4", None, 7])
def test_unknown_model_is_reported_under_model(model: Any) -> None:
    [error] = _errors({"model": model, "input": {"prompt": "p"}})
    assert error["loc"] == ("model",)
    assert error["input"] == model
    assert error["msg"].endswith("allowed: " + ", ".join(MODELS))


def test_missing_model_is_reported_under_model() -> None:
    [error] = _errors({"input": {"prompt": "p"}})
    assert error["loc"] == ("model",)
    assert error["msg"] == "Field required: one of " + ", ".join(MODELS)


def test_other_errors_keep_pydantic_messages_and_context() -> None:
    errors = _errors({"model": TEXT_TO_IMAGE, "input": {"prompt": "", "seed": -1, "x": 1}})
    by_field = {error["loc"][-1]: error for error in errors}
    assert by_field["prompt"]["msg"] == "String should have at least 1 character"
    assert by_field["seed"]["type"] == "greater_than_equal"
    assert by_field["seed"]["ctx"] == {"ge": 0}
    assert by_field["x"]["type"] == "extra_forbidden"


def test_bad_default_field_lists_the_model_input_fields() -> None:
    with pytest.raises(ValueError) as caught:
        RecordDefaults(REFRAME, {"negative_prompt": "blur"})
    message = str(caught.value)
    assert message.startswith(f"defaults do not fit {REFRAME}: negative_prompt: ")
    assert "allowed: image_size, image_url, num_images, rendering_speed, seed, style" in message


def test_unknown_remix_fields_list_the_allowed_ones_at_every_level() -> None:
    palette = {"members": [{"color_hex": "#ffffff", "colour_weight": 0.5}]}
    with pytest.raises(ValidationError) as caught:
        parse_remix_request({"prompt": "p", "seeed": 1, "color_palette": palette})
    top, nested = sorted(caught.value.errors(include_url=False), key=lambda e: len(e["loc"]))
    assert top["loc"] == ("seeed",)
    assert "'seeed' is not a field of the Remix image_request (did you mean 'seed'?)" in top["msg"]
    assert top["msg"].endswith(
        "allowed: aspect_ratio, color_palette, image_weight, magic_prompt_option, model, "
        "negative_prompt, num_images, prompt, resolution, seed, style_type"
    )
    assert nested["loc"] == ("color_palette", "members", 0, "colour_weight")
    assert "not a field of Remix image_request color_palette.members" in nested["msg"]
    assert nested["msg"].endswith(
        "(did you mean 'color_weight'?); allowed: color_hex, color_weight"
    )


def test_other_remix_errors_keep_pydantic_messages() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_remix_request({"prompt": "p", "num_images": 9})
    [error] = caught.value.errors(include_url=False)
    assert (error["type"], error["loc"]) == ("less_than_equal", ("num_images",))
    assert error["ctx"] == {"le": 8}
