"""The ``dagster-kie`` command, run as a real process against the emulator process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dagster_kie.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(task_duration=0.3) as process:
        yield process


def run(emulator: EmulatorProcess | None, *args: str, key: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``dagster-kie`` the way a user's shell does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env["KIE_POLL_INTERVAL_SCALE"] = "0.1"
    if emulator is not None:
        env.update(
            KIE_API_KEY=key or emulator.api_key,
            KIE_BASE_URL=emulator.base_url,
            KIE_UPLOAD_BASE_URL=emulator.upload_base_url,
            KIE_ALLOW_PRIVATE_DOWNLOADS="1",
        )
    command = [str(Path(sys.executable).with_name("dagster-kie")), *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_reads_well() -> None:
    result = run(None, "--help")
    assert result.returncode == 0
    for command in ("emulator", "generate", "credits", "task", "validate", "ledger"):
        assert command in result.stdout


def test_generate_saves_images_and_reports_progress(emulator: EmulatorProcess,
                                                    tmp_path: Path) -> None:  # fmt: skip
    result = run(emulator, "generate", "a red fox", "--image-size", "square", "--num-images", "2",
                 "--seed", "5", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = [Path(line) for line in result.stdout.split()]
    assert len(saved) == 2
    for path in saved:
        with Image.open(path) as image:
            assert image.size == (512, 512)
    assert "created" in result.stderr and "success" in result.stderr


def test_reframe_uploads_a_local_image(emulator: EmulatorProcess, tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (64, 48), "teal").save(source)
    result = run(emulator, "generate", "--model", "ideogram/v3-reframe", "--image", str(source),
                 "--image-size", "landscape_16_9", "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "uploading" in result.stderr
    with Image.open(result.stdout.split()[0]) as image:
        assert image.size == (1024, 576)


def test_credits_and_task(emulator: EmulatorProcess, tmp_path: Path) -> None:
    balance = run(emulator, "credits")
    assert balance.returncode == 0
    assert float(balance.stdout) > 0
    generated = run(emulator, "generate", "a cat", "--image-size", "square", "--out", str(tmp_path))
    task_id = Path(generated.stdout.split()[0]).name.rsplit("-", 1)[0]
    shown = run(emulator, "task", task_id, "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["state"] == "success"


def test_bad_input_is_a_usage_error_and_nothing_is_sent(emulator: EmulatorProcess) -> None:
    before = emulator.admin.stats()["create_calls"]
    result = run(emulator, "generate", "x", "--input", '{"image_size": "huge"}')
    assert result.returncode == 2
    assert "image_size" in result.stderr and "square_hd" in result.stderr
    assert emulator.admin.stats()["create_calls"] == before


def test_bad_key_exits_3_without_showing_the_key(emulator: EmulatorProcess) -> None:
    result = run(emulator, "credits", key="not-a-valid-key-123")
    assert result.returncode == 3
    assert "not-a-valid-key-123" not in result.stdout + result.stderr


def test_validate_is_a_dry_run(emulator: EmulatorProcess, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "a", "num_images": 3}\n{"prompt": "b"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "style": "PIXEL"}\n')
    before = emulator.admin.stats()["create_calls"]

    ok = run(emulator, "validate", str(good))
    assert ok.returncode == 0
    assert "would create 2 tasks and 4 images" in ok.stdout

    failed = run(emulator, "validate", str(good), str(bad))
    assert failed.returncode == 1
    assert "bad.jsonl:1" in failed.stdout and "style" in failed.stdout
    assert emulator.admin.stats()["create_calls"] == before


def test_validate_counts_read_well(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text('{"prompt": "a"}\n{"prompt": "a"}\n{"prompt": "b", "stlye": "AUTO"}\n')
    result = run(None, "validate", str(one))
    assert result.returncode == 1
    assert f"{one}: 1 valid, 1 invalid, 1 duplicate record\n" in result.stdout
    assert "would create 1 task and 1 image (~1.6 credits); 1 problem\n" in result.stdout
    # the unknown field is named, with a guess and the fields allowed
    assert f"{one}:3: input.stlye: Extra inputs are not permitted: 'stlye' is not a field of " in (
        result.stdout
    )
    assert "(did you mean 'style'?); allowed: expand_prompt, image_size, " in result.stdout


def test_generate_names_the_unknown_field_and_the_allowed_ones(emulator: EmulatorProcess) -> None:
    result = run(emulator, "generate", "x", "--input", '{"sead": 3}')
    assert result.returncode == 2
    assert "input.sead: Extra inputs are not permitted" in result.stderr
    assert "(did you mean 'seed'?)" in result.stderr and "negative_prompt" in result.stderr


def test_emulator_subcommand_passes_flags_through() -> None:
    result = run(None, "emulator", "--help")
    assert result.returncode == 0
    assert "--task-duration" in result.stdout
