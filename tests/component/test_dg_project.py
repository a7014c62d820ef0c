"""A real ``dg`` project in a temp dir: scaffold the component, check and list its definitions.

``dg`` runs as a subprocess of this venv (the project uses the active environment; no ``uv``, no
network: proxies point at a closed port and cloud metadata lookups are off). Every process is
started in its own session and killed by its process-group id if it overruns its timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dagster_kie.local_stack import TELEMETRY_OFF
from dagster_kie.models import MODELS

DG = Path(sys.executable).with_name("dg")
TYPE = "dagster_kie.component.KieImageGeneration"
PACKAGE = "kie_demo"
TIMEOUT_SECONDS = 180

pytestmark = pytest.mark.skipif(not DG.exists(), reason="dagster-dg-cli is not installed")


def _write_project(root: Path) -> None:
    package = root / "src" / PACKAGE
    (package / "defs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        textwrap.dedent(
            """\
            from pathlib import Path

            import dagster as dg


            @dg.definitions
            def defs() -> dg.Definitions:
                return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "kie-demo"
            version = "0.1.0"
            requires-python = ">=3.10"
            dependencies = ["dagster-kie"]

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "{PACKAGE}"
            """
        )
    )
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(TELEMETRY_OFF)


def _environment(root: Path) -> dict[str, str]:
    closed = "http://127.0.0.1:9"  # nothing listens there: any network attempt fails at once
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KIE_", "AWS_", "DAGSTER_", "DG_"))
        and key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(
        {
            "KIE_API_KEY": "dummy",
            "DAGSTER_HOME": str(root / "dagster_home"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(root / "src"),
            "HTTP_PROXY": closed,
            "HTTPS_PROXY": closed,
            "ALL_PROXY": closed,
            "NO_PROXY": "",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    return env


def _dg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [str(DG), *args],
        cwd=root,
        env=_environment(root),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this call started, by its id
        stdout, stderr = process.communicate()
        pytest.fail(f"dg {' '.join(args)} ran over {TIMEOUT_SECONDS} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the component scaffolded at ``defs/my_images``."""
    root = tmp_path_factory.mktemp("dg_project")
    _write_project(root)
    _ok(_dg(root, "scaffold", "defs", TYPE, "my_images"))
    return root


def test_scaffold_writes_defs_yaml_and_an_example(project: Path) -> None:
    folder = project / "src" / PACKAGE / "defs" / "my_images"
    text = (folder / "defs.yaml").read_text()
    assert text.startswith(f"type: {TYPE}\n")
    assert "model: ideogram/v3-text-to-image" in text
    assert "{{ env('KIE_PROMPTS_DIR', 'prompts') }}" in text
    assert "api_key_env: KIE_API_KEY" in text
    example = (folder / "prompts" / "example.jsonl").read_text().splitlines()
    assert example and all("prompt" in json.loads(line) for line in example)


def test_check_defs_passes(project: Path) -> None:
    output = _ok(_dg(project, "check", "defs"))
    assert "All definitions loaded successfully" in output


def test_list_defs_shows_assets_checks_sensors_schedules(project: Path) -> None:
    listed: dict[str, Any] = json.loads(_ok(_dg(project, "list", "defs", "--json")))
    assert {asset["asset_key"] for asset in listed["assets"]} == {
        "kie/generation_requests",
        "kie/submitted_tasks",
        "kie/generated_images",
    }
    assert {check["name"] for check in listed["asset_checks"]} == {
        "images_decode",
        "dimensions_match",
        "counts_match",
        "manifests_present",
    }
    assert {sensor["name"] for sensor in listed["sensors"]} == {
        "kie_prompt_sensor",
        "kie_retry_sensor",
    }
    assert [(s["name"], s["cron_schedule"]) for s in listed["schedules"]] == [
        ("kie_batch_schedule", "0 6 * * *")
    ]
    assert "kie_generate_images" in {job["name"] for job in listed["jobs"]}
    assert {resource["name"] for resource in listed["resources"]} >= {"kie", "s3"}


def test_list_components_shows_the_registered_component(project: Path) -> None:
    listed = json.loads(_ok(_dg(project, "list", "components", "--json")))
    assert TYPE in {item["key"] for item in listed["items"]}


def test_check_defs_reports_a_bad_model(tmp_path: Path) -> None:
    _write_project(tmp_path)
    _ok(_dg(tmp_path, "scaffold", "defs", TYPE, "bad_images"))
    defs_yaml = tmp_path / "src" / PACKAGE / "defs" / "bad_images" / "defs.yaml"
    text = defs_yaml.read_text()
    defs_yaml.write_text(text.replace("model: ideogram/v3-text-to-image", "model: dall-e-3"))
    result = _dg(tmp_path, "check", "defs")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "dall-e-3" in output
    for model in MODELS:
        assert f"'{model}'" in output
