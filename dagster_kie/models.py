"""Typed requests and replies of kie.ai's Ideogram models and of the Ideogram Remix endpoint.

Requests are strict: an unknown field, a value outside an enum, a prompt that is too long all raise
:class:`pydantic.ValidationError` naming the field and what is allowed, before anything is sent.
Replies are tolerant where the real service is inconsistent (``msg`` or ``message``, JSON strings
inside JSON, empty strings for nulls).

Example:
    >>> from dagster_kie.models import parse_request
    >>> body = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a fox"}}
    >>> request = parse_request(body)
    >>> request.input.image_size
    'square_hd'
    >>> len(request.request_id)
    32
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

__all__ = [
    "IMAGE_SIZE_DIMENSIONS",
    "MODELS",
    "CharacterInput",
    "CharacterRequest",
    "ColorPalette",
    "ColorPaletteMember",
    "Credits",
    "KieRequest",
    "ReframeInput",
    "ReframeRequest",
    "RemixImage",
    "RemixImageRequest",
    "RemixResult",
    "TaskRecord",
    "TaskState",
    "TextToImageInput",
    "TextToImageRequest",
    "UploadedFile",
    "canonical_json",
    "image_sources",
    "parse_remix_request",
    "parse_request",
    "request_id_for",
    "with_image_sources",
]

TEXT_TO_IMAGE = "ideogram/v3-text-to-image"
REFRAME = "ideogram/v3-reframe"
CHARACTER = "ideogram/character"
MODELS: tuple[str, ...] = (TEXT_TO_IMAGE, REFRAME, CHARACTER)
"""The kie.ai model ids this package speaks."""

ImageSize = Literal[
    "square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"
]
RenderingSpeed = Literal["TURBO", "BALANCED", "QUALITY"]
V3Style = Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN"]
CharacterStyle = Literal["AUTO", "REALISTIC", "FICTION"]
TaskState = Literal["waiting", "queuing", "generating", "success", "fail"]
TERMINAL_STATES: frozenset[str] = frozenset({"success", "fail"})

IMAGE_SIZE_DIMENSIONS: dict[str, tuple[int, int]] = {
    "square": (512, 512),
    "square_hd": (1024, 1024),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
"""(width, height) in pixels of each ``image_size`` (Ideogram V3 on kie.ai)."""

MAX_PROMPT_CHARS = 5000
MAX_SEED = 2_147_483_647
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _count_as_string(value: Any) -> Any:
    # kie.ai wants "1".."4"; an integer from a hand-written JSON file is the same request.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


NumImages = Annotated[Literal["1", "2", "3", "4"], BeforeValidator(_count_as_string)]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
NegativePrompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]
ImageSource = Annotated[str, Field(min_length=1, max_length=4096)]


class _Strict(BaseModel):
    """Rejects unknown fields: a typo must not silently cost money."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class _ImageInput(_Strict):
    """Fields every Ideogram V3 model on kie.ai shares."""

    rendering_speed: RenderingSpeed = "BALANCED"
    num_images: NumImages = "1"
    image_size: ImageSize = "square_hd"


class TextToImageInput(_ImageInput):
    """Input of ``ideogram/v3-text-to-image`` (seed 001)."""

    prompt: Prompt
    style: V3Style = "AUTO"
    expand_prompt: bool | None = None
    negative_prompt: NegativePrompt = ""
    seed: Seed | None = None


class ReframeInput(_ImageInput):
    """Input of ``ideogram/v3-reframe`` (seed 000).

    ``image_url`` is the URL of an uploaded JPEG/PNG/WebP (≤ 10 MB). dagster-kie also accepts a
    local path or an ``s3://`` URI here and uploads it through the file-upload API first.
    """

    image_url: ImageSource
    style: V3Style = "AUTO"
    seed: Annotated[int | float, Field(ge=0, le=MAX_SEED)] | None = None


class CharacterInput(_ImageInput):
    """Input of ``ideogram/character`` (seeds 002, 003).

    Only the first of ``reference_image_urls`` is used by the model; each may be a URL, a local
    path or an ``s3://`` URI (uploaded first).
    """

    prompt: Prompt
    reference_image_urls: Annotated[list[ImageSource], Field(min_length=1)]
    style: CharacterStyle = "AUTO"
    expand_prompt: bool = True
    negative_prompt: NegativePrompt = ""
    seed: Seed | None = None


class _RequestBase(_Strict):
    id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)] | None = Field(
        default=None,
        description="Your own id for this request; otherwise a hash of its canonical content.",
    )
    callBackUrl: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="kie.ai's callBackUrl, as in the seeds' createTask bodies (not in the id).",
    )

    @property
    def request_id(self) -> str:
        """The stable id of this request: yours, or a hash of the canonical model + input."""
        return self.id or request_id_for(self.body())

    def body(self) -> dict[str, Any]:
        """The createTask body (``model`` and ``input``, defaults filled, nulls left out)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"id"})

    @property
    def num_images(self) -> int:
        """How many images this request will create."""
        return int(getattr(self, "input").num_images)  # noqa: B009  (each subclass has input)

    @property
    def image_size(self) -> str:
        """The requested ``image_size``."""
        return str(getattr(self, "input").image_size)  # noqa: B009


class TextToImageRequest(_RequestBase):
    """A createTask request for ``ideogram/v3-text-to-image``."""

    model: Literal["ideogram/v3-text-to-image"]
    input: TextToImageInput


class ReframeRequest(_RequestBase):
    """A createTask request for ``ideogram/v3-reframe``."""

    model: Literal["ideogram/v3-reframe"]
    input: ReframeInput


class CharacterRequest(_RequestBase):
    """A createTask request for ``ideogram/character``."""

    model: Literal["ideogram/character"]
    input: CharacterInput


KieRequest = Annotated[
    Union[TextToImageRequest, ReframeRequest, CharacterRequest],  # noqa: UP007
    Field(discriminator="model"),
]
"""Any createTask request this package speaks, chosen by its ``model`` field."""

_REQUEST_ADAPTER: TypeAdapter[TextToImageRequest | ReframeRequest | CharacterRequest] = TypeAdapter(
    KieRequest
)


_REQUEST_TYPES: dict[str, type[BaseModel]] = {
    TEXT_TO_IMAGE: TextToImageRequest,
    REFRAME: ReframeRequest,
    CHARACTER: CharacterRequest,
}


def parse_request(
    record: dict[str, Any],
) -> TextToImageRequest | ReframeRequest | CharacterRequest:
    """Validate a createTask body (``{"model": ..., "input": {...}}``) into its typed request.

    An unknown field's error lists the fields allowed there (and the closest one, for a typo); an
    unknown or missing ``model`` is reported under ``model``, listing the models.

    Raises:
        pydantic.ValidationError: naming each bad field and what it allows.
    """
    try:
        return _REQUEST_ADAPTER.validate_python(record)
    except ValidationError as error:
        raise _explained(error, record) from None


def _did_you_mean(given: object, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


_KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))


def _explained(error: ValidationError, record: Any) -> ValidationError:
    """``error`` with the unknown-field and unknown-model messages made actionable.

    pydantic's own texts ("Extra inputs are not permitted", "Input tag ... does not match any of
    the expected tags", reported for the whole record) name neither what is allowed nor, for the
    model, the field.
    """
    items = error.errors(include_url=False)
    details: list[InitErrorDetails] = []
    for item in items:
        loc, kind = tuple(item["loc"]), item["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found") and not loc:
            given = record.get("model") if isinstance(record, dict) else None
            models = ", ".join(MODELS)
            if kind == "union_tag_not_found":
                text = f"Field required: one of {models}"
            else:
                text = f"unknown model {given!r}{_did_you_mean(given, MODELS)}; allowed: {models}"
            details.append(_custom(kind, text, ("model",), given))
        elif kind == "extra_forbidden" and loc and loc[0] in _REQUEST_TYPES:
            model = str(loc[0])
            details.append(_extra_field(item, _REQUEST_TYPES[model], model, f"the {model} request"))
        else:
            details.append(_unchanged(item))
    return ValidationError.from_exception_data(error.title, details)


def _extra_field(item: Any, root: type[BaseModel], name: str, whole: str) -> InitErrorDetails:
    """An unknown-field error naming where it is and the fields allowed there.

    ``name`` prefixes a nested object's path; ``whole`` names ``root`` itself. A location that
    starts with ``name`` (a tagged union's tag) has it skipped.
    """
    loc = tuple(item["loc"])
    inner = loc[1:-1] if loc and loc[0] == name else loc[:-1]
    owner = _model_at(root, inner)
    if owner is None:
        return _unchanged(item)
    allowed = sorted(owner.model_fields)
    path = ".".join(str(part) for part in inner if not isinstance(part, int))
    where = f"{name} {path}" if path else whole
    text = (
        f"Extra inputs are not permitted: {str(loc[-1])!r} is not a field of {where}"
        f"{_did_you_mean(loc[-1], allowed)}; allowed: {', '.join(allowed)}"
    )
    return _custom("extra_forbidden", text, loc, item["input"])


def _custom(kind: str, text: str, loc: tuple[Any, ...], value: Any) -> InitErrorDetails:
    # No context: the text is shown as is (placeholders are filled from the context only).
    return InitErrorDetails(type=PydanticCustomError(kind, text), loc=loc, input=value)


def _unchanged(item: Any) -> InitErrorDetails:
    """An error re-raised as pydantic reported it (same type, context and so message)."""
    loc, value = tuple(item["loc"]), item["input"]
    if item["type"] in _KNOWN_ERROR_TYPES:
        if "ctx" in item:
            return InitErrorDetails(type=item["type"], loc=loc, input=value, ctx=item["ctx"])
        return InitErrorDetails(type=item["type"], loc=loc, input=value)
    return _custom(item["type"], item["msg"], loc, value)


def _model_at(root: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The model that validated the object at ``path`` (list indexes skipped) below ``root``."""
    model: type[BaseModel] | None = root
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part)) if model is not None else None
        model = _nested_model(info.annotation) if info is not None else None
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal requests give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_id_for(body: dict[str, Any]) -> str:
    """A stable 32-hex-digit id of a createTask body (model + input; ``callBackUrl`` ignored)."""
    identity = {"model": body.get("model"), "input": body.get("input")}
    return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()[:32]


# --- Ideogram Remix (seed 004) -------------------------------------------------------------------

AspectRatio = Literal[
    "ASPECT_10_16", "ASPECT_16_10", "ASPECT_9_16", "ASPECT_16_9", "ASPECT_3_2", "ASPECT_2_3",
    "ASPECT_4_3", "ASPECT_3_4", "ASPECT_1_1", "ASPECT_1_3", "ASPECT_3_1",
]  # fmt: skip
PaletteName = Literal[
    "EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE"
]
_RESOLUTION = re.compile(r"^RESOLUTION_(\d{3,4})_(\d{3,4})$")


class ColorPaletteMember(_Strict):
    """One colour of a custom Remix palette."""

    color_hex: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")]
    color_weight: Annotated[float, Field(ge=0.05, le=1.0)] | None = None


class ColorPalette(_Strict):
    """A Remix colour palette: a preset ``name`` or custom ``members``, exactly one of them."""

    name: PaletteName | None = None
    members: Annotated[list[ColorPaletteMember], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _name_xor_members(self) -> ColorPalette:
        if (self.name is None) == (self.members is None):
            raise ValueError("give exactly one of 'name' (a preset) or 'members' (custom colours)")
        return self


class RemixImageRequest(_Strict):
    """The ``image_request`` part of an Ideogram Remix call (seed 004)."""

    prompt: Annotated[str, Field(min_length=1)]
    aspect_ratio: AspectRatio | None = None
    color_palette: ColorPalette | None = None
    image_weight: Annotated[int, Field(ge=1, le=100, strict=True)] = 50
    magic_prompt_option: Literal["AUTO", "ON", "OFF"] | None = None
    model: Literal["V_1", "V_1_TURBO", "V_2", "V_2_TURBO"] = "V_2"
    negative_prompt: str | None = None
    num_images: Annotated[int, Field(ge=1, le=8, strict=True)] = 1
    resolution: str | None = Field(
        default=None, description="RESOLUTION_<W>_<H>, each side 512-1536 pixels"
    )
    seed: Seed | None = None
    style_type: Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN", "RENDER_3D", "ANIME"] | None = (
        None
    )

    @field_validator("resolution")
    @classmethod
    def _resolution_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _RESOLUTION.match(value)
        if not match or not all(512 <= int(side) <= 1536 for side in match.groups()):
            raise ValueError(
                "must look like RESOLUTION_<W>_<H> with each side between 512 and 1536, "
                "e.g. RESOLUTION_1024_1024"
            )
        return value

    @model_validator(mode="after")
    def _one_shape_option(self) -> RemixImageRequest:
        if self.aspect_ratio is not None and self.resolution is not None:
            raise ValueError("give 'aspect_ratio' or 'resolution', not both")
        return self

    def to_json(self) -> str:
        """The JSON string sent as the multipart ``image_request`` part."""
        return self.model_dump_json(exclude_none=True)


def parse_remix_request(record: Mapping[str, Any]) -> RemixImageRequest:
    """Validate a Remix ``image_request`` mapping into a :class:`RemixImageRequest`.

    An unknown field's error lists the fields allowed there (and the closest one, for a typo).

    Raises:
        pydantic.ValidationError: naming each bad field and what it allows.
    """
    try:
        return RemixImageRequest.model_validate(dict(record))
    except ValidationError as error:
        details = [
            _extra_field(item, RemixImageRequest, "Remix image_request", "the Remix image_request")
            if item["type"] == "extra_forbidden"
            else _unchanged(item)
            for item in error.errors(include_url=False)
        ]
        raise ValidationError.from_exception_data(error.title, details) from None


# --- Replies -------------------------------------------------------------------------------------


def _json_string(value: Any) -> Any:
    # recordInfo nests JSON as strings ("param", "resultJson"); "" and null mean "nothing yet".
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _optional_text(value: Any) -> Any:
    value = _blank_to_none(value)
    return None if value is None else str(value)


_Tolerant = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class TaskRecord(BaseModel):
    """A task as ``GET /api/v1/jobs/recordInfo`` (or a callback) reports it."""

    model_config = _Tolerant

    task_id: str = Field(validation_alias=AliasChoices("taskId", "task_id"))
    model: str | None = None
    state: TaskState
    param: Annotated[dict[str, Any] | None, BeforeValidator(_json_string)] = None
    result: Annotated[dict[str, Any] | None, BeforeValidator(_json_string)] = Field(
        default=None, validation_alias=AliasChoices("resultJson", "result")
    )
    fail_code: Annotated[str | None, BeforeValidator(_optional_text)] = Field(
        default=None, validation_alias=AliasChoices("failCode", "fail_code")
    )
    fail_msg: Annotated[str | None, BeforeValidator(_optional_text)] = Field(
        default=None, validation_alias=AliasChoices("failMsg", "fail_msg")
    )
    cost_time: Annotated[float | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, validation_alias=AliasChoices("costTime", "cost_time")
    )
    create_time: Annotated[int | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, validation_alias=AliasChoices("createTime", "create_time")
    )
    update_time: Annotated[int | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, validation_alias=AliasChoices("updateTime", "update_time")
    )
    complete_time: Annotated[int | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, validation_alias=AliasChoices("completeTime", "complete_time")
    )
    credits_consumed: Annotated[float | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        validation_alias=AliasChoices("creditsConsumed", "consumeCredits", "credits_consumed"),
    )
    progress: Annotated[float | None, BeforeValidator(_blank_to_none)] = None

    @property
    def result_urls(self) -> list[str]:
        """The result URLs (``resultJson.resultUrls``); empty until the task succeeded."""
        urls = (self.result or {}).get("resultUrls") or []
        return [str(url) for url in urls]

    @property
    def is_terminal(self) -> bool:
        """True once the task ended (``success`` or ``fail``)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the task ended in ``success``."""
        return self.state == "success"


class UploadedFile(BaseModel):
    """A file stored by the file-upload API; pass :attr:`url` as an ``image_url``."""

    model_config = _Tolerant

    file_name: str | None = Field(default=None, validation_alias=AliasChoices("fileName"))
    file_path: str | None = Field(default=None, validation_alias=AliasChoices("filePath"))
    url: str = Field(validation_alias=AliasChoices("downloadUrl", "fileUrl", "url"))
    file_size: int | None = Field(default=None, validation_alias=AliasChoices("fileSize"))
    mime_type: str | None = Field(default=None, validation_alias=AliasChoices("mimeType"))
    uploaded_at: str | None = Field(default=None, validation_alias=AliasChoices("uploadedAt"))


class Credits(BaseModel):
    """The account's credit balance (``GET /api/v1/chat/credit``)."""

    model_config = _Tolerant

    balance: float


class RemixImage(BaseModel):
    """One image of a Remix reply."""

    model_config = _Tolerant

    url: str | None = None
    prompt: str | None = None
    resolution: str | None = None
    is_image_safe: bool | None = None
    seed: int | None = None
    style_type: str | None = None


class RemixResult(BaseModel):
    """A Remix reply, in either shape: an aggregator task or Ideogram's synchronous images.

    ``task_id`` is set when the aggregator queued a task (seed 004); ``images`` is filled when the
    reply (or the task query) carried the images.
    """

    model_config = _Tolerant

    task_id: str | None = None
    status: str | None = None
    images: list[RemixImage] = Field(default_factory=list)

    @property
    def image_urls(self) -> list[str]:
        """URLs of the safe images (Ideogram leaves ``url`` out of an unsafe one)."""
        return [image.url for image in self.images if image.url]


def image_sources(request: TextToImageRequest | ReframeRequest | CharacterRequest) -> list[str]:
    """The input images a request names (URLs, local paths or ``s3://`` URIs), in order."""
    if isinstance(request, ReframeRequest):
        return [request.input.image_url]
    if isinstance(request, CharacterRequest):
        return list(request.input.reference_image_urls)
    return []


def with_image_sources(
    request: TextToImageRequest | ReframeRequest | CharacterRequest,
    resolved: dict[str, str],
) -> TextToImageRequest | ReframeRequest | CharacterRequest:
    """A copy of ``request`` whose input images are replaced through ``resolved`` (old → new)."""
    if isinstance(request, ReframeRequest):
        update: dict[str, Any] = {"image_url": resolved.get(request.input.image_url)}
    elif isinstance(request, CharacterRequest):
        urls = request.input.reference_image_urls
        update = {"reference_image_urls": [resolved.get(url, url) for url in urls]}
    else:
        return request
    update = {key: value for key, value in update.items() if value is not None}
    return request.model_copy(update={"input": request.input.model_copy(update=update)})
