"""The kie job runs in process (no step subprocesses), and its ``kie`` pool still holds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg

from dagster_kie import LocalPromptSource, build_kie_assets

POOL = "kie"


def test_the_kie_job_runs_its_steps_in_process() -> None:
    from definitions import defs

    job = defs.resolve_job_def("kie_generate_images")
    assert job.executor_def is dg.in_process_executor
    assert POOL in {node.definition.pool for node in job.graph.node_dict.values()}


def test_executor_def_none_leaves_the_choice_to_definitions(tmp_path: Path) -> None:
    kie_assets = build_kie_assets(
        source=LocalPromptSource(str(tmp_path)), bucket="b", executor_def=None
    )
    defs = dg.Definitions(
        assets=kie_assets.assets,
        jobs=[kie_assets.job],
        resources={
            "kie": dg.ResourceDefinition.none_resource(),
            "s3": dg.ResourceDefinition.none_resource(),
        },
        executor=dg.multiprocess_executor,
    )
    assert defs.resolve_job_def("kie_generate_images").executor_def is dg.multiprocess_executor


@dg.asset(pool=POOL)
def pooled() -> None:
    """Stands in for the kie step: same pool, same executor."""


def pooled_job() -> dg.JobDefinition:
    job = dg.define_asset_job("pooled_job", executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[pooled], jobs=[job]).resolve_job_def("pooled_job")


# Compute-log capture redirects the process's file descriptors and waits for its tee at the end
# of the run; in a loaded pytest worker that once held the run past a minute. It is not what this
# test is about.
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


def test_the_in_process_executor_waits_for_a_pool_slot(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=NO_COMPUTE_LOGS) as instance:
        storage = instance.event_log_storage
        assert storage.supports_global_concurrency_limits
        storage.set_concurrency_slots(POOL, 1)
        assert storage.claim_concurrency_slot(POOL, "other-run", "kie_generate").is_claimed
        results: list[bool | BaseException] = []

        def run() -> None:
            try:
                with dg.execute_job(dg.reconstructable(pooled_job), instance=instance) as result:
                    results.append(result.success)
            except BaseException as error:  # reported by the assert below, not lost in a thread
                results.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(3.0)
        assert thread.is_alive(), "the step ran while the only kie slot was taken"
        storage.free_concurrency_slots_for_run("other-run")
        thread.join(timeout=180)
        assert not thread.is_alive(), "the run did not end within 180 s of the slot's release"
        assert results == [True]
        logs = instance.all_logs(instance.get_runs()[0].run_id)
        assert any("blocked by limit for pool kie" in (e.message or "") for e in logs)
