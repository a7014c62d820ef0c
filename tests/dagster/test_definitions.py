"""The example project loads from the environment alone and validates with Dagster's CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dagster_kie.local_stack import TELEMETRY_OFF

ROOT = Path(__file__).resolve().parents[2]


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(TELEMETRY_OFF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "AWS_"))}
    env["DAGSTER_HOME"] = str(home)
    command = [str(Path(sys.executable).with_name("dagster")), "definitions", "validate",
               "-m", "definitions"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_project_has_the_whole_graph() -> None:
    from definitions import defs

    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"kie/generation_requests", "kie/submitted_tasks", "kie/generated_images"}
    assert {s.name for s in repo.sensor_defs} == {"kie_prompt_sensor", "kie_retry_sensor"}
    assert {s.name for s in repo.schedule_defs} == {"kie_daily_batch"}
    assert repo.has_job("kie_generate_images")
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert checks == {"images_decode", "dimensions_match", "counts_match", "manifests_present"}
    assert isinstance(defs.resources["s3"], dg.ConfigurableResource)


def test_the_api_key_is_never_in_the_resource_repr(monkeypatch: object) -> None:
    from dagster_kie import KieResource

    resource = KieResource(api_key="sk-very-secret-value")
    assert "sk-very-secret-value" not in repr(resource)
    assert "sk-very-secret-value" not in str(resource)
