"""Security end to end: keys never leak, loopback downloads are refused, keys stay under the prefix.

* The API key (a distinctive one the emulator accepts) and the callback HMAC key are searched for
  in everything a real run leaves behind: the ``dagster`` process output, every file of the
  Dagster home (event log, run storage, captured compute logs), every event of
  ``instance.all_logs(run_id)``, every S3 object (images, manifests, ledger, snapshots, callbacks,
  spend), the emulator's and the receiver's output, caplog, reprs and exception texts — after
  successful, failed and unauthorized runs.
* The default ``KieResource`` (``allow_private_downloads=False``) refuses the emulator's loopback
  result URLs with a clear error; nothing is stored, and after the setting is fixed the same tasks
  are resumed (nothing paid twice).
* Keys built from ids and file names cannot leave the prefix (ids are validated before anything
  is sent; a partition naming a file outside the prompt folder is refused).

Receiver-side checks (constant-time HMAC verification, stale timestamps, unknown task ids,
oversized bodies) are unit-tested in ``tests/callbacks``; download policy details (schemes, size
cap, content type and magic bytes, redirects, private addresses) in ``tests/client``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.errors import AuthenticationError, KieError
from dagster_kie.storage import ImageStore, UnsafeKeyError
from tests.reliability.conftest import API_KEY, HMAC_KEY
from tests.reliability.helpers import (
    MODEL_FOLDER,
    DagsterRun,
    Rig,
    dagster_home,
    failure_message,
    failure_retryable,
    list_keys,
    prompt_lines,
)
from tests.reliability.report import record

WRONG_KEY = "kie-WRONG-SECRET-c0ffee77d00d"
SECRETS = {"API key": API_KEY, "HMAC key": HMAC_KEY, "wrong API key": WRONG_KEY}


def _leaks(where: str, text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [f"{name} in {where}" for name, secret in SECRETS.items() if secret.encode() in data]


@pytest.fixture
def receiver(local_s3: Any, s3_bucket: tuple[Any, str]) -> Iterator[CallbackReceiverProcess]:
    with CallbackReceiverProcess(
        bucket=s3_bucket[1], prefix="kie", hmac_key=HMAC_KEY, env=local_s3.env()
    ) as process:
        yield process


def test_keys_never_leak(
    emulator: EmulatorProcess,
    make_rig: Callable[..., Rig],
    receiver: CallbackReceiverProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = make_rig(emulator, callback_url=receiver.url)
    ok = rig.write("ok.jsonl", prompt_lines("sec-ok", 4, num_images=2))
    failing = rig.write("failing.jsonl", prompt_lines("sec-fail", 3))
    home = dagster_home(tmp_path / "home", [ok, failing])
    env = {
        **rig.s3_server.env(),
        "KIE_API_KEY": API_KEY,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_CALLBACK_URL": receiver.url,
        "KIE_PROMPTS_DIR": str(rig.prompts_dir),
        "KIE_S3_BUCKET": rig.bucket,
    }
    outputs: list[tuple[str, str]] = []

    # 1. a successful run, with retried 500s and a malformed reply on the way
    emulator.admin.set_faults(
        server_error={"count": 3, "endpoint": "record_info"},
        malformed_json={"count": 1, "endpoint": "record_info"},
    )
    run = DagsterRun(home, ok, env, tmp_path / "ok.log")
    assert run.wait(120) == 0, run.output()[-3000:]
    outputs.append(("dagster process output (success)", run.output()))
    # 2. a failed run: a task fails
    emulator.admin.set_faults(fail_tasks={"count": 1})
    run = DagsterRun(home, failing, env, tmp_path / "fail.log")
    assert run.wait(120) != 0
    outputs.append(("dagster process output (task failed)", run.output()))
    # 3. an unauthorized run: a wrong key, rejected with 401
    emulator.admin.clear_faults()
    run = DagsterRun(home, failing, {**env, "KIE_API_KEY": WRONG_KEY}, tmp_path / "401.log")
    assert run.wait(120) != 0
    outputs.append(("dagster process output (401)", run.output()))
    assert "Authentication" in run.output() or "401" in run.output()
    # 4. an in-process run, logs captured at DEBUG (httpx, httpcore, boto, dagster-kie)
    monkeypatch.setenv("KIE_API_KEY", API_KEY)
    rig.configure(api_key=API_KEY)
    assert rig.materialize(ok).success

    leaks: list[str] = []
    scanned = {"files": 0, "events": 0, "s3_objects": 0}
    for where, text in outputs:
        leaks += _leaks(where, text)
    for path in home.rglob("*"):
        if path.is_file():
            scanned["files"] += 1
            leaks += _leaks(f"Dagster home file {path.relative_to(home)}", path.read_bytes())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        for dagster_run in runs:
            leaks += _leaks("run record", serialize_value(dagster_run))
            for entry in instance.all_logs(dagster_run.run_id):
                scanned["events"] += 1
                leaks += _leaks(f"event {entry.dagster_event_type}", serialize_value(entry))
    for entry in rig.instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION)
    ):
        scanned["events"] += 1
        leaks += _leaks("in-process materialization", serialize_value(entry))
    for key in list_keys(rig.s3, rig.bucket):
        scanned["s3_objects"] += 1
        body = rig.s3.get_object(Bucket=rig.bucket, Key=key)["Body"].read()
        leaks += _leaks(f"s3://{rig.bucket}/{key}", body)
    # The emulator stands in for kie.ai, which knows the key: only its ready line (read by the
    # launcher) names the key it accepts. Everything else it printed is scanned.
    everything = emulator.log_file.read_text(errors="replace")  # type: ignore[attr-defined]
    emulator_output = "\n".join(
        line for line in everything.splitlines() if not line.startswith("KIE_EMULATOR_READY")
    )
    assert "POST /api/v1/jobs/createTask" in emulator_output  # its access log was scanned
    leaks += _leaks("emulator output", emulator_output)
    leaks += _leaks("callback receiver output", receiver.tail())
    leaks += _leaks("caplog", caplog.text)
    leaks += _leaks("KieResource repr/str", repr(rig.kie) + str(rig.kie))
    with rig.kie.build_client() as client:
        leaks += _leaks("KieClient repr", repr(client) + repr(vars(client)))
    rig.configure(api_key=WRONG_KEY)
    with rig.kie.build_client() as client, pytest.raises(AuthenticationError) as raised:
        client.get_credits()
    error: KieError = raised.value
    leaks += _leaks("AuthenticationError", str(error) + repr(error) + repr(pickle.dumps(error)))

    assert leaks == []
    assert scanned["events"] > 50 and scanned["s3_objects"] >= 12 and scanned["files"] > 3
    assert receiver.signed and emulator.admin.stats()["callbacks_sent"] >= 4
    record(
        "security",
        check="API key, HMAC key and a rejected key searched in every output of 4 runs",
        scanned=f"{scanned['files']} Dagster-home files, {scanned['events']} events, "
        f"{scanned['s3_objects']} S3 objects, process/emulator/receiver output, caplog, reprs",
        leaks=len(leaks),
    )


def test_default_resource_refuses_loopback_downloads(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(emulator, allow_private_downloads=False)
    partition = rig.write("ssrf.jsonl", prompt_lines("ssrf", 2))

    result = rig.materialize(partition)

    assert not result.success and not failure_retryable(result)
    message = failure_message(result)
    assert "non-public address 127.0.0.1" in message and "allow_private" in message, message
    assert [k for k in list_keys(rig.s3, rig.bucket, MODEL_FOLDER)] == []  # nothing stored
    assert emulator.admin.stats()["downloads"] == 0  # not one byte was fetched
    # The tasks stay in the ledger: once the setting is fixed they are resumed, not paid again.
    rig.configure(allow_private_downloads=True)
    again = rig.materialize(partition)
    assert again.success, failure_message(again)
    found = rig.audit()
    found.assert_clean()
    assert found.tasks_created == 2
    record("security", check="default KieResource vs loopback result URLs", message=message,
           leaks=0)  # fmt: skip


def test_keys_cannot_leave_the_prefix(
    emulator: EmulatorProcess, make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = make_rig(emulator)
    (tmp_path / "secret.txt").write_text("a private line\n")
    result = rig.materialize("../secret.txt")
    assert not result.success and not failure_retryable(result)
    assert "leaves the folder" in failure_message(result)
    assert emulator.admin.stats()["requests_total"] == 0

    store = ImageStore(rig.s3, rig.bucket, "kie")
    model = "ideogram/v3-text-to-image"
    for request_id, task_id in [("../x", "t"), ("r", "../../etc"), ("r", "a/b"), ("..", "t"),
                                ("r", "t\x00"), ("r/../../x", "t"), ("%2e%2e", "t/")]:  # fmt: skip
        with pytest.raises(UnsafeKeyError):
            store.image_key(model, request_id, task_id, 0)
    for key in ("kie/../x.png", "other/x.png", "kie//x.png", "kie/a/./b.png"):
        with pytest.raises(UnsafeKeyError):
            store.check_key(key)
