"""Every YAML (and Python) block of docs/deployment.md loads, and the configs in it are valid.

- the instance ``dagster.yaml`` validates against Dagster's instance schema (and, in
  ``test_postgres_multiprocess.py``, runs a real Postgres-backed deployment);
- the Celery variant of its ``concurrency`` section validates too;
- the Helm values and the callback receiver's manifests parse and say what the text says, and the
  receiver's command line is accepted by the receiver's own argument parser;
- the Python examples compile, and the S3-prompts project loads as ``Definitions``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from dagster_kie.callbacks.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
PG_ENV = {
    "DAGSTER_PG_HOST": "db.example.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
}


def blocks(language: str) -> list[str]:
    """The fenced code blocks of the document in ``language``."""
    text = DOC.read_text(encoding="utf-8")
    return [str(b) for b in re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.M)]


def titled(title: str) -> str:
    """The one YAML block whose first line is the comment ``# <title>`` (exactly or ``—`` on)."""
    found = [
        block
        for block in blocks("yaml")
        if re.match(rf"# {re.escape(title)}(\s+—.*)?$", block.splitlines()[0])
    ]
    assert len(found) == 1, f"expected one yaml block titled {title!r}, found {len(found)}"
    return found[0]


def validate_instance_yaml(text: str, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(text, encoding="utf-8")
    config, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return dict(config)


def test_every_yaml_block_parses() -> None:
    found = blocks("yaml")
    assert len(found) >= 5
    for block in found:
        documents = [doc for doc in yaml.safe_load_all(block) if doc is not None]
        assert documents, block
        assert all(isinstance(doc, dict) for doc in documents), block


def test_instance_yaml_is_a_valid_dagster_instance_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    config = validate_instance_yaml(titled("dagster.yaml"), tmp_path)

    postgres_db = config["storage"]["postgres"]["postgres_db"]
    assert postgres_db["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert postgres_db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert postgres_db["scheme"] == "postgresql+psycopg2"
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        assert key not in config  # `storage: postgres:` sets all three


def test_celery_concurrency_section_is_valid(tmp_path: Path) -> None:
    base = yaml.safe_load(titled("dagster.yaml"))
    celery = yaml.safe_load(titled("concurrency section of dagster.yaml in a Celery deployment"))
    assert celery["concurrency"]["pools"]["granularity"] == "run"
    base["concurrency"] = celery["concurrency"]
    config = validate_instance_yaml(yaml.safe_dump(base), tmp_path)
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}


def test_helm_values_say_what_the_text_says() -> None:
    values = yaml.safe_load(titled("values.yaml"))
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "definitions"]
    assert {"name": "kie-secrets"} in deployment["envSecrets"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert {"KIE_S3_BUCKET", "KIE_S3_PREFIX", "AWS_REGION", "KIE_CALLBACK_URL"} <= set(env)
    assert env["KIE_CALLBACK_URL"].endswith("/kie/callback")
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert {"name": "kie-secrets"} in launcher["config"]["k8sRunLauncher"]["envSecrets"]
    assert values["postgresql"]["enabled"] is False
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["concurrency"]["pools"]["defaultLimit"] == 1


def test_callback_receiver_manifest_runs_the_receiver() -> None:
    deployment, service = yaml.safe_load_all(titled("kie-callbacks.yaml"))
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["args"]
    assert command[:3] == ["python", "-m", "dagster_kie.callbacks"]
    env = {item["name"]: item["value"] for item in container["env"]}
    args = build_parser(env).parse_args(command[3:])  # the bucket comes from KIE_S3_BUCKET
    assert (args.bucket, args.prefix, args.host) == ("my-images", "kie", "0.0.0.0")
    assert args.hmac_key_env == "KIE_WEBHOOK_HMAC_KEY"
    assert container["ports"] == [{"containerPort": args.port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": args.port}
    assert service["spec"]["ports"][0]["targetPort"] == args.port
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_shell_commands_are_the_real_ones() -> None:
    shell = "\n".join(blocks("bash")).replace("\\\n", " ")
    assert "dagster instance concurrency set kie 1" in shell
    receiver = next(line for line in shell.splitlines() if "-m dagster_kie.callbacks" in line)
    words = shlex.split(receiver)
    args = build_parser({}).parse_args(words[words.index("dagster_kie.callbacks") + 1 :])
    assert args.hmac_key_env == "KIE_WEBHOOK_HMAC_KEY" and args.bucket == "my-images"


def test_python_examples_compile_and_the_s3_project_loads() -> None:
    examples = blocks("python")
    assert len(examples) >= 2
    for index, source in enumerate(examples):
        compile(source, f"{DOC.name}[python {index}]", "exec")
    namespace: dict[str, Any] = {}
    exec(compile(examples[0], f"{DOC.name}[python 0]", "exec"), namespace)
    defs = namespace["defs"]
    assert isinstance(defs, dg.Definitions)
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("kie_generate_images") is not None
    assert defs.resolve_sensor_def("kie_prompt_sensor") is not None
