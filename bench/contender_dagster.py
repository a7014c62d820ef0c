"""dagster-kie through Dagster: ``dagster asset materialize`` of one prompt-file partition.

Like ``definitions/demo.py``: a temporary ``DAGSTER_HOME``, the prompt file in a temporary
``KIE_PROMPTS_DIR``, the partition registered beforehand (what the prompt sensor would do), then
the CLI run that users launch. The example project reads no rate-limit variables, so the
resource's limits are set through run config (``resources.kie.config``), which in Dagster replaces
the resource's whole configuration: the connection settings are given again there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.workload import ContenderConfig

__all__ = ["ASSETS", "PARTITIONS", "prepare"]

ASSETS = "kie/generation_requests,kie/submitted_tasks,kie/generated_images"
PARTITIONS = "kie_prompt_files"
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""


def prepare(config: ContenderConfig, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """Set up the instance and prompts dir; return the command line and extra environment."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    prompts = Path(config.prompts_path)
    env = {
        "DAGSTER_HOME": str(home),
        "KIE_PROMPTS_DIR": str(prompts.parent),
        "KIE_S3_BUCKET": config.bucket,
        "KIE_S3_PREFIX": config.prefix,
        "KIE_API_KEY": config.api_key,
        "KIE_BASE_URL": config.base_url,
        "KIE_UPLOAD_BASE_URL": config.upload_base_url,
    }
    _register_partition(home, prompts.name)
    run_config = {
        "resources": {
            "kie": {
                "config": {
                    # Run config for a resource replaces every value the definitions gave it
                    # (not only the ones named), so the connection settings are repeated.
                    "api_key": {"env": "KIE_API_KEY"},
                    "base_url": {"env": "KIE_BASE_URL"},
                    "upload_base_url": {"env": "KIE_UPLOAD_BASE_URL"},
                    "allow_private_downloads": True,
                    "create_tasks_per_window": config.create_limit,
                    "create_window_seconds": config.create_window,
                    "queries_per_second": config.queries_per_second,
                }
            }
        }
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    argv = [
        dagster, "asset", "materialize", "-m", "definitions", "--select", ASSETS,
        "--partition", prompts.name, "--config-json", json.dumps(run_config),
    ]
    return argv, env


def _register_partition(home: Path, key: str) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        if key not in instance.get_dynamic_partitions(PARTITIONS):
            instance.add_dynamic_partitions(PARTITIONS, [key])
