"""Request validation, written from the API documents (seeds 000–004) independently of the client.

Every failure raises :class:`ValidationFailed` with a message of the form
``"<field>: <what is allowed>"`` (fields are dotted paths such as ``input.image_size``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "IMAGE_SIZES",
    "MODELS",
    "NUM_IMAGES",
    "REMIX_ASPECT_RATIOS",
    "RENDERING_SPEEDS",
    "CreateRequest",
    "RemixRequest",
    "ValidationFailed",
    "is_http_url",
    "validate_create_task",
    "validate_remix_request",
]

MAX_PROMPT = 5000
IMAGE_SIZES = (
    "square",
    "square_hd",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
)
RENDERING_SPEEDS = ("TURBO", "BALANCED", "QUALITY")
NUM_IMAGES = ("1", "2", "3", "4")
STYLES_V3 = ("AUTO", "GENERAL", "REALISTIC", "DESIGN")
STYLES_CHARACTER = ("AUTO", "REALISTIC", "FICTION")

TEXT_TO_IMAGE = "ideogram/v3-text-to-image"
REFRAME = "ideogram/v3-reframe"
CHARACTER = "ideogram/character"
MODELS = (TEXT_TO_IMAGE, REFRAME, CHARACTER)

REMIX_ASPECT_RATIOS = (
    "ASPECT_10_16",
    "ASPECT_16_10",
    "ASPECT_9_16",
    "ASPECT_16_9",
    "ASPECT_3_2",
    "ASPECT_2_3",
    "ASPECT_4_3",
    "ASPECT_3_4",
    "ASPECT_1_1",
    "ASPECT_1_3",
    "ASPECT_3_1",
)
REMIX_PALETTES = ("EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE")
REMIX_MAGIC = ("AUTO", "ON", "OFF")
REMIX_MODELS = ("V_1", "V_1_TURBO", "V_2", "V_2_TURBO")
REMIX_STYLES = ("AUTO", "GENERAL", "REALISTIC", "DESIGN", "RENDER_3D", "ANIME")
REMIX_MAX_SEED = 2147483647
_RESOLUTION = re.compile(r"^RESOLUTION_(\d{3,4})_(\d{3,4})$")
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


class ValidationFailed(ValueError):
    """A request failed validation; ``str(exc)`` is the reply's message."""

    def __init__(self, field: str, allowed: str, code: int = 422) -> None:
        super().__init__(f"{field}: {allowed}")
        self.field = field
        self.code = code


def _one_of(values: tuple[str, ...]) -> str:
    return "must be one of " + ", ".join(values)


def is_http_url(value: object) -> bool:
    """Whether ``value`` is an absolute http(s) URL string."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# --- field checkers ---------------------------------------------------------------------------

Checker = Callable[[str, Any], Any]


def _prompt(max_len: int = MAX_PROMPT, *, allow_empty: bool = False) -> Checker:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationFailed(name, f"must be a string of at most {max_len} characters")
        if not allow_empty and not value.strip():
            raise ValidationFailed(
                name, f"must be a non-empty string of at most {max_len} characters"
            )
        if len(value) > max_len:
            raise ValidationFailed(name, f"must be at most {max_len} characters (got {len(value)})")
        return value

    return check


def _enum(values: tuple[str, ...]) -> Checker:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in values:
            raise ValidationFailed(name, _one_of(values) + f" (got {json.dumps(value)})")
        return value

    return check


def _num_images(name: str, value: Any) -> Any:
    if not isinstance(value, str) or value not in NUM_IMAGES:
        raise ValidationFailed(
            name, 'must be one of the strings "1", "2", "3", "4"' + f" (got {json.dumps(value)})"
        )
    return value


def _bool(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValidationFailed(name, "must be a boolean (true or false)")
    return value


def _integer(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(name, "must be an integer")
    return value


def _number(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationFailed(name, "must be a number")
    return value


def _url(name: str, value: Any) -> Any:
    if not is_http_url(value):
        raise ValidationFailed(
            name, "must be the http(s) URL of an uploaded image (image/jpeg, image/png, image/webp)"
        )
    return value


def _url_list(name: str, value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValidationFailed(
            name, "must be a non-empty array of image URLs (only the first one is used)"
        )
    for i, item in enumerate(value):
        _url(f"{name}[{i}]", item)
    return value


@dataclass(frozen=True)
class _Field:
    check: Checker
    required: bool = False
    default: Any = None


_MODEL_FIELDS: dict[str, dict[str, _Field]] = {
    TEXT_TO_IMAGE: {
        "prompt": _Field(_prompt(), required=True),
        "rendering_speed": _Field(_enum(RENDERING_SPEEDS), default="BALANCED"),
        "style": _Field(_enum(STYLES_V3), default="AUTO"),
        "expand_prompt": _Field(_bool),
        "image_size": _Field(_enum(IMAGE_SIZES), default="square_hd"),
        "num_images": _Field(_num_images, default="1"),
        "seed": _Field(_integer),
        "negative_prompt": _Field(_prompt(allow_empty=True), default=""),
    },
    # seed 000: every field but seed is marked required (with documented defaults)
    REFRAME: {
        "image_url": _Field(_url, required=True),
        "image_size": _Field(_enum(IMAGE_SIZES), required=True, default="square_hd"),
        "rendering_speed": _Field(_enum(RENDERING_SPEEDS), required=True, default="BALANCED"),
        "style": _Field(_enum(STYLES_V3), required=True, default="AUTO"),
        "num_images": _Field(_num_images, required=True, default="1"),
        "seed": _Field(_number),
    },
    CHARACTER: {
        "prompt": _Field(_prompt(), required=True),
        "reference_image_urls": _Field(_url_list, required=True),
        "rendering_speed": _Field(_enum(RENDERING_SPEEDS), default="BALANCED"),
        "style": _Field(_enum(STYLES_CHARACTER), default="AUTO"),
        "expand_prompt": _Field(_bool, default=True),
        "num_images": _Field(_num_images, default="1"),
        "image_size": _Field(_enum(IMAGE_SIZES), default="square_hd"),
        "seed": _Field(_integer),
        "negative_prompt": _Field(_prompt(allow_empty=True), default=""),
    },
}


@dataclass(frozen=True)
class CreateRequest:
    """A valid createTask body, with the documented defaults filled in."""

    model: str
    input: dict[str, Any]
    callback_url: str | None

    @property
    def num_images(self) -> int:
        """How many images the task makes."""
        return int(self.input["num_images"])

    @property
    def image_size(self) -> str:
        """The ``image_size`` (after defaults)."""
        return str(self.input["image_size"])

    @property
    def prompt(self) -> str:
        """The prompt, or ``""`` for models without one."""
        return str(self.input.get("prompt", ""))

    @property
    def seed(self) -> int | float | None:
        """The seed, if one was given."""
        seed = self.input.get("seed")
        return seed if isinstance(seed, (int, float)) else None


def validate_create_task(body: Any, *, lenient_required: bool = False) -> CreateRequest:
    """Check a createTask body against the seeds; raise :class:`ValidationFailed` if invalid.

    With ``lenient_required``, fields that seed 000 marks required but gives a default for
    (reframe's ``image_size``, ``rendering_speed``, ``style``, ``num_images``) may be omitted.
    """
    if not isinstance(body, dict):
        raise ValidationFailed("body", "must be a JSON object with model, input and callBackUrl")
    for key in body:
        if key not in ("model", "input", "callBackUrl"):
            raise ValidationFailed(key, "unknown field; allowed: model, input, callBackUrl")
    model = body.get("model")
    if model is None:
        raise ValidationFailed("model", "is required; " + _one_of(MODELS))
    if not isinstance(model, str) or model not in MODELS:
        raise ValidationFailed("model", _one_of(MODELS) + f" (got {json.dumps(model)})")
    callback = body.get("callBackUrl")
    if callback is not None and not is_http_url(callback):
        raise ValidationFailed("callBackUrl", "must be an http(s) URL")
    raw_input = body.get("input")
    if raw_input is None:
        raise ValidationFailed("input", "is required (an object with the model's parameters)")
    if not isinstance(raw_input, dict):
        raise ValidationFailed("input", "must be an object with the model's parameters")
    fields = _MODEL_FIELDS[model]
    for key in raw_input:
        if key not in fields:
            raise ValidationFailed(
                f"input.{key}", f"unknown field for {model}; allowed: {', '.join(fields)}"
            )
    clean: dict[str, Any] = {}
    for key, spec in fields.items():
        name = f"input.{key}"
        if key not in raw_input or raw_input[key] is None:
            if spec.required and not (lenient_required and spec.default is not None):
                raise ValidationFailed(name, "is required")
            if spec.default is not None:
                clean[key] = spec.default
            continue
        clean[key] = spec.check(name, raw_input[key])
    return CreateRequest(model=model, input=clean, callback_url=callback)


# --- remix (seed 004) -----------------------------------------------------------------------


@dataclass(frozen=True)
class RemixRequest:
    """A valid remix ``image_request`` with defaults filled in."""

    prompt: str
    num_images: int
    width: int
    height: int
    seed: int | None
    style_type: str | None
    fields: dict[str, Any]


def _remix_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(name, f"must be an integer from {low} to {high}")
    return value


def _check_palette(value: Any) -> None:
    name = "image_request.color_palette"
    if not isinstance(value, dict):
        raise ValidationFailed(name, 'must be {"name": ...} or {"members": [...]}')
    keys = set(value)
    if keys == {"name"}:
        _enum(REMIX_PALETTES)(f"{name}.name", value["name"])
        return
    if keys == {"members"}:
        members = value["members"]
        if not isinstance(members, list) or not members:
            raise ValidationFailed(f"{name}.members", "must be a non-empty array of colors")
        for i, member in enumerate(members):
            mname = f"{name}.members[{i}]"
            if not isinstance(member, dict):
                raise ValidationFailed(mname, "must be an object with color_hex and color_weight")
            extra = set(member) - {"color_hex", "color_weight"}
            if extra:
                raise ValidationFailed(
                    f"{mname}.{sorted(extra)[0]}", "unknown field; allowed: color_hex, color_weight"
                )
            hex_value = member.get("color_hex")
            if not isinstance(hex_value, str) or not _HEX.match(hex_value):
                raise ValidationFailed(f"{mname}.color_hex", "is required, like #RRGGBB")
            if "color_weight" in member:
                weight = member["color_weight"]
                if (
                    isinstance(weight, bool)
                    or not isinstance(weight, (int, float))
                    or not 0.05 <= weight <= 1.0
                ):
                    raise ValidationFailed(
                        f"{mname}.color_weight", "must be a number from 0.05 to 1.0"
                    )
        return
    raise ValidationFailed(name, 'needs exactly one of "name" or "members"')


_REMIX_KEYS = (
    "prompt",
    "aspect_ratio",
    "color_palette",
    "image_weight",
    "magic_prompt_option",
    "model",
    "negative_prompt",
    "num_images",
    "resolution",
    "seed",
    "style_type",
)


def validate_remix_request(raw: str | bytes | None) -> RemixRequest:
    """Parse and check the ``image_request`` part of a remix call (a JSON string)."""
    if raw is None:
        raise ValidationFailed("image_request", "is required (a JSON object as a string)", 400)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "image_request", "must be a JSON object encoded as a string", 400
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed("image_request", "must be a JSON object encoded as a string", 400)
    for key in data:
        if key not in _REMIX_KEYS:
            raise ValidationFailed(
                f"image_request.{key}", "unknown field; allowed: " + ", ".join(_REMIX_KEYS)
            )
    prompt = data.get("prompt")
    if prompt is None:
        raise ValidationFailed("image_request.prompt", "is required")
    _prompt(10000)("image_request.prompt", prompt)
    fields: dict[str, Any] = {"prompt": prompt}
    if data.get("aspect_ratio") is not None:
        fields["aspect_ratio"] = _enum(REMIX_ASPECT_RATIOS)(
            "image_request.aspect_ratio", data["aspect_ratio"]
        )
    if data.get("color_palette") is not None:
        _check_palette(data["color_palette"])
        fields["color_palette"] = data["color_palette"]
    fields["image_weight"] = _remix_int(
        "image_request.image_weight", data.get("image_weight", 50), 1, 100
    )
    if data.get("magic_prompt_option") is not None:
        fields["magic_prompt_option"] = _enum(REMIX_MAGIC)(
            "image_request.magic_prompt_option", data["magic_prompt_option"]
        )
    fields["model"] = _enum(REMIX_MODELS)("image_request.model", data.get("model", "V_2"))
    if data.get("negative_prompt") is not None:
        fields["negative_prompt"] = _prompt(10000, allow_empty=True)(
            "image_request.negative_prompt", data["negative_prompt"]
        )
    num_images = _remix_int("image_request.num_images", data.get("num_images", 1), 1, 8)
    seed: int | None = None
    if data.get("seed") is not None:
        seed = _remix_int("image_request.seed", data["seed"], 0, REMIX_MAX_SEED)
    style_type: str | None = None
    if data.get("style_type") is not None:
        style_type = _enum(REMIX_STYLES)("image_request.style_type", data["style_type"])
    width, height = 1024, 1024
    if data.get("resolution") is not None:
        width, height = _resolution(data["resolution"])
        fields["resolution"] = data["resolution"]
    elif "aspect_ratio" in fields:
        from .images import ASPECT_RATIO_DIMENSIONS

        width, height = ASPECT_RATIO_DIMENSIONS[fields["aspect_ratio"]]
    return RemixRequest(
        prompt=prompt,
        num_images=num_images,
        width=width,
        height=height,
        seed=seed,
        style_type=style_type,
        fields=fields,
    )


def _resolution(value: Any) -> tuple[int, int]:
    name = "image_request.resolution"
    allowed = "must be RESOLUTION_<W>_<H> with W and H multiples of 16 from 512 to 1536"
    if not isinstance(value, str):
        raise ValidationFailed(name, allowed)
    match = _RESOLUTION.match(value)
    if not match:
        raise ValidationFailed(name, allowed + f" (got {json.dumps(value)})")
    width, height = int(match.group(1)), int(match.group(2))
    if not all(512 <= v <= 1536 and v % 16 == 0 for v in (width, height)):
        raise ValidationFailed(name, allowed + f" (got {json.dumps(value)})")
    return width, height
