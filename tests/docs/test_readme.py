"""Every snippet of the README runs: Python, prompt records, the component YAML and the shell lines.

Shell lines run for real against the emulator process and SeaweedFS. Three kinds cannot run as
written here, and are run in the nearest honest form instead (each says so below): ``pip install``
from PyPI (no package index entry for an unreleased package; the extras it names are checked),
``./dev test`` (this suite is that command) and ``dagster dev`` against real kie.ai (no network;
the same workspace is validated with ``dagster definitions validate`` instead).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from dagster_kie import KieResource
from dagster_kie._process import ServerProcess
from dagster_kie.component import KieImageGeneration
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.ledger import TaskLedger
from dagster_kie.prompts import parse_prompt_file

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def shell_lines() -> list[str]:
    """Every command of every bash block (continuations joined, comments dropped)."""
    lines: list[str] = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(task_duration=0.3) as process:
        yield process


@pytest.fixture
def kie_env(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "KIE_API_KEY": emulator.api_key,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_ALLOW_PRIVATE_DOWNLOADS": "1",
        "KIE_POLL_INTERVAL_SCALE": "0.1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_the_readme_has_the_snippets_this_test_runs() -> None:
    assert len(blocks("python")) == 4
    assert len(blocks("json")) == 2
    assert len(blocks("yaml")) == 1
    assert "./dev demo" in shell_lines() and "./dev test" in shell_lines()


def test_resource_snippet_materializes(emulator: EmulatorProcess, kie_env: dict[str, str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(blocks("python")[0], "README.md", "exec", dont_inherit=True), namespace)
    assert isinstance(namespace["defs"], dg.Definitions)
    # The snippet's resource reads KIE_API_KEY; here it also needs the emulator's URLs.
    kie = KieResource(
        api_key=dg.EnvVar("KIE_API_KEY"),
        base_url=emulator.base_url,
        allow_private_downloads=True,
    )
    result = dg.materialize([namespace["fox_image"]], resources={"kie": kie})
    assert result.success
    metadata = result.asset_materializations_for_node("fox_image")[0].metadata
    assert metadata["urls"].value and metadata["kie.tasks"].value == 1


def test_graph_snippet_builds_definitions(kie_env: dict[str, str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(blocks("python")[1], "README.md", "exec", dont_inherit=True), namespace)
    repo = namespace["defs"].get_repository_def()
    assert repo.has_job("kie_generate_images")
    assert {s.name for s in repo.sensor_defs} == {"kie_prompt_sensor"}


def test_client_snippet_runs(kie_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(blocks("python")[2], "README.md", "exec", dont_inherit=True), {})
    assert capsys.readouterr().out.startswith("success ['http://127.0.0.1")


def test_emulator_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # No KIE_* variables: the snippet's client must get everything from the emulator.
    for name in [name for name in os.environ if name.startswith("KIE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KIE_POLL_INTERVAL_SCALE", "0.1")
    exec(compile(blocks("python")[3], "README.md", "exec", dont_inherit=True), {})


def test_prompt_records_are_valid() -> None:
    for record in blocks("json"):
        batch = parse_prompt_file("readme.jsonl", record.encode())
        assert not batch.invalid and len(batch.parsed) == 1


def test_component_yaml_loads() -> None:
    document = yaml.safe_load(blocks("yaml")[0])
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=KieImageGeneration, defs_path="images", defs_yaml_contents=document
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            repo = defs.get_repository_def()
            assert len(repo.schedule_defs) == 1


def run(command: str, env: dict[str, str], *, timeout: float = 180) -> str:
    """Run one README command in a shell from the repo root, with only ``env`` for KIE_/AWS_."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "AWS_"))}
    full_env = {**base, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, shell=True, cwd=ROOT, env=full_env, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def serve(command: str, marker: str, env: dict[str, str]) -> None:
    """Start a README server command on loopback and a free port, wait for it, stop it by PID."""
    argv = shlex.split(command.replace("0.0.0.0", "127.0.0.1"))
    argv = [arg for arg in argv if "=" not in arg or arg.startswith("-")]
    argv = ["0" if arg in ("8000", "8080") else arg for arg in argv]
    if argv[0] == "python":
        argv[0] = sys.executable
    else:
        argv[0] = str(BIN / argv[0])
    ready = ServerProcess(argv, name=argv[0], env=env,
                          ready_line=lambda line: line.startswith(marker) or None)  # fmt: skip
    with ready:
        assert ready.ready_value is True


def test_install_lines_name_real_extras() -> None:
    # pip cannot fetch an unreleased package here; check what the lines promise instead.
    metadata = importlib.metadata.metadata("dagster-kie")
    for line in (line for line in shell_lines() if line.startswith("pip install")):
        spec = shlex.split(line)[2]
        name, _, extra = spec.partition("[")
        assert name == metadata["Name"]
        if extra:
            assert extra.rstrip("]") in metadata.get_all("Provides-Extra")


def test_dev_demo_runs_end_to_end(tmp_path: Path) -> None:
    # ./dev test is the command running this suite; ./dev demo runs for real (in a temp dir).
    output = run("./dev demo", {"KIE_VENV": sys.prefix, "KIE_DEMO_DIR": str(tmp_path)},
                 timeout=300)  # fmt: skip
    assert "5 images and 4 manifests" in output
    assert len(list((tmp_path / "images").rglob("*.png"))) == 5


def test_real_kie_block_validates(tmp_path: Path) -> None:
    # No network to real kie.ai: the same exports, with `dagster dev` swapped for a validation.
    block = next(body for body in blocks("bash") if "dagster dev" in body)
    script = block.replace(".venv/bin/dagster dev", "dagster definitions validate")
    (tmp_path / "home").mkdir()
    run(script, {"DAGSTER_HOME": str(tmp_path / "home")})


def test_cli_lines_run_against_the_emulator(
    kie_env: dict[str, str], tmp_path: Path, local_s3: Any, s3_bucket: tuple[Any, str]
) -> None:
    commands = [line for line in shell_lines() if line.startswith("dagster-kie")]
    assert len(commands) == 8
    # The ledger lines act on two requests a crashed run left unconfirmed.
    client, bucket = s3_bucket
    ledger = TaskLedger(client, bucket, "kie")
    for request_id in ("readme-confirm", "readme-forget"):
        ledger.record_intent(request_id, "ideogram/v3-text-to-image")
    env = {**kie_env, **local_s3.env(), "KIE_S3_BUCKET": bucket}
    task_id = None
    for command in commands:
        if command.startswith("dagster-kie emulator"):
            serve(command, "KIE_EMULATOR_READY", {})
            continue
        if "<task id>" in command:
            assert task_id is not None
            command = command.replace("<task id>", task_id)
        action = command.split()[2] if command.startswith("dagster-kie ledger") else ""
        command = command.replace("<request id>", f"readme-{action}")
        output = run(command.replace("images/", f"{tmp_path}/"), env)
        saved = [Path(word) for word in output.split() if word.endswith(".png")]
        if saved:
            assert saved[0].exists()
            task_id = saved[0].name.rsplit("-", 1)[0]
        if action == "list":
            assert "readme-confirm" in output and "readme-forget" in output
    confirmed = ledger.get("readme-confirm")
    assert confirmed is not None and (confirmed.state, confirmed.task_id) == ("submitted", task_id)
    assert ledger.get("readme-forget") is None


def test_callback_receiver_line_starts(local_s3: Any) -> None:
    line = next(line for line in shell_lines() if "dagster_kie.callbacks" in line)
    serve(line, "KIE_CALLBACKS_READY", {**local_s3.env(), "KIE_WEBHOOK_HMAC_KEY": "readme-key"})
