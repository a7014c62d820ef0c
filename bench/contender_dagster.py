"""dagster-kie through Dagster: one run of the ``kie_generate_images`` job for one prompt file.

Like ``definitions/demo.py``: a temporary ``DAGSTER_HOME``, the prompt file in a temporary
``KIE_PROMPTS_DIR``, the partition registered beforehand (what the prompt sensor would do), then
the run the prompt sensor and the schedule launch: the job (in-process executor) for that
partition, from the CLI (``dagster job execute``). The resource's rate limits come from the
project's environment variables (``KIE_CREATE_TASKS_PER_WINDOW``, ``KIE_CREATE_WINDOW_SECONDS``,
``KIE_QUERIES_PER_SECOND``), like every other setting: no run config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.workload import ContenderConfig

__all__ = ["JOB", "PARTITIONS", "prepare"]

JOB = "kie_generate_images"
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
        "KIE_CREATE_TASKS_PER_WINDOW": str(config.create_limit),
        "KIE_CREATE_WINDOW_SECONDS": repr(float(config.create_window)),
        "KIE_QUERIES_PER_SECOND": repr(float(config.queries_per_second)),
    }
    # empty: polling, whatever the benchmark's own environment says
    env["KIE_CALLBACK_URL"] = config.callback_url or ""
    _register_partition(home, prompts.name)
    dagster = str(Path(sys.executable).with_name("dagster"))
    argv = [
        dagster,
        "job",
        "execute",
        "-m",
        "definitions",
        "-j",
        JOB,
        "--tags",
        json.dumps({"dagster/partition": prompts.name}),
    ]
    return argv, env


def _register_partition(home: Path, key: str) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        if key not in instance.get_dynamic_partitions(PARTITIONS):
            instance.add_dynamic_partitions(PARTITIONS, [key])
