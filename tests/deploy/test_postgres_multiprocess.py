"""Past one machine: a Postgres-backed Dagster instance and the multiprocess executor.

A real PostgreSQL server (Debian's binaries, as ``.ci/run`` installs them) runs on loopback as a
child process for this module. The instance's ``dagster.yaml`` is the one documented in
``docs/deployment.md`` (Postgres run/event/schedule storage from environment variables, the
``kie`` concurrency pool); the asset graph is materialized with ``dagster asset materialize``,
whose default executor runs every step in its own subprocess, against the local kie.ai emulator
and SeaweedFS. Two partitions run at once in two processes: the ``kie`` pool (its slots are rows in
Postgres) keeps their ``kie`` steps apart. Nothing is shared between steps but S3 and the instance.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from PIL import Image

from dagster_kie._process import ServerProcess, ServerStartError, free_port
from dagster_kie.emulator import EmulatorProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
ASSETS = "kie/generation_requests,kie/submitted_tasks,kie/generated_images"
PARTITIONS = "kie_prompt_files"
DB_NAME = "dagster_kie"
DB_USER = "dagster"
DB_PASSWORD = "kie-test-only"
PROMPT_FILES = {
    "birds.jsonl": [
        {
            "id": "heron",
            "prompt": "a heron in the reeds",
            "image_size": "square",
            "num_images": "2",
        },
        {"id": "kite", "prompt": "a red kite over hills", "image_size": "landscape_16_9"},
    ],
    "insects.jsonl": [
        {"id": "moth", "prompt": "a moth on bark", "image_size": "portrait_4_3"},
        {"id": "beetle", "prompt": "a green beetle", "image_size": "square"},
    ],
}
KIE_STEP = "kie_generate"
TASK_SECONDS = 12.0
"""Long enough that the second run's ``kie`` step, started once the first holds the slot, comes
while the first still runs (its CLI and first step take a few seconds)."""


def documented_dagster_yaml() -> str:
    """The ``dagster.yaml`` block of docs/deployment.md (its first line is ``# dagster.yaml``)."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    for block in re.findall(r"^```yaml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        if block.splitlines()[0].strip() == "# dagster.yaml":
            return str(block)
    raise AssertionError(f"no ```yaml block starting with '# dagster.yaml' in {DEPLOYMENT_DOC}")


# --------------------------------------------------------------------------------------------
# PostgreSQL as a child process
# --------------------------------------------------------------------------------------------


def _postgres_bin_dir() -> Path:
    def version(path: str) -> float:
        with suppress(ValueError):
            return float(Path(path).parent.parent.name)
        return 0.0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, postgres) were not found: install them with "
        "`apt-get install -y postgresql` (Debian/Ubuntu; .ci/run does this in CI)."
    )


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs PostgreSQL as a non-root user (it refuses root), and its uid."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:  # Debian's postgresql package creates it; a bare container may lack it
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
        uid = pwd.getpwnam("postgres").pw_uid
    return ["runuser", "-u", "postgres", "--"], uid


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db_name: str
    pid: int

    def env(self) -> dict[str, str]:
        """The variables the documented ``dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.db_name,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            connection.close()


def _accepts_connections(port: int) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user=DB_USER,
            password=DB_PASSWORD,
            dbname="postgres",
            connect_timeout=2,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL on 127.0.0.1 (free port) in a temporary data dir; stopped by PID at the end."""
    import psycopg2

    bin_dir = _postgres_bin_dir()
    prefix, uid = _as_server_user()
    base = Path(tempfile.mkdtemp(prefix="kie-pg-"))  # not under pytest's root-only temp dir
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    (base / "pwfile").write_text(DB_PASSWORD + "\n")
    if uid is not None:
        for path in (base, sockets, base / "pwfile"):
            os.chown(path, uid, -1)
    server: ServerProcess | None = None
    try:
        subprocess.run(
            [
                *prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", DB_USER,
                f"--pwfile={base / 'pwfile'}", "--auth-local=trust",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=base,
        )  # fmt: skip
        # The port can be taken between choosing and binding it: try a fresh one then.
        for attempt in range(3):
            port = free_port()
            server = ServerProcess(
                [
                    *prefix, str(bin_dir / "postgres"), "-D", str(data), "-k", str(sockets),
                    "-h", "127.0.0.1", "-p", str(port),
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                ],
                name="postgres",
                ready_probe=functools.partial(_accepts_connections, port),
                cwd=base,
                start_timeout=60,
            )  # fmt: skip
            try:
                server.start()
                break
            except ServerStartError as error:
                if attempt == 2 or "already in use" not in str(error):
                    raise
        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user=DB_USER, password=DB_PASSWORD, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DB_NAME}")
        connection.close()
        yield Postgres("127.0.0.1", port, DB_USER, DB_PASSWORD, DB_NAME, server.pid)
    finally:
        if server is not None and server.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for every client).
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                server.process.wait(20)
            server.stop()  # SIGTERM, then SIGKILL, to the group, if anything is left
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The project on a Postgres instance
# --------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    env: dict[str, str]
    home: Path
    emulator: EmulatorProcess
    s3: Any
    bucket: str
    postgres: Postgres

    def start_materialize(self, partition: str) -> subprocess.Popen[str]:
        """Start ``dagster asset materialize`` (its default executor is multiprocess)."""
        dagster = str(Path(sys.executable).with_name("dagster"))
        return subprocess.Popen(
            [dagster, "asset", "materialize", "-m", "definitions", "--select", ASSETS,
             "--partition", partition],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip

    @staticmethod
    def finish(process: subprocess.Popen[str], timeout: float = 240) -> str:
        """Wait for a materialization; its output (the CLI's run log)."""
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(f"materialize timed out:\n{output[-6000:]}") from None
        assert process.returncode == 0, output[-6000:]
        return output

    def materialize(self, partition: str) -> str:
        return self.finish(self.start_materialize(partition))

    def images(self) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="kie/"
        ):
            keys += [
                item["Key"]
                for item in page.get("Contents", [])
                if item["Key"].endswith(".png") and not item["Key"].startswith("kie/_")
            ]
        return sorted(keys)


@pytest.fixture(scope="module")
def deployment(
    postgres: Postgres,
    local_s3: Any,
    local_s3_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("postgres-deployment")
    home, prompts = base / "dagster_home", base / "prompts"
    home.mkdir()
    prompts.mkdir()
    (home / "dagster.yaml").write_text(documented_dagster_yaml())
    for name, records in PROMPT_FILES.items():
        (prompts / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    bucket = f"test-pg-{os.getpid()}"
    local_s3_client.create_bucket(Bucket=bucket)
    with EmulatorProcess(task_duration=TASK_SECONDS, task_jitter=0.0) as emulator:
        env = {**os.environ, **local_s3.env(), **postgres.env()}
        for name in ("KIE_CALLBACK_URL", "DAGSTER_CLOUD_DEPLOYMENT_NAME"):
            env.pop(name, None)
        env.update(
            DAGSTER_HOME=str(home),
            KIE_API_KEY=emulator.api_key,
            KIE_BASE_URL=emulator.base_url,
            KIE_UPLOAD_BASE_URL=emulator.upload_base_url,
            KIE_S3_BUCKET=bucket,
            KIE_S3_PREFIX="kie",
            KIE_PROMPTS_DIR=str(prompts),
            KIE_POLL_INTERVAL_SCALE="0.1",
        )
        yield Deployment(env, home, emulator, local_s3_client, bucket, postgres)


def test_multiprocess_materialization_on_a_postgres_instance(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = deployment.postgres
    for name, value in postgres.env().items():  # the instance config reads them in this process
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(deployment.home))
    try:
        _materialize_and_check(deployment, instance)
    finally:
        instance.dispose()


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """``{step key: (started, finished)}`` of a run, from the instance's event log."""
    records = instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    )
    starts = {r.step_key: r.timestamp for r in records if r.dagster_event_type == "STEP_START"}
    ends = {r.step_key: r.timestamp for r in records if r.dagster_event_type == "STEP_SUCCESS"}
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def _wait_for_a_claimed_slot(
    instance: dg.DagsterInstance, process: subprocess.Popen[str], timeout: float = 120
) -> None:
    """Until a step holds the ``kie`` slot (or the materialization ended, which fails later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if instance.event_log_storage.get_concurrency_info("kie").active_slot_count:
            return
        time.sleep(0.05)


def _materialize_and_check(deployment: Deployment, instance: dg.DagsterInstance) -> None:
    postgres = deployment.postgres
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    instance.add_dynamic_partitions(PARTITIONS, list(PROMPT_FILES))

    # The documented pool limit, set through the CLI as an operator would.
    dagster = str(Path(sys.executable).with_name("dagster"))
    subprocess.run(
        [dagster, "instance", "concurrency", "set", "kie", "1"],
        env=deployment.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert instance.event_log_storage.get_concurrency_info("kie").slot_count == 1

    # Two runs at once, in two processes, each step in its own subprocess. The second starts once
    # the first holds the kie slot: dagster-postgres claims a slot in autocommit mode (its
    # SELECT ... FOR UPDATE lock ends with the statement), so two steps that claim the free slot
    # in the same instant can both get it (seen once in about twenty CI runs; docs/deployment.md).
    started = time.monotonic()
    first_name, second_name = PROMPT_FILES
    processes = {first_name: deployment.start_materialize(first_name)}
    _wait_for_a_claimed_slot(instance, processes[first_name])
    processes[second_name] = deployment.start_materialize(second_name)
    outputs = {name: deployment.finish(process) for name, process in processes.items()}
    both_seconds = time.monotonic() - started

    for output in outputs.values():
        parent = re.search(r"multiprocess executor: parent process \(pid: (\d+)\)", output)
        assert parent is not None, output[-4000:]
        workers = dict(
            re.findall(
                r" - (\d+) - (\S+) - STEP_WORKER_STARTED - Executing step \"\2\" in subprocess",
                output,
            )
        )
        steps = {step: int(pid) for pid, step in workers.items()}
        assert set(steps) == {"kie__generation_requests", KIE_STEP}, output[-4000:]
        assert int(parent.group(1)) not in steps.values()
        assert len(set(steps.values())) == 2

    expected = {r["id"]: int(r.get("num_images", "1")) for rs in PROMPT_FILES.values() for r in rs}
    images = deployment.images()
    assert sorted(key.split("/")[-3] for key in images) == sorted(
        request_id for request_id, count in expected.items() for _ in range(count)
    )
    for key in images:
        body = deployment.s3.get_object(Bucket=deployment.bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(body)) as image:
            assert image.format == "PNG"
    creates = deployment.emulator.admin.stats()["create_calls"]
    assert creates == len(expected)

    # The runs and their events are in Postgres, not in local files.
    rows = postgres.query("SELECT run_id, status FROM runs")
    assert sorted(status for _, status in rows) == ["SUCCESS", "SUCCESS"]
    materialized = postgres.query(
        "SELECT DISTINCT asset_key FROM event_logs"
        " WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
    )
    assert sorted(key for (key,) in materialized) == [
        '["kie", "generated_images"]',
        '["kie", "generation_requests"]',
        '["kie", "submitted_tasks"]',
    ]
    assert not list(deployment.home.glob("**/*.db")), "storage fell back to SQLite"

    # The pool (slots in Postgres) kept the two kie steps apart: one ran after the other.
    first, second = sorted(
        (_step_windows(instance, run_id)[KIE_STEP] for run_id, _ in rows), key=lambda w: w[0]
    )
    assert first[1] <= second[0], f"kie steps overlapped: {first} {second}"
    blocked = [
        record
        for run_id, _ in rows
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if "blocked by limit for pool kie" in (record.message or "")
    ]
    assert blocked, "the second kie step never waited for the slot: the test proved nothing"

    # Re-materializing pays for nothing: the ledger in S3 knows every request.
    started = time.monotonic()
    deployment.materialize(next(iter(PROMPT_FILES)))
    again_seconds = time.monotonic() - started
    assert deployment.emulator.admin.stats()["create_calls"] == creates
    assert deployment.images() == images
    assert [s for _, s in postgres.query("SELECT run_id, status FROM runs")] == ["SUCCESS"] * 3
    print(
        f"two runs at once: {both_seconds:.1f} s ({len(blocked)} pool-blocked notices); "
        f"again: {again_seconds:.1f} s"
    )
