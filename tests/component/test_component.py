"""``KieImageGeneration`` loaded from a ``defs.yaml`` with ``dagster.components.testing``."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.core.package_entry import discover_entry_point_package_objects
from dagster.components.testing import create_defs_folder_sandbox
from dagster.components.testing.utils import component_defs
from dagster_aws.s3 import S3Resource

from dagster_kie.component import KieImageGeneration
from dagster_kie.models import CHARACTER, MODELS
from dagster_kie.prompts import RecordDefaults, parse_prompt_file
from dagster_kie.resource import KieResource

TYPE = "dagster_kie.component.KieImageGeneration"
CHECK_NAMES = {"images_decode", "dimensions_match", "counts_match", "manifests_present"}
ENV_VARS = (
    "KIE_PROMPTS_DIR",
    "KIE_S3_BUCKET",
    "KIE_S3_PREFIX",
    "KIE_BASE_URL",
    "KIE_UPLOAD_BASE_URL",
    "KIE_CALLBACK_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIE_API_KEY", "dummy")


@pytest.fixture
def instance(dagster_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """A real, temporary Dagster instance (``dagster_instance`` of ``tests/conftest.py``)."""
    return dagster_instance


@contextmanager
def load(
    attributes: dict[str, Any] | None = None,
    scaffold_params: dict[str, Any] | None = None,
) -> Iterator[tuple[KieImageGeneration, dg.Definitions, Path]]:
    """Scaffold the component into a sandbox (optionally replacing its attributes) and load it."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=KieImageGeneration,
            defs_path="images",
            scaffold_params=scaffold_params,
            defs_yaml_contents=(
                {"type": TYPE, "attributes": attributes} if attributes is not None else None
            ),
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, KieImageGeneration)
            yield component, defs, path


def _error_text(error: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _load_error(attributes: dict[str, Any]) -> str:
    with pytest.raises(Exception) as caught, load(attributes):
        pass
    return _error_text(caught.value)


def _sensor(defs: dg.Definitions, name: str) -> dg.SensorDefinition:
    return next(sensor for sensor in defs.sensors or [] if sensor.name == name)


# --- the scaffolded defs.yaml ----------------------------------------------------------------


def test_scaffolded_component_builds_the_whole_graph() -> None:
    with load() as (component, defs, path):
        text = (path / "defs.yaml").read_text()
        assert text.startswith(f"type: {TYPE}\n")
        assert "{{ env('KIE_S3_BUCKET', 'kie-demo') }}" in text
        assert (path / "prompts" / "example.jsonl").is_file()

        assert component.default_model == "ideogram/v3-text-to-image"
        assert component.defaults == {"image_size": "square_hd", "rendering_speed": "TURBO"}
        assert component.bucket == "kie-demo"
        assert component.prefix == "kie"

        graph = defs.resolve_asset_graph()
        assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
            "kie/generation_requests",
            "kie/submitted_tasks",
            "kie/generated_images",
        }
        assert {key.name for key in graph.asset_check_keys} == CHECK_NAMES
        assert {key.asset_key for key in graph.asset_check_keys} == {
            dg.AssetKey(["kie", "generated_images"])
        }
        assert {sensor.name for sensor in defs.sensors or []} == {
            "kie_prompt_sensor",
            "kie_retry_sensor",
        }
        schedule = defs.resolve_schedule_def("kie_batch_schedule")
        assert schedule.cron_schedule == "0 6 * * *"
        assert len(list(defs.schedules or [])) == 1
        assert defs.resolve_job_def("kie_generate_images").partitions_def is not None
        resources = dict(defs.resources or {})
        assert set(resources) == {"kie", "s3"}
        assert isinstance(resources["kie"], KieResource)
        assert resources["kie"].api_key == dg.EnvVar("KIE_API_KEY")
        assert isinstance(resources["s3"], S3Resource)


def test_attributes_from_the_environment_prefix_names_and_no_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = tmp_path / "watched"
    monkeypatch.setenv("KIE_PROMPTS_DIR", str(prompts))
    monkeypatch.setenv("KIE_S3_BUCKET", "my-images")
    monkeypatch.setenv("MY_KIE_KEY", "dummy")
    attributes = {
        "model": "ideogram/v3-text-to-image",
        "defaults": {"image_size": "square_hd", "rendering_speed": "TURBO"},
        "prompts_dir": "{{ env.KIE_PROMPTS_DIR }}",
        "bucket": "{{ env.KIE_S3_BUCKET }}",
        "prefix": "generated",
        "pool": "kie",
        "asset_key_prefix": ["acme", "images"],
        "api_key_env": "MY_KIE_KEY",
        "base_url": "https://kie.example.com",
        "callback_url": "https://hooks.example.com/kie",
    }
    with load(attributes) as (component, defs, _):
        assert component.prompts_dir == str(prompts)
        assert component.bucket == "my-images"
        keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        assert keys == {
            "acme/images/generation_requests",
            "acme/images/submitted_tasks",
            "acme/images/generated_images",
        }
        assert not list(defs.schedules or [])
        assert {sensor.name for sensor in defs.sensors or []} == {
            "acme_images_prompt_sensor",
            "acme_images_retry_sensor",
        }
        job = defs.resolve_job_def("acme_images_generate_images")
        assert job.partitions_def is not None
        prompt_sensor = _sensor(defs, "acme_images_prompt_sensor")
        assert str(prompts) in (prompt_sensor.description or "")
        kie = dict(defs.resources or {})["kie"]
        assert kie.api_key == dg.EnvVar("MY_KIE_KEY")
        assert kie.base_url == "https://kie.example.com"
        assert kie.callback_url == "https://hooks.example.com/kie"
        assert kie.allow_private_downloads is False


def test_loopback_base_url_allows_private_downloads() -> None:
    attributes = {"prompts_dir": "prompts", "bucket": "b", "base_url": "http://127.0.0.1:8123"}
    with load(attributes) as (_, defs, _path):
        kie = dict(defs.resources or {})["kie"]
        assert kie.allow_private_downloads is True
        assert kie.upload_base_url == KieResource.model_fields["upload_base_url"].default


def test_relative_prompts_dir_is_relative_to_the_defs_folder(
    instance: dg.DagsterInstance,
) -> None:
    with load() as (_, defs, path):
        sensor = _sensor(defs, "kie_prompt_sensor")
        assert str((path / "prompts").resolve()) in (sensor.description or "")
        (path / "prompts" / "more.txt").write_text("a blue whale\n# a comment\n")
        result = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SensorResult)
        requested = sorted(str(request.partition_key) for request in result.run_requests or [])
        # a text file keeps its own name as partition key (the parser applies the defaults)
        assert requested == ["example.jsonl", "more.txt"]


def test_component_defs_from_python(tmp_path: Path) -> None:
    component = KieImageGeneration.from_attributes_dict(
        attributes={"model": CHARACTER, "prompts_dir": str(tmp_path), "bucket": "b"}
    )
    defs = component_defs(component=component)
    assert len(list(defs.sensors or [])) == 2
    assert not list(defs.schedules or [])


# --- model and defaults reach the requests ---------------------------------------------------


def test_defaults_reach_the_validated_requests(
    instance: dg.DagsterInstance, moto_s3: tuple[Any, str]
) -> None:
    client, bucket = moto_s3
    attributes = {
        "model": "ideogram/v3-text-to-image",
        "defaults": {"rendering_speed": "TURBO", "image_size": "portrait_4_3"},
        "prompts_dir": "prompts",
        "bucket": bucket,
        "prefix": "out",
    }
    with load(attributes) as (component, defs, path):
        (path / "prompts" / "cats.txt").write_text("a cat in a hat\n")
        assert component.record_defaults == RecordDefaults(
            "ideogram/v3-text-to-image", {"rendering_speed": "TURBO", "image_size": "portrait_4_3"}
        )
        instance.add_dynamic_partitions("kie_prompt_files", ["cats.txt"])
        requests_asset = defs.resolve_assets_def(dg.AssetKey(["kie", "generation_requests"]))
        result = dg.materialize(
            [requests_asset],
            partition_key="cats.txt",
            instance=instance,
        )
        assert result.success
    listed = client.list_objects_v2(Bucket=bucket, Prefix="out/_requests/")
    (item,) = listed["Contents"]
    snapshot = json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    (request,) = snapshot["requests"]
    assert request["line"] == 1
    assert request["body"]["model"] == "ideogram/v3-text-to-image"
    assert request["body"]["input"]["prompt"] == "a cat in a hat"
    assert request["body"]["input"]["rendering_speed"] == "TURBO"
    assert request["body"]["input"]["image_size"] == "portrait_4_3"


def test_prompts_from_an_s3_prefix(instance: dg.DagsterInstance, moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    client.put_object(Bucket=bucket, Key="incoming/a.jsonl", Body=b'{"prompt": "a fox"}\n')
    client.put_object(Bucket=bucket, Key="incoming/b.txt", Body=b"a whale\n")
    client.put_object(Bucket=bucket, Key="elsewhere/c.txt", Body=b"not watched\n")
    attributes = {
        "defaults": {"rendering_speed": "TURBO"},
        "prompts_s3": {"bucket": bucket, "prefix": "incoming/"},
        "bucket": bucket,
    }
    with load(attributes) as (component, defs, _path):
        assert component.prompts_s3 is not None
        assert component.prompts_s3.prefix == "incoming/"
        sensor = _sensor(defs, "kie_prompt_sensor")
        assert f"s3://{bucket}/incoming/" in (sensor.description or "")
        result = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SensorResult)
        assert sorted(str(r.partition_key) for r in result.run_requests or []) == [
            "a.jsonl",
            "b.txt",
        ]


def test_without_model_or_defaults_records_parse_as_without_a_component(tmp_path: Path) -> None:
    component = KieImageGeneration.from_attributes_dict(
        attributes={"prompts_dir": str(tmp_path), "bucket": "b"}
    )
    assert component.record_defaults == RecordDefaults()


# --- clear errors -------------------------------------------------------------------------------


def test_bad_model_names_the_field_and_the_allowed_values() -> None:
    text = _load_error({"model": "dall-e-3", "prompts_dir": "prompts", "bucket": "b"})
    assert "model" in text
    assert "dall-e-3" in text
    for model in MODELS:
        assert f"'{model}'" in text


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (
            {"defaults": {"rendering_speed": "FAST"}, "prompts_dir": "p", "bucket": "b"},
            "rendering_speed: Input should be 'TURBO', 'BALANCED' or 'QUALITY'",
        ),
        (
            {"defaults": {"colour": "red"}, "prompts_dir": "p", "bucket": "b"},
            "colour: Extra inputs are not permitted",
        ),
        ({"bucket": "b"}, "set exactly one of prompts_dir and prompts_s3"),
        (
            {"prompts_dir": "p", "prompts_s3": {"bucket": "x"}, "bucket": "b"},
            "set exactly one of prompts_dir and prompts_s3",
        ),
        ({"prompts_dir": "p"}, "bucket"),
        ({"prompts_dir": "p", "bucket": "b", "api_key_env": "not a name"}, "api_key_env"),
        ({"prompts_dir": "p", "bucket": "b", "asset_key_prefix": []}, "asset_key_prefix"),
        ({"prompts_dir": "p", "bucket": "b", "colour": "red"}, "colour"),
    ],
)
def test_bad_attributes_give_clear_errors(attributes: dict[str, Any], expected: str) -> None:
    assert expected in _load_error(attributes)


# --- scaffolding and registration ------------------------------------------------------------


def test_scaffold_params_select_model_and_s3_prefix() -> None:
    params = {"model": CHARACTER, "prompts_s3_bucket": "my-prompts"}
    with load(scaffold_params=params) as (component, defs, path):
        assert component.default_model == CHARACTER
        assert component.prompts_s3 is not None
        assert component.prompts_s3.bucket == "my-prompts"
        assert not (path / "prompts").exists()
        assert len(list(defs.sensors or [])) == 2


def test_scaffolded_example_fits_its_model() -> None:
    with load(scaffold_params={"model": CHARACTER}) as (component, _, path):
        source = component.prompt_source(path)
        content = source.read("example.jsonl")
        batch = parse_prompt_file("example.jsonl", content, defaults=component.record_defaults)
        assert batch.parsed and not batch.invalid
        assert batch.parsed[0].request.model == CHARACTER


def test_python_scaffold_writes_component_py() -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=KieImageGeneration, defs_path="py_images", scaffold_format="python"
        )
        assert "KieImageGeneration" in (path / "component.py").read_text()


def test_registered_for_dg_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="dagster_dg_cli.registry_modules")
    assert "dagster_kie.component" in {point.value for point in points}
    found = discover_entry_point_package_objects()
    keys = {key.to_typename(): value for key, value in found.items()}
    assert keys[TYPE] is KieImageGeneration


def test_two_components_in_one_project() -> None:
    def yaml_for(prefix: str, **extra: Any) -> dict[str, Any]:
        attributes = {"prompts_dir": "prompts", "bucket": "b", "asset_key_prefix": [prefix]}
        return {"type": TYPE, "attributes": {**attributes, **extra}}

    with create_defs_folder_sandbox() as sandbox:
        for name, contents in {
            "cats": yaml_for("cats"),
            "dogs": yaml_for("dogs"),  # same resource settings: the resources are shared
            "local": yaml_for(
                "local",
                base_url="http://127.0.0.1:8123",
                kie_resource_key="kie_local",
            ),
        }.items():
            sandbox.scaffold_component(
                component_cls=KieImageGeneration, defs_path=name, defs_yaml_contents=contents
            )
        with sandbox.build_all_defs() as defs:
            keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
            assert {key.split("/")[0] for key in keys} == {"cats", "dogs", "local"}
            resources = dict(defs.resources or {})
            assert set(resources) == {"kie", "kie_local", "s3"}
            assert resources["kie_local"].allow_private_downloads is True
            local = defs.resolve_assets_def(dg.AssetKey(["local", "generation_requests"]))
            assert "kie_local" in local.required_resource_keys
