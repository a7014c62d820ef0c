"""The example project loads from the environment alone and validates with Dagster's CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

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


def test_rate_limit_variables_map_onto_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    from definitions.definitions import build_defs

    monkeypatch.setenv("KIE_CREATE_TASKS_PER_WINDOW", "200")
    monkeypatch.setenv("KIE_CREATE_WINDOW_SECONDS", "2.5")
    monkeypatch.setenv("KIE_QUERIES_PER_SECOND", " 100 ")
    kie = build_defs().resources["kie"]
    assert (kie.create_tasks_per_window, kie.create_window_seconds, kie.queries_per_second) == (
        200,
        2.5,
        100.0,
    )


def test_unset_rate_limit_variables_keep_the_resource_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_kie import KieResource
    from definitions.definitions import build_defs

    for name in ("KIE_CREATE_TASKS_PER_WINDOW", "KIE_CREATE_WINDOW_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIE_QUERIES_PER_SECOND", "")
    kie = build_defs().resources["kie"]
    defaults = KieResource(api_key="k")
    assert kie.create_tasks_per_window == defaults.create_tasks_per_window
    assert kie.create_window_seconds == defaults.create_window_seconds
    assert kie.queries_per_second == defaults.queries_per_second


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KIE_CREATE_TASKS_PER_WINDOW", "1.5"),
        ("KIE_CREATE_TASKS_PER_WINDOW", "0"),
        ("KIE_CREATE_WINDOW_SECONDS", "ten"),
        ("KIE_CREATE_WINDOW_SECONDS", "-1"),
        ("KIE_QUERIES_PER_SECOND", "inf"),
    ],
)
def test_a_bad_rate_limit_variable_names_itself(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    from definitions.definitions import build_defs

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}='{value}' is not"):
        build_defs()
