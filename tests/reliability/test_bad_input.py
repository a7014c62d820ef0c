"""Bad input: each case gets a clear error naming the file, line, field and allowed values, before
any money is spent, and the rest of the batch still runs.

The table below is what users see (``dagster-kie validate`` prints the same lines, the Dagster UI
shows them in the ``kie.invalid`` metadata of ``generation_requests``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dagster_kie.emulator import EmulatorProcess
from dagster_kie.prompts import MAX_PROMPT_FILE_BYTES, PromptFileError, parse_prompt_file
from tests.reliability.helpers import (
    Rig,
    failure_message,
    failure_retryable,
    prompt_lines,
    requests_of,
)

T2I = "ideogram/v3-text-to-image"
REFRAME = "ideogram/v3-reframe"
CHARACTER = "ideogram/character"
URL = "https://example.com/in.png"
SIZES = (
    "'square', 'square_hd', 'portrait_4_3', 'portrait_16_9', 'landscape_4_3' or 'landscape_16_9'"
)
REFRAME_OK = {"image_url": URL, "image_size": "square"}
T2I_FIELDS = (
    "expand_prompt, image_size, negative_prompt, num_images, prompt, rendering_speed, seed, style"
)

# (case, record, the message users see after "<file>:<line>: ")
RECORDS: list[tuple[str, Any, str]] = [
    ("enum image_size", {"prompt": "p", "image_size": "huge"},
     f"input.image_size: Input should be {SIZES}"),
    ("enum rendering_speed", {"prompt": "p", "rendering_speed": "FAST"},
     "input.rendering_speed: Input should be 'TURBO', 'BALANCED' or 'QUALITY'"),
    ("enum style (v3)", {"prompt": "p", "style": "PIXEL"},
     "input.style: Input should be 'AUTO', 'GENERAL', 'REALISTIC' or 'DESIGN'"),
    ("enum style (character)",
     {"model": CHARACTER, "input": {"prompt": "p", "reference_image_urls": [URL],
                                    "style": "GENERAL"}},
     "input.style: Input should be 'AUTO', 'REALISTIC' or 'FICTION'"),
    ("enum num_images too many", {"prompt": "p", "num_images": 5},
     "input.num_images: Input should be '1', '2', '3' or '4'"),
    ("enum num_images zero", {"prompt": "p", "num_images": "0"},
     "input.num_images: Input should be '1', '2', '3' or '4'"),
    ("enum model", {"model": "ideogram/v4", "input": {"prompt": "p"}},
     f"model: unknown model 'ideogram/v4'; allowed: {T2I}, {REFRAME}, {CHARACTER}"),
    ("enum model typo", {"model": "ideogram/v3-text-to-imag", "input": {"prompt": "p"}},
     f"model: unknown model 'ideogram/v3-text-to-imag' (did you mean '{T2I}'?); allowed: "),
    ("type model", {"model": 3, "input": {"prompt": "p"}}, "model: unknown model 3; allowed: "),
    ("length prompt empty", {"prompt": ""},
     "input.prompt: String should have at least 1 character"),
    ("length prompt > 5000", {"prompt": "p" * 5001},
     "input.prompt: String should have at most 5000 characters"),
    ("length negative_prompt > 5000", {"prompt": "p", "negative_prompt": "n" * 5001},
     "input.negative_prompt: String should have at most 5000 characters"),
    ("length image_url empty", {"model": REFRAME, "input": {**REFRAME_OK, "image_url": ""}},
     "input.image_url: String should have at least 1 character"),
    ("length reference_image_urls empty",
     {"model": CHARACTER, "input": {"prompt": "p", "reference_image_urls": []}},
     "input.reference_image_urls: List should have at least 1 item"),
    ("length id too long", {"id": "a" * 129, "prompt": "p"},
     "id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'"),
    ("range seed < 0", {"prompt": "p", "seed": -1},
     "input.seed: Input should be greater than or equal to 0"),
    ("range seed > 2^31-1", {"prompt": "p", "seed": 2**31},
     "input.seed: Input should be less than or equal to 2147483647"),
    ("range seed (reframe)", {"model": REFRAME, "input": {**REFRAME_OK, "seed": 3e9}},
     "input.seed: Input should be less than or equal to 2147483647"),
    ("missing prompt", {"image_size": "square"}, "input.prompt: Field required"),
    ("missing image_url", {"model": REFRAME, "input": {"image_size": "square"}},
     "input.image_url: Field required"),
    ("missing reference_image_urls", {"model": CHARACTER, "input": {"prompt": "p"}},
     "input.reference_image_urls: Field required"),
    ("extra input field", {"prompt": "p", "colour": "red"},
     f"input.colour: Extra inputs are not permitted: 'colour' is not a field of {T2I} input; "
     f"allowed: {T2I_FIELDS}"),
    ("extra input field typo", {"prompt": "p", "stlye": "AUTO"},
     f"input.stlye: Extra inputs are not permitted: 'stlye' is not a field of {T2I} input "
     f"(did you mean 'style'?); allowed: {T2I_FIELDS}"),
    ("extra input field (reframe)", {"model": REFRAME, "input": {**REFRAME_OK, "prompt": "p"}},
     f"input.prompt: Extra inputs are not permitted: 'prompt' is not a field of {REFRAME} "
     "input; allowed: image_size, image_url, num_images, rendering_speed, seed, style"),
    ("extra top-level field", {"model": T2I, "input": {"prompt": "p"}, "priority": 1},
     f"priority: Extra inputs are not permitted: 'priority' is not a field of the {T2I} "
     "request; allowed: callBackUrl, id, input, model"),
    ("type prompt", {"prompt": 12}, "input.prompt: Input should be a valid string"),
    ("type seed", {"prompt": "p", "seed": "12"}, "input.seed: Input should be a valid integer"),
    ("type expand_prompt", {"prompt": "p", "expand_prompt": "maybe"},
     "input.expand_prompt: Input should be a valid boolean"),
    ("type input", {"model": T2I, "input": ["p"]}, "input: Input should be a valid dictionary"),
    ("type record", ["p"], "a record must be a JSON object or a string, not list"),
    ("unsafe id", {"id": "../etc", "prompt": "p"},
     "id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'"),
]  # fmt: skip

# (case, file name, bytes, the message users see)
FILES: list[tuple[str, str, bytes, str]] = [
    ("bad JSON document", "bad.json", b'{"prompt": ',
     "bad.json: not valid JSON (line 1, column 12): Expecting value"),
    ("bad JSON line", "line.jsonl", b'{"prompt": "ok"}\n{"prompt": \n',
     "line.jsonl:2: not valid JSON: Expecting value"),
    ("wrong encoding", "latin.txt", "café\n".encode("latin-1"),
     "latin.txt: not UTF-8 text (byte 3: b'\\xe9')"),
    ("empty", "empty.jsonl", b"", "empty.jsonl: no prompt records (the file is empty)"),
    ("only comments", "blank.txt", b"\n# nothing\n",
     "blank.txt: no prompt records (the file is empty)"),
    ("empty JSON list", "none.json", b"[]", "none.json: no prompt records (the file is empty)"),
    ("huge", "huge.txt", b"a" * (MAX_PROMPT_FILE_BYTES + 1),
     "huge.txt: 20,971,521 bytes is over the 20,971,520-byte limit"),
    ("unsupported type", "prompts.csv", b"a,b", "prompts.csv: unsupported file type; use one of "
     ".jsonl, .json, .txt"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "record", "message"), RECORDS, ids=[r[0] for r in RECORDS])
def test_invalid_record_message(case: str, record: Any, message: str) -> None:
    text = json.dumps({"prompt": "a valid one"}) + "\n" + json.dumps(record) + "\n"
    batch = parse_prompt_file("batch.jsonl", text.encode())
    assert len(batch.parsed) == 1  # the rest of the file still parses
    [invalid] = batch.invalid
    assert str(invalid).startswith("batch.jsonl:2: "), str(invalid)
    assert message in str(invalid), str(invalid)


@pytest.mark.parametrize(("case", "name", "data", "message"), FILES, ids=[f[0] for f in FILES])
def test_malformed_prompt_file_message(case: str, name: str, data: bytes, message: str) -> None:
    try:
        batch = parse_prompt_file(name, data)
    except PromptFileError as error:
        assert str(error) == message
    else:
        assert [str(invalid) for invalid in batch.invalid] == [message]


def test_invalid_records_cost_nothing_and_the_rest_runs(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator)
    good = prompt_lines("bad-input-good", 2)
    bad = "\n".join(json.dumps(record) for _, record, _ in RECORDS)
    partition = rig.write("mixed.jsonl", good + "\n" + bad + "\n{not json")

    result = rig.materialize(partition)

    assert result.success
    event = next(
        e.materialization
        for e in result.all_events
        if e.is_step_materialization
        and e.materialization.asset_key.path[-1] == "generation_requests"
    )
    assert event.metadata["kie.invalid_records"].value == len(RECORDS) + 1
    table = event.metadata["kie.invalid"].value
    assert "| 3 | input.image_size: Input should be 'square'" in table
    stats = emulator.admin.stats()
    assert stats["create_calls"] == 2 and stats["tasks_created"] == 2
    rig.audit(requests_of(good)).assert_clean()


def test_unreadable_prompt_file_fails_clearly_and_other_files_run(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator)
    broken = "latin.txt"
    (rig.prompts_dir / broken).write_bytes("café au lait\n".encode("latin-1"))
    good = rig.write("good.jsonl", prompt_lines("other-file", 2))

    failed = rig.materialize(broken)
    assert not failed.success and not failure_retryable(failed)
    assert failure_message(failed) == "latin.txt: not UTF-8 text (byte 3: b'\\xe9')"
    assert emulator.admin.stats()["requests_total"] == 0
    assert rig.materialize(good).success
    rig.audit().assert_clean()


def _png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_bad_input_images_fail_before_any_money_is_spent(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = make_rig(emulator)
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not an image")
    big = tmp_path / "big.png"
    big.write_bytes(_png() + b"\0" * (10 * 1024 * 1024))
    small = tmp_path / "small.png"
    small.write_bytes(_png())
    missing = f"s3://{rig.bucket}/inputs/missing.png"
    records = [
        {"id": "ok-text", "prompt": "a fine prompt"},
        {"id": "ok-reframe", "model": REFRAME,
         "input": {"image_url": str(small), "image_size": "square"}},
        {"id": "wrong-type", "model": REFRAME,
         "input": {"image_url": str(text_file), "image_size": "square"}},
        {"id": "too-big", "model": REFRAME,
         "input": {"image_url": str(big), "image_size": "square"}},
        {"id": "no-such-object", "model": CHARACTER,
         "input": {"prompt": "p", "reference_image_urls": [missing]}},
        {"id": "no-such-file", "model": REFRAME,
         "input": {"image_url": str(tmp_path / "absent.png"), "image_size": "square"}},
    ]  # fmt: skip
    partition = rig.write("images.json", json.dumps(records))

    result = rig.materialize(partition)

    assert not result.success and not failure_retryable(result)
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    errors = failure.user_failure_data.metadata["failed_requests"].value
    assert set(errors) == {"wrong-type", "too-big", "no-such-object", "no-such-file"}
    assert f"{text_file}: not a JPEG, PNG or WebP image" in errors["wrong-type"]
    assert f"{big}: the image is" in errors["too-big"] and "10 MB limit" in errors["too-big"]
    assert f"cannot read input image {missing}" in errors["no-such-object"]
    assert "is not a URL, an s3:// URI or an existing file" in errors["no-such-file"]
    stats = emulator.admin.stats()
    assert stats["tasks_created"] == 2 and stats["create_calls"] == 2  # only the good ones
    assert stats["uploads"] == 1  # the bad images never left this machine
    ledger = rig.audit().ledger
    assert set(ledger) == {"ok-text", "ok-reframe"}  # no intent, nothing to resume or pay
