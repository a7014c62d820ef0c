"""Record defaults (a default model and input fields), applied by the prompt parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dagster_kie.cli import main
from dagster_kie.models import CHARACTER, REFRAME, TEXT_TO_IMAGE
from dagster_kie.prompts import RecordDefaults, parse_prompt_file, record_to_body

INPUTS = {"rendering_speed": "TURBO", "image_size": "landscape_4_3", "negative_prompt": "blur"}
DEFAULTS = RecordDefaults(TEXT_TO_IMAGE, INPUTS)


def _body(record: Any, model: str = TEXT_TO_IMAGE) -> dict[str, Any]:
    return record_to_body(record, RecordDefaults(model, INPUTS))


# --- record_to_body --------------------------------------------------------------------------


def test_string_record_becomes_a_body_of_the_default_model() -> None:
    assert _body("a red fox") == {
        "model": TEXT_TO_IMAGE,
        "input": {**INPUTS, "prompt": "a red fox"},
    }


def test_shorthand_record_keeps_its_id_and_its_own_values_win() -> None:
    body = _body({"id": "fox-1", "prompt": "a fox", "rendering_speed": "QUALITY"})
    assert body["id"] == "fox-1"
    assert body["model"] == TEXT_TO_IMAGE
    assert body["input"]["rendering_speed"] == "QUALITY"
    assert body["input"]["image_size"] == "landscape_4_3"
    assert "id" not in body["input"]


def test_shorthand_record_uses_the_default_model() -> None:
    body = _body({"prompt": "the same person", "reference_image_urls": ["a.png"]}, CHARACTER)
    assert body["model"] == CHARACTER
    assert body["input"]["negative_prompt"] == "blur"


def test_full_body_keeps_its_model_and_gets_only_the_fields_it_accepts() -> None:
    body = _body({"model": REFRAME, "input": {"image_url": "a.png"}, "id": "r1"})
    assert body["model"] == REFRAME
    assert body["id"] == "r1"
    # reframe has no negative_prompt: that default is not applied to it
    assert body["input"] == {
        "image_url": "a.png",
        "rendering_speed": "TURBO",
        "image_size": "landscape_4_3",
    }


def test_full_body_without_a_model_gets_the_default_model() -> None:
    body = _body({"input": {"prompt": "x", "reference_image_urls": ["a.png"]}}, CHARACTER)
    assert body["model"] == CHARACTER
    assert body["input"]["rendering_speed"] == "TURBO"


@pytest.mark.parametrize(
    "record",
    [
        {"model": "unknown/model", "input": {"prompt": "x"}},
        {"model": TEXT_TO_IMAGE, "input": "not an object"},
    ],
)
def test_what_the_parser_must_report_is_left_alone(record: Any) -> None:
    assert _body(record) == record


@pytest.mark.parametrize("record", [42, None, ["a", "list"]])
def test_a_record_that_is_not_an_object_or_a_string_is_refused(record: Any) -> None:
    with pytest.raises(ValueError, match="a record must be a JSON object or a string"):
        _body(record)


@pytest.mark.parametrize(
    "record",
    ["a fox", {"prompt": "a fox", "id": "f"}, {"model": REFRAME, "input": {"image_url": "a"}}],
)
def test_without_defaults_bodies_are_as_before(record: Any) -> None:
    assert (
        record_to_body(record)
        == record_to_body(record, None)
        == record_to_body(record, RecordDefaults())
    )
    assert record_to_body("a fox") == {"model": TEXT_TO_IMAGE, "input": {"prompt": "a fox"}}


# --- parse_prompt_file with defaults ---------------------------------------------------------


def _parse(name: str, content: bytes, model: str = TEXT_TO_IMAGE) -> Any:
    return parse_prompt_file(name, content, defaults=RecordDefaults(model, INPUTS))


def test_jsonl_line_numbers_and_messages() -> None:
    content = b'{"prompt": "one"}\n\nnot json\n{"prompt": "four", "style": "NOPE"}\n"five"\n'
    batch = _parse("a.jsonl", content)
    assert [item.line for item in batch.parsed] == [1, 5]
    assert [record.line for record in batch.invalid] == [3, 4]
    assert "not valid JSON" in str(batch.invalid[0])
    assert "style" in str(batch.invalid[1])
    assert {item.request.input.rendering_speed for item in batch.parsed} == {"TURBO"}


def test_text_file_keeps_its_name_and_its_line_numbers() -> None:
    content = b"# a comment\na red fox\n\n  a blue whale  \n"
    batch = _parse("sub/notes.txt", content)
    # the file's own name is its partition key: no ".txt.jsonl" alias any more
    assert batch.file == "sub/notes.txt"
    assert {item.file for item in batch.parsed} == {"sub/notes.txt"}
    assert [(item.line, item.request.input.prompt) for item in batch.parsed] == [
        (2, "a red fox"),
        (4, "a blue whale"),
    ]
    assert all(item.request.input.image_size == "landscape_4_3" for item in batch.parsed)


def test_text_lines_take_the_default_model() -> None:
    defaults = RecordDefaults(CHARACTER, {"reference_image_urls": ["https://x/p.png"]})
    batch = parse_prompt_file("people.txt", b"reading in a cafe\n", defaults=defaults)
    assert not batch.invalid
    assert batch.parsed[0].request.model == CHARACTER
    # without the defaults, the same line is a text-to-image request
    plain = parse_prompt_file("people.txt", b"reading in a cafe\n")
    assert plain.parsed[0].request.model == TEXT_TO_IMAGE


def test_json_list_and_object() -> None:
    listed = _parse("a.json", json.dumps([{"prompt": "one"}, "two"]).encode())
    assert [item.request.input.prompt for item in listed.parsed] == ["one", "two"]
    single = _parse("b.json", json.dumps({"id": "only", "prompt": "one"}).encode())
    assert single.parsed[0].request_id == "only"
    assert single.parsed[0].request.input.negative_prompt == "blur"


def test_line_separators_inside_a_record() -> None:
    content = json.dumps({"prompt": "a\u2028b"}).encode() + b"\n"
    batch = _parse("a.jsonl", content)
    assert [item.request.input.prompt for item in batch.parsed] == ["a\u2028b"]


def test_bom_is_accepted() -> None:
    batch = _parse("a.txt", "\ufeffa red fox\n".encode())
    assert batch.parsed[0].request.input.prompt == "a red fox"


def test_same_content_gives_the_same_request_ids() -> None:
    first = _parse("a.jsonl", b'{"prompt": "a fox"}\n')
    again = _parse("b.txt", b"a fox\n")
    assert first.parsed[0].request_id == again.parsed[0].request_id


def test_ids_hash_the_final_body() -> None:
    plain = parse_prompt_file("a.txt", b"a fox\n").parsed[0].request_id
    assert (
        parse_prompt_file("a.txt", b"a fox\n", defaults=RecordDefaults()).parsed[0].request_id
        == plain
    )
    # defaults that change the request change its id: it is another request
    assert _parse("a.txt", b"a fox\n").parsed[0].request_id != plain
    spelled_out = json.dumps({"prompt": "a fox", **INPUTS}).encode()
    assert parse_prompt_file("b.jsonl", spelled_out).parsed[0].request_id == (
        _parse("a.txt", b"a fox\n").parsed[0].request_id
    )


# --- RecordDefaults ----------------------------------------------------------------------------


def test_valid_defaults_pass() -> None:
    RecordDefaults(TEXT_TO_IMAGE, INPUTS)
    RecordDefaults(REFRAME, {"rendering_speed": "QUALITY", "num_images": 2})
    RecordDefaults(CHARACTER, {})
    assert RecordDefaults() == RecordDefaults(TEXT_TO_IMAGE, {})


def test_bad_defaults_name_the_field_and_the_allowed_values() -> None:
    with pytest.raises(ValueError) as caught:
        RecordDefaults(TEXT_TO_IMAGE, {"rendering_speed": "FAST", "colour": "red"})
    message = str(caught.value)
    assert "rendering_speed" in message
    assert "'TURBO', 'BALANCED' or 'QUALITY'" in message
    assert "colour: Extra inputs are not permitted" in message
    assert "image_size" in message  # the model's input fields are listed


def test_defaults_are_checked_against_the_default_model() -> None:
    with pytest.raises(ValueError, match="negative_prompt"):
        RecordDefaults(REFRAME, {"negative_prompt": "blur"})


def test_unknown_model_names_the_allowed_models() -> None:
    with pytest.raises(ValueError, match="'ideogram/v3-reframe'"):
        RecordDefaults("dall-e-3")


def test_defaults_are_frozen() -> None:
    given = {"rendering_speed": "TURBO"}
    defaults = RecordDefaults(TEXT_TO_IMAGE, given)
    given["rendering_speed"] = "QUALITY"
    assert defaults.inputs["rendering_speed"] == "TURBO"
    with pytest.raises(TypeError):
        defaults.inputs["rendering_speed"] = "QUALITY"  # type: ignore[index]
    assert hash(defaults) == hash(RecordDefaults(TEXT_TO_IMAGE, {"rendering_speed": "TURBO"}))


# --- dagster-kie validate --model/--default ----------------------------------------------------


def test_validate_applies_model_and_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "people.txt"
    prompts.write_text("reading in a cafe\n")
    assert main(["validate", str(prompts)]) == 0
    args = ["validate", str(prompts), "--model", CHARACTER]
    assert main(args) == 1  # a character request needs reference images
    urls = '--default=reference_image_urls=["https://x/p.png"]'
    assert main([*args, urls, "--default", "num_images=2"]) == 0
    assert "would create 1 task and 2 images" in capsys.readouterr().out


def test_validate_refuses_bad_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "a.txt"
    prompts.write_text("a fox\n")
    assert main(["validate", str(prompts), "--default", "rendering_speed=FAST"]) == 2
    assert "'TURBO', 'BALANCED' or 'QUALITY'" in capsys.readouterr().err
    assert main(["validate", str(prompts), "--default", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
