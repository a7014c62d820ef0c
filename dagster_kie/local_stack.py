"""The embedded default: a local kie.ai emulator and a local S3 server, started together.

Used by ``./dev demo``, ``./dev ui``, the tests and the benchmarks. Both are real server processes
on 127.0.0.1, stopped by PID when the ``with`` block ends.

Example:
    >>> from dagster_kie.local_stack import local_stack
    >>> with local_stack(task_duration=1.0) as stack:  # doctest: +SKIP
    ...     env = stack.env()  # KIE_API_KEY, KIE_BASE_URL, AWS_ENDPOINT_URL, ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_kie.emulator import EmulatorProcess
from dagster_kie.local_s3 import LocalS3Server

__all__ = ["DAGSTER_YAML", "TELEMETRY_OFF", "LocalStack", "local_stack"]

TELEMETRY_OFF = "telemetry:\n  enabled: false\n"
"""A ``dagster.yaml`` that only turns Dagster's telemetry off."""

DAGSTER_YAML = (
    TELEMETRY_OFF
    + """\
concurrency:
  pools:
    default_limit: 1
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
"""
)
"""The ``dagster.yaml`` of a local instance (``./dev demo``, the UI tests): no telemetry, runs
queued, one run at a time per pool. It ends in the ``run_coordinator`` block, so lines indented
under it can be appended (``  config: ...``)."""


@dataclass(frozen=True)
class LocalStack:
    """A running emulator and S3 server, and the environment that points a project at them."""

    emulator: EmulatorProcess
    s3: LocalS3Server
    bucket: str

    def env(self) -> dict[str, str]:
        """The environment variables of DESIGN.md for this stack (plus boto3's own)."""
        return {
            **self.s3.env(),
            "KIE_API_KEY": self.emulator.api_key,
            "KIE_BASE_URL": self.emulator.base_url,
            "KIE_UPLOAD_BASE_URL": self.emulator.upload_base_url,
            "KIE_S3_BUCKET": self.bucket,
        }


@contextmanager
def local_stack(
    *,
    bucket: str = "kie-demo",
    data_dir: str | Path | None = None,
    **emulator_settings: Any,
) -> Iterator[LocalStack]:
    """Start SeaweedFS (with ``bucket``) and the kie.ai emulator; stop both on exit.

    Args:
        bucket: Bucket created on the S3 server.
        data_dir: Where SeaweedFS keeps its data (a temporary folder by default).
        **emulator_settings: Passed to :class:`~dagster_kie.emulator.EmulatorProcess`
            (``task_duration=``, ``create_limit=``, ``faults=`` ...).
    """
    with ExitStack() as stack:
        s3 = stack.enter_context(LocalS3Server(data_dir=data_dir, buckets=[bucket]))
        emulator = stack.enter_context(EmulatorProcess(**emulator_settings))
        yield LocalStack(emulator=emulator, s3=s3, bucket=bucket)
