"""The S3 server stopped (by PID) while a real run waits, restarted on the same data dir and ports:
the run completes or fails retryably (the retry sensor's own rule decides), and re-executing the
partition completes with nothing lost, duplicated or paid twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from dagster_kie.emulator import EmulatorProcess
from dagster_kie.local_s3 import LocalS3Ports, LocalS3Server
from dagster_kie.sensors import failure_is_retryable
from tests.reliability.helpers import (
    PREFIX,
    DagsterRun,
    Rig,
    dagster_home,
    failure_message,
    list_keys,
    prompt_lines,
    read_json,
    wait_for,
)
from tests.reliability.report import record

BUCKET = "kie-restart"


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[LocalS3Server]:
    """A SeaweedFS of this test only, on a data dir that outlives a stop."""
    server = LocalS3Server(data_dir=tmp_path / "s3-data", buckets=[BUCKET])
    with server:
        yield server


def _recorded(rig: Rig) -> int:
    keys = list_keys(rig.s3, rig.bucket, f"{PREFIX}/_ledger/")
    return sum(1 for key in keys if read_json(rig.s3, rig.bucket, key).get("task_id"))


def test_s3_stopped_and_restarted_mid_run(
    emulator: EmulatorProcess,
    make_rig: Callable[..., Rig],
    own_s3: LocalS3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = make_rig(emulator, s3_server=own_s3, bucket=BUCKET)
    n = 8
    partition = rig.write("restart.jsonl", prompt_lines("s3-restart", n, num_images=2))
    emulator.admin.set_faults(slow_tasks={"multiplier": 1, "extra_seconds": 2.5})
    home = dagster_home(tmp_path / "home", [partition])
    env = {
        **own_s3.env(),
        "KIE_API_KEY": emulator.api_key,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_PROMPTS_DIR": str(rig.prompts_dir),
        "KIE_S3_BUCKET": BUCKET,
    }
    run = DagsterRun(home, partition, env, tmp_path / "run.log")
    wait_for(lambda: _recorded(rig) == n, timeout=60, interval=0.1, what="all tasks recorded")

    ports = own_s3.ports
    pid = own_s3.pid
    own_s3.stop()  # by PID; the data dir stays
    stopped_at = time.monotonic()
    time.sleep(4.0)  # the tasks finish while S3 is down: their downloads cannot be stored
    monkeypatch.setattr(LocalS3Ports, "choose", classmethod(lambda cls: ports))
    own_s3.start()
    outage = time.monotonic() - stopped_at
    assert own_s3.ports == ports and own_s3.pid != pid

    code = run.wait(180)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [dagster_run] = instance.get_runs()
        if code == 0:
            first = "completed"
        else:
            retryable, why = failure_is_retryable(instance, dagster_run)
            assert retryable, (why, run.output()[-4000:])
            first = "failed, retryable"
    emulator.admin.clear_faults()

    result = rig.materialize(partition)

    assert result.success, failure_message(result)
    found = rig.audit()
    found.assert_clean()
    assert found.tasks_created == n
    record(
        "s3",
        fault="S3 server stopped by PID while the run waited, restarted on the same data dir/ports",
        outage_seconds=round(outage, 1),
        first_run=first,
        outcome="re-execution completed",
        **found.summary(),
    )
