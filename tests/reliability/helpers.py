"""Shared pieces of the reliability tests: a rig (asset graph + servers), runs, and the audit.

The audit is the heart of every test here: it maps each emulator task to its request (by the
request's unique prompt) and each S3 object to its request and task, then counts what the issue
asks for — tasks created, images stored, duplicates, losses, requests paid twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_kie.emulator import EmulatorProcess
from tests.reliability.project import (
    ASSETS,
    PARTITIONS,
    PREFIX,
    build_assets,
    kie_resource,
    s3_resource,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL_FOLDER = f"{PREFIX}/ideogram/v3-text-to-image/"
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def prompt_lines(name: str, count: int, *, start: int = 0, **fields: Any) -> str:
    """JSON Lines of ``count`` requests with unique ids and prompts (``<name>-<i>``)."""
    return "\n".join(
        json.dumps({"id": f"{name}-{i:04d}", "prompt": f"{name} prompt {i}", "seed": i, **fields})
        for i in range(start, start + count)
    )


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix``."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@dataclass
class Audit:
    """What the servers say happened to a set of requests (by request id)."""

    requests: list[str]
    tasks: dict[str, list[dict[str, Any]]]  # request id → its emulator tasks
    folders: dict[str, dict[str, set[str]]]  # request id → task id → object names
    manifests: dict[str, dict[str, Any]]  # request id → the manifest (last one read)
    ledger: dict[str, dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    @property
    def tasks_created(self) -> int:
        return sum(len(tasks) for tasks in self.tasks.values())

    @property
    def stored(self) -> list[str]:
        """Requests whose images and manifest are in S3."""
        return [rid for rid in self.requests if rid in self.manifests]

    @property
    def images(self) -> int:
        """Image objects in S3 (manifests excluded)."""
        return sum(
            1
            for tasks in self.folders.values()
            for names in tasks.values()
            for name in names
            if name != "manifest.json"
        )

    @property
    def duplicates(self) -> int:
        """Images stored more than once: extra task folders of a request, extra objects."""
        extra = 0
        for rid, tasks in self.folders.items():
            with_images = [t for t, names in tasks.items() if names - {"manifest.json"}]
            extra += max(0, len(with_images) - 1) * 1
            manifest = self.manifests.get(rid)
            if manifest is not None:
                listed = {Path(image["key"]).name for image in manifest["images"]}
                names = tasks.get(manifest["task_id"], set()) - {"manifest.json"}
                extra += len(names - listed)
        return extra

    @property
    def paid_twice(self) -> list[str]:
        """Requests with more than one charged (successful) task."""
        return [
            rid
            for rid, tasks in self.tasks.items()
            if sum(1 for t in tasks if t["state"] == "success") > 1
        ]

    @property
    def lost(self) -> list[str]:
        """Requests with a charged task whose images are not all in S3."""
        lost = []
        for rid, tasks in self.tasks.items():
            paid = [t for t in tasks if t["state"] == "success"]
            if paid and rid not in self.manifests:
                lost.append(rid)
        return lost

    @property
    def resent_after_failure(self) -> int:
        """Extra tasks of requests whose earlier task failed (not charged)."""
        return sum(max(0, len(tasks) - 1) for tasks in self.tasks.values())

    def state_of(self, rid: str) -> str | None:
        entry = self.ledger.get(rid)
        return None if entry is None else str(entry["state"])

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.requests),
            "tasks_created": self.tasks_created,
            "requests_stored": len(self.stored),
            "images_stored": self.images,
            "duplicates": self.duplicates,
            "lost": len(self.lost),
            "paid_twice": len(self.paid_twice),
            "unconfirmed": sum(1 for rid in self.requests if self.state_of(rid) == "submitting"),
        }

    def assert_clean(self, *, allow_missing: Iterable[str] = ()) -> None:
        """Nothing duplicated, nothing paid twice, nothing lost, every manifest consistent."""
        allowed = set(allow_missing)
        assert not self.problems, self.problems
        assert self.duplicates == 0, self.folders
        assert self.paid_twice == [], self.paid_twice
        assert [rid for rid in self.lost if rid not in allowed] == [], self.summary()
        for rid in self.requests:
            if rid in allowed:
                continue
            assert rid in self.manifests, f"request {rid} has no manifest: {self.summary()}"
        for rid, manifest in self.manifests.items():
            charged = [t["taskId"] for t in self.tasks.get(rid, []) if t["state"] == "success"]
            assert charged == [manifest["task_id"]], (rid, charged, manifest["task_id"])


def audit(emulator: EmulatorProcess, s3: Any, bucket: str, requests: dict[str, str]) -> Audit:
    """Audit ``requests`` (request id → its unique prompt) against the emulator and S3."""
    by_prompt = {prompt: rid for rid, prompt in requests.items()}
    tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    problems: list[str] = []
    for task in emulator.admin.tasks():
        rid = by_prompt.get(task["prompt"])
        if rid is None:
            problems.append(f"task {task['taskId']} belongs to no request: {task['prompt']!r}")
        else:
            tasks[rid].append(task)
    folders: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    manifests: dict[str, dict[str, Any]] = {}
    manifest_keys = []
    for key in list_keys(s3, bucket, MODEL_FOLDER):
        rid, task_id, name = key[len(MODEL_FOLDER) :].split("/")
        if rid not in requests:
            problems.append(f"object of no request: {key}")
        folders[rid][task_id].add(name)
        if name == "manifest.json":
            manifest_keys.append((rid, task_id, key))
    ledger_keys = list_keys(s3, bucket, f"{PREFIX}/_ledger/")
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = [pool.submit(read_json, s3, bucket, key) for _, _, key in manifest_keys]
        entries = list(pool.map(lambda key: read_json(s3, bucket, key), ledger_keys))
    for (rid, task_id, key), future in zip(manifest_keys, read, strict=True):
        manifest = future.result()
        if rid in manifests:
            problems.append(f"request {rid} has two manifests")
        manifests[rid] = manifest
        for image in manifest["images"]:
            if not image["key"].startswith(f"{MODEL_FOLDER}{rid}/{task_id}/"):
                problems.append(f"manifest {key} lists a foreign key {image['key']}")
        if len(manifest["images"]) != int(manifest["request"]["input"]["num_images"]):
            problems.append(f"manifest {key} lists {len(manifest['images'])} images")
    ledger = {entry["request_id"]: entry for entry in entries}
    for rid, manifest in manifests.items():
        listed = {Path(image["key"]).name for image in manifest["images"]}
        missing = listed - folders[rid][manifest["task_id"]]
        if missing:
            problems.append(f"manifest of {rid} lists missing objects {sorted(missing)}")
    return Audit(
        requests=list(requests),
        tasks={rid: tasks.get(rid, []) for rid in requests},
        folders={rid: {t: set(n) for t, n in f.items()} for rid, f in folders.items()},
        manifests=manifests,
        ledger=ledger,
        problems=problems,
    )


def requests_of(text: str) -> dict[str, str]:
    """Request id → prompt of JSON Lines written by :func:`prompt_lines`."""
    out = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "id" in record and isinstance(record.get("prompt"), str):
            out[record["id"]] = record["prompt"]
    return out


class Rig:
    """The asset graph wired to an emulator and an S3 server, run in-process."""

    def __init__(
        self,
        *,
        emulator: EmulatorProcess,
        s3_server: Any,
        s3: Any,
        bucket: str,
        prompts_dir: Path,
        instance: dg.DagsterInstance,
        assets_options: dict[str, Any] | None = None,
        **resource_options: Any,
    ) -> None:
        self.emulator = emulator
        self.s3_server = s3_server
        self.s3 = s3
        self.bucket = bucket
        self.prompts_dir = prompts_dir
        self.instance = instance
        self.kie_assets = build_assets(str(prompts_dir), bucket, **(assets_options or {}))
        self.resource_options = resource_options
        self.kie = kie_resource(
            emulator.api_key, emulator.base_url, emulator.upload_base_url, **resource_options
        )
        self.requests: dict[str, str] = {}

    def configure(self, api_key: str | None = None, **resource_options: Any) -> None:
        """Rebuild the ``KieResource`` with changed options."""
        self.resource_options.update(resource_options)
        self.kie = kie_resource(
            api_key or self.emulator.api_key,
            self.emulator.base_url,
            self.emulator.upload_base_url,
            **self.resource_options,
        )

    @property
    def resources(self) -> dict[str, Any]:
        server = self.s3_server
        return {
            "kie": self.kie,
            "s3": s3_resource(
                server.endpoint_url, server.access_key_id, server.secret_access_key, server.region
            ),
        }

    def write(self, name: str, text: str) -> str:
        (self.prompts_dir / name).write_text(text, encoding="utf-8")
        if name.endswith(".jsonl"):
            self.requests.update(requests_of(text))
        return name

    def add_partition(self, partition: str) -> None:
        if partition not in self.instance.get_dynamic_partitions(PARTITIONS):
            self.instance.add_dynamic_partitions(PARTITIONS, [partition])

    def materialize(self, partition: str) -> dg.ExecuteInProcessResult:
        self.add_partition(partition)
        return dg.materialize(
            self.kie_assets.assets,
            partition_key=partition,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
        )

    def until_done(self, partition: str, max_runs: int = 6) -> list[dg.ExecuteInProcessResult]:
        """Materialize, then re-execute while the failure is retryable (the retry sensor's rule)."""
        results = []
        for _ in range(max_runs):
            result = self.materialize(partition)
            results.append(result)
            if result.success or not failure_retryable(result):
                break
        return results

    def audit(self, requests: dict[str, str] | None = None) -> Audit:
        return audit(self.emulator, self.s3, self.bucket, requests or self.requests)


def failure_of(result: dg.ExecuteInProcessResult) -> Any:
    """The user failure of a failed run (its message and metadata), or ``None``."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            return data
    return None


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What the user sees: the ``dg.Failure`` description, else the error message."""
    data = failure_of(result)
    if data is None:
        return ""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return str(data.user_failure_data.description)
    return str(data.error.message)


def failure_retryable(result: dg.ExecuteInProcessResult) -> bool:
    data = failure_of(result)
    if data is None or data.user_failure_data is None:
        return False
    value = data.user_failure_data.metadata.get("retryable")
    return bool(getattr(value, "value", value))


# -- real `dagster asset materialize` subprocesses --------------------------------------------


class DagsterRun:
    """``dagster asset materialize -m tests.reliability.project`` in its own process group."""

    def __init__(self, home: Path, partition: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        command = [
            str(Path(sys.executable).with_name("dagster")),
            "asset", "materialize", "-m", "tests.reliability.project",
            "--select", ASSETS, "--partition", partition,
        ]  # fmt: skip
        child_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
        child_env["PYTHONPATH"] = str(ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=child_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        """SIGKILL the whole process group (the run and any step subprocess)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log_file.close()

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log_file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def dagster_home(path: Path, partitions: Iterable[str]) -> Path:
    """A Dagster home with the dynamic partitions registered."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(path)) as instance:
        instance.add_dynamic_partitions(PARTITIONS, list(partitions))
    return path


def wait_for(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


def count(items: Iterable[Any]) -> Counter[Any]:
    return Counter(items)
