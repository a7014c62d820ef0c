"""The component's default model and input defaults, applied to records before parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dagster_kie.component import (
    PromptDefaultsSource,
    apply_record_defaults,
    rewrite_prompt_file,
    validate_defaults,
)
from dagster_kie.models import CHARACTER, REFRAME, TEXT_TO_IMAGE
from dagster_kie.prompts import parse_prompt_file
from dagster_kie.sources import LocalPromptSource

DEFAULTS = {"rendering_speed": "TURBO", "image_size": "landscape_4_3", "negative_prompt": "blur"}


def _apply(record: Any, model: str = TEXT_TO_IMAGE) -> Any:
    return apply_record_defaults(record, model=model, defaults=DEFAULTS)


# --- apply_record_defaults -------------------------------------------------------------------


def test_string_record_becomes_a_body_of_the_default_model() -> None:
    assert _apply("a red fox") == {
        "model": TEXT_TO_IMAGE,
        "input": {**DEFAULTS, "prompt": "a red fox"},
    }


def test_shorthand_record_keeps_its_id_and_its_own_values_win() -> None:
    body = _apply({"id": "fox-1", "prompt": "a fox", "rendering_speed": "QUALITY"})
    assert body["id"] == "fox-1"
    assert body["model"] == TEXT_TO_IMAGE
    assert body["input"]["rendering_speed"] == "QUALITY"
    assert body["input"]["image_size"] == "landscape_4_3"
    assert "id" not in body["input"]


def test_shorthand_record_uses_the_default_model() -> None:
    body = _apply({"prompt": "the same person", "reference_image_urls": ["a.png"]}, CHARACTER)
    assert body["model"] == CHARACTER
    assert body["input"]["negative_prompt"] == "blur"


def test_full_body_keeps_its_model_and_gets_only_the_fields_it_accepts() -> None:
    body = _apply({"model": REFRAME, "input": {"image_url": "a.png"}, "id": "r1"})
    assert body["model"] == REFRAME
    assert body["id"] == "r1"
    # reframe has no negative_prompt: that default is not applied to it
    assert body["input"] == {
        "image_url": "a.png",
        "rendering_speed": "TURBO",
        "image_size": "landscape_4_3",
    }


def test_full_body_without_a_model_gets_the_default_model() -> None:
    body = _apply({"input": {"prompt": "x", "reference_image_urls": ["a.png"]}}, CHARACTER)
    assert body["model"] == CHARACTER
    assert body["input"]["rendering_speed"] == "TURBO"


@pytest.mark.parametrize(
    "record",
    [
        42,
        None,
        ["a", "list"],
        {"model": "unknown/model", "input": {"prompt": "x"}},
        {"model": TEXT_TO_IMAGE, "input": "not an object"},
    ],
)
def test_what_the_parser_must_report_is_left_alone(record: Any) -> None:
    assert _apply(record) == record


# --- rewrite_prompt_file -------------------------------------------------------------------


def _parse(name: str, content: bytes, model: str = TEXT_TO_IMAGE) -> Any:
    rewritten = rewrite_prompt_file(name, content, model=model, defaults=DEFAULTS)
    # a .txt file is read under its .txt.jsonl alias
    parsed_name = name + ".jsonl" if name.endswith(".txt") else name
    return parse_prompt_file(parsed_name, rewritten)


def test_jsonl_keeps_line_numbers_for_the_parsers_messages() -> None:
    content = b'{"prompt": "one"}\n\nnot json\n{"prompt": "four", "style": "NOPE"}\n"five"\n'
    batch = _parse("a.jsonl", content)
    assert [item.line for item in batch.parsed] == [1, 5]
    assert [record.line for record in batch.invalid] == [3, 4]
    assert "not valid JSON" in str(batch.invalid[0])
    assert "style" in str(batch.invalid[1])
    assert {item.request.input.rendering_speed for item in batch.parsed} == {"TURBO"}


def test_text_file_becomes_json_lines_line_for_line() -> None:
    content = b"# a comment\na red fox\n\n  a blue whale  \n"
    batch = _parse("notes.txt", content)
    assert [(item.line, item.request.input.prompt) for item in batch.parsed] == [
        (2, "a red fox"),
        (4, "a blue whale"),
    ]
    assert all(item.request.input.image_size == "landscape_4_3" for item in batch.parsed)


def test_json_list_and_object() -> None:
    listed = _parse("a.json", json.dumps([{"prompt": "one"}, "two"]).encode())
    assert [item.request.input.prompt for item in listed.parsed] == ["one", "two"]
    single = _parse("b.json", json.dumps({"id": "only", "prompt": "one"}).encode())
    assert single.parsed[0].request_id == "only"
    assert single.parsed[0].request.input.negative_prompt == "blur"


def test_escaped_line_separators_stay_escaped() -> None:
    content = json.dumps({"prompt": "a\u2028b"}).encode() + b"\n"
    assert b"\\u2028" in content
    batch = _parse("a.jsonl", content)
    assert [item.request.input.prompt for item in batch.parsed] == ["a\u2028b"]


def test_bom_is_accepted() -> None:
    batch = _parse("a.txt", "\ufeffa red fox\n".encode())
    assert batch.parsed[0].request.input.prompt == "a red fox"


@pytest.mark.parametrize(
    ("name", "content"),
    [("a.jsonl", b"\xff\xfe bad"), ("a.json", b"{not json"), ("a.csv", b"x,y")],
)
def test_unreadable_content_is_returned_unchanged(name: str, content: bytes) -> None:
    assert rewrite_prompt_file(name, content, model=TEXT_TO_IMAGE, defaults=DEFAULTS) == content


def test_same_content_gives_the_same_request_ids() -> None:
    first = _parse("a.jsonl", b'{"prompt": "a fox"}\n')
    again = _parse("b.txt", b"a fox\n")
    assert first.parsed[0].request_id == again.parsed[0].request_id


# --- PromptDefaultsSource ------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"prompt": "a fox"}\n')
    (root / "sub" / "notes.txt").write_text("a whale\n")
    (root / "clash.txt").write_text("from the text file\n")
    (root / "clash.txt.jsonl").write_text('{"prompt": "from the jsonl file"}\n')
    return root


def test_scan_lists_text_files_under_their_jsonl_alias(folder: Path) -> None:
    inner = LocalPromptSource(str(folder))
    source = PromptDefaultsSource(inner, TEXT_TO_IMAGE, DEFAULTS)
    listed = source.scan()
    assert sorted(listed) == ["a.jsonl", "clash.txt.jsonl", "sub/notes.txt.jsonl"]
    assert listed["sub/notes.txt.jsonl"] == inner.scan()["sub/notes.txt"]
    assert source.description == inner.description


def test_read_applies_defaults_and_maps_aliases_back(folder: Path) -> None:
    source = PromptDefaultsSource(LocalPromptSource(str(folder)), TEXT_TO_IMAGE, DEFAULTS)
    for name in source.scan():
        batch = parse_prompt_file(name, source.read(name))
        assert batch.parsed, name
        assert all(item.request.input.rendering_speed == "TURBO" for item in batch.parsed)
    whale = parse_prompt_file("sub/notes.txt.jsonl", source.read("sub/notes.txt.jsonl"))
    assert whale.parsed[0].request.input.prompt == "a whale"
    clash = parse_prompt_file("clash.txt.jsonl", source.read("clash.txt.jsonl"))
    assert clash.parsed[0].request.input.prompt == "from the jsonl file"


def test_read_of_a_missing_file_raises_file_not_found(folder: Path) -> None:
    source = PromptDefaultsSource(LocalPromptSource(str(folder)), TEXT_TO_IMAGE, DEFAULTS)
    for name in ("gone.jsonl", "gone.txt.jsonl", "gone.txt"):
        with pytest.raises(FileNotFoundError):
            source.read(name)


# --- validate_defaults ---------------------------------------------------------------------


def test_valid_defaults_pass() -> None:
    validate_defaults(TEXT_TO_IMAGE, DEFAULTS)
    validate_defaults(REFRAME, {"rendering_speed": "QUALITY", "num_images": 2})
    validate_defaults(CHARACTER, {})


def test_bad_defaults_name_the_field_and_the_allowed_values() -> None:
    with pytest.raises(ValueError) as caught:
        validate_defaults(TEXT_TO_IMAGE, {"rendering_speed": "FAST", "colour": "red"})
    message = str(caught.value)
    assert "rendering_speed" in message
    assert "'TURBO', 'BALANCED' or 'QUALITY'" in message
    assert "colour: Extra inputs are not permitted" in message
    assert "image_size" in message  # the model's input fields are listed


def test_defaults_are_checked_against_the_default_model() -> None:
    with pytest.raises(ValueError, match="negative_prompt"):
        validate_defaults(REFRAME, {"negative_prompt": "blur"})
