"""Prompt files: parsing them into typed requests, and reporting bad records precisely.

A prompt file is JSON Lines (``*.jsonl``), JSON (``*.json``: one object or a list) or plain text
(``*.txt``: one prompt a line). A JSON record is a full createTask body
(``{"model": ..., "input": {...}}``) or the shorthand ``{"prompt": "...", ...}`` for
``ideogram/v3-text-to-image``. A record may carry an ``id``; otherwise its id is a stable hash of
its canonical content, so the same request is never submitted twice.

:class:`RecordDefaults` sets the model of records that name none (text lines, shorthand records)
and input fields merged into every record whose model accepts them (the record's own values win).
Defaults are part of the final body, so they are part of its id.

Example:
    >>> batch = parse_prompt_file("cats.txt", b"a cat in a hat\\n\\na cat on a mat\\n")
    >>> [request.input.prompt for request in batch.requests]
    ['a cat in a hat', 'a cat on a mat']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from dagster_kie.models import (
    CHARACTER,
    MODELS,
    REFRAME,
    TEXT_TO_IMAGE,
    CharacterInput,
    ReframeInput,
    TextToImageInput,
    parse_request,
)

__all__ = [
    "MAX_PROMPT_FILE_BYTES",
    "PROMPT_FILE_SUFFIXES",
    "InvalidRecord",
    "ParsedRequest",
    "PromptBatch",
    "PromptFileError",
    "RecordDefaults",
    "parse_prompt_file",
    "record_to_body",
]

PROMPT_FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".txt")
MAX_PROMPT_FILE_BYTES = 20 * 1024 * 1024
"""Larger prompt files are refused whole: split them (one file is one Dagster partition)."""


class PromptFileError(ValueError):
    """A prompt file that cannot be read at all (bad encoding, bad JSON, too large, empty)."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class InvalidRecord:
    """A record that failed validation; it is reported and never submitted."""

    file: str
    line: int
    errors: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: " + "; ".join(self.errors)


@dataclass(frozen=True)
class ParsedRequest:
    """A valid request and where it came from."""

    request: Any  # TextToImageRequest | ReframeRequest | CharacterRequest
    file: str
    line: int

    @property
    def request_id(self) -> str:
        """The request's stable id."""
        return str(self.request.request_id)


@dataclass
class PromptBatch:
    """Everything one prompt file holds: valid requests (deduplicated by id) and invalid records."""

    file: str
    parsed: list[ParsedRequest] = field(default_factory=list)
    invalid: list[InvalidRecord] = field(default_factory=list)
    duplicates: int = 0

    @property
    def requests(self) -> list[Any]:
        """The valid typed requests, in file order."""
        return [item.request for item in self.parsed]

    @property
    def num_images(self) -> int:
        """How many images the valid requests would create."""
        return sum(int(item.request.num_images) for item in self.parsed)


_INPUT_FIELDS: dict[str, frozenset[str]] = {
    TEXT_TO_IMAGE: frozenset(TextToImageInput.model_fields),
    REFRAME: frozenset(ReframeInput.model_fields),
    CHARACTER: frozenset(CharacterInput.model_fields),
}
"""The ``input`` fields each model accepts."""

_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    TEXT_TO_IMAGE: {"prompt": "placeholder"},
    REFRAME: {"image_url": "placeholder"},
    CHARACTER: {"prompt": "placeholder", "reference_image_urls": ["placeholder"]},
}
"""Stand-ins for each model's required per-record fields, to validate defaults alone."""


@dataclass(frozen=True)
class RecordDefaults:
    """The model of records that name none, and input fields merged into every record.

    An input default is applied only to records whose model has that input field, and a
    record's own values win. Both are checked against ``model`` when the object is made.

    Args:
        model: The model of text lines and shorthand records (and of bodies without one).
        inputs: Input fields applied to every record that does not set them.

    Raises:
        ValueError: an unknown model, or a bad input default (naming the field and what it
            allows; an unknown field, the model's input fields).
    """

    model: str = TEXT_TO_IMAGE
    inputs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(
                f"model {self.model!r} is not one of {', '.join(repr(m) for m in MODELS)}"
            )
        inputs = MappingProxyType(dict(self.inputs))
        object.__setattr__(self, "inputs", inputs)
        try:
            parse_request({"model": self.model, "input": {**_PLACEHOLDERS[self.model], **inputs}})
        except ValidationError as exc:
            problems = []
            for item in exc.errors(include_url=False):
                loc = [str(part) for part in item["loc"] if str(part) not in MODELS]
                where = ".".join(loc[1:] if loc[:1] == ["input"] else loc) or "input"
                problems.append(f"{where}: {item['msg']}")
            raise ValueError(f"defaults do not fit {self.model}: {'; '.join(problems)}") from None

    def inputs_for(self, model: Any) -> dict[str, Any]:
        """The input defaults ``model`` accepts (none for an unknown model)."""
        fields = _INPUT_FIELDS.get(model, frozenset()) if isinstance(model, str) else frozenset()
        return {key: value for key, value in self.inputs.items() if key in fields}


_NO_DEFAULTS = RecordDefaults()


def record_to_body(record: Any, defaults: RecordDefaults | None = None) -> dict[str, Any]:
    """Turn one prompt record (full body, shorthand or string) into a createTask body.

    A string or a shorthand record becomes a body of ``defaults.model`` (text-to-image without
    defaults); a full body keeps its own model. The applicable input defaults are merged under
    the body's input, the record's own values winning. An ``id`` stays at the top level.

    Raises:
        ValueError: when the record is neither a JSON object nor a string.
    """
    defaults = _NO_DEFAULTS if defaults is None else defaults
    if isinstance(record, str):
        record = {"prompt": record}
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object or a string, not {type(record).__name__}")
    if "input" in record or "model" in record:
        body = {key: value for key, value in record.items() if key != "callBackUrl"}
        body.setdefault("model", defaults.model)
        given = body.get("input")
        if isinstance(given, dict):
            body["input"] = {**defaults.inputs_for(body["model"]), **given}
        return body
    shorthand = dict(record)
    request_id = shorthand.pop("id", None)
    body = {"model": defaults.model, "input": {**defaults.inputs_for(defaults.model), **shorthand}}
    if request_id is not None:
        body["id"] = request_id
    return body


def _format_errors(error: ValidationError) -> tuple[str, ...]:
    messages = []
    for item in error.errors(include_url=False):
        # Drop the union tag pydantic puts first ("ideogram/v3-text-to-image.input.prompt").
        loc = [str(part) for part in item["loc"] if str(part) not in MODELS]
        where = ".".join(loc) or "record"
        messages.append(f"{where}: {item['msg']}")
    return tuple(messages)


def _records(file: str, text: str) -> list[tuple[int, Any]]:
    suffix = "." + file.rsplit(".", 1)[-1].lower() if "." in file else ""
    if suffix == ".txt":
        return [
            (number, line.strip())
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if suffix == ".jsonl":
        records: list[tuple[int, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                records.append((number, _Unparsable(f"not valid JSON: {exc.msg}")))
        return records
    if suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptFileError(
                file, f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
            ) from None
        items = document if isinstance(document, list) else [document]
        return [(index, item) for index, item in enumerate(items, start=1)]
    raise PromptFileError(
        file, f"unsupported file type; use one of {', '.join(PROMPT_FILE_SUFFIXES)}"
    )


@dataclass(frozen=True)
class _Unparsable:
    reason: str


def parse_prompt_file(
    file: str, content: bytes, *, defaults: RecordDefaults | None = None
) -> PromptBatch:
    """Parse and validate one prompt file.

    Invalid records are collected (file, line, field, allowed values) and the rest still parse;
    a file that cannot be read at all raises :class:`PromptFileError`.

    Args:
        file: The file's name (its suffix selects the format); used in every message.
        content: The file's bytes (UTF-8, a BOM is allowed).
        defaults: The default model and input fields applied to every record.

    Raises:
        PromptFileError: wrong encoding, bad JSON document, empty or too large file.
    """
    if len(content) > MAX_PROMPT_FILE_BYTES:
        raise PromptFileError(
            file, f"{len(content):,} bytes is over the {MAX_PROMPT_FILE_BYTES:,}-byte limit"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptFileError(
            file, f"not UTF-8 text (byte {exc.start}: {content[exc.start : exc.start + 1]!r})"
        ) from None
    records = _records(file, text)
    if not records:
        raise PromptFileError(file, "no prompt records (the file is empty)")
    batch = PromptBatch(file=file)
    seen: set[str] = set()
    for line, record in records:
        if isinstance(record, _Unparsable):
            batch.invalid.append(InvalidRecord(file, line, (record.reason,)))
            continue
        try:
            request = parse_request(record_to_body(record, defaults))
        except ValidationError as exc:
            batch.invalid.append(InvalidRecord(file, line, _format_errors(exc)))
            continue
        except ValueError as exc:
            batch.invalid.append(InvalidRecord(file, line, (str(exc),)))
            continue
        if request.request_id in seen:
            batch.duplicates += 1
            continue
        seen.add(request.request_id)
        batch.parsed.append(ParsedRequest(request=request, file=file, line=line))
    return batch
