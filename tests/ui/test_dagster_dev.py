"""``dagster dev`` for real: the UI, GraphQL and the daemon against the local stack.

One ``dagster dev -w workspace.yaml`` (webserver, daemon, code server) runs for the whole module
on a temporary instance, pointed at a local kie.ai emulator and SeaweedFS through the project's
environment variables, exactly as ``./dev ui`` does. The tests drive it the way users do: the
prompt sensor is started with GraphQL and picks up a new file, a run is launched with
``launchRun``, the daily schedule is started, and headless Chromium takes a screenshot of the
asset page with the image previews.

The previews are the Markdown metadata ``kie.preview`` (thumbnails as ``data:`` URIs). The UI
inlines Markdown metadata only under 1,000 characters and otherwise shows a ``[Show Markdown]``
button that opens it in a dialog, so no URL shows the thumbnails by itself: the screenshot test
drives Chromium over the DevTools protocol (``--remote-debugging-pipe``, no extra package) to
click that button, then captures the page and its DOM.

Artifacts: ``test-artifacts/asset-page.png`` and ``.html`` (gitignored). With
``KIE_UPDATE_DOCS_SCREENSHOT=1`` the screenshot is also copied to ``docs/asset-page.png``.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from dagster_kie._process import free_port
from dagster_kie.local_stack import DAGSTER_YAML as LOCAL_DAGSTER_YAML
from dagster_kie.local_stack import LocalStack, local_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "asset-page.png"
REPO = {"repositoryLocationName": "definitions", "repositoryName": "__repository__"}
JOB = "kie_generate_images"
PARTITIONS = "kie_prompt_files"
ASSETS = ("generation_requests", "submitted_tasks", "generated_images")
SENSOR = "kie_prompt_sensor"
SCHEDULE = "kie_daily_batch"
WINDOW = (1400, 1000)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", f"--window-size={WINDOW[0]},{WINDOW[1]}",
)  # fmt: skip
FINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

DAGSTER_YAML = LOCAL_DAGSTER_YAML + "  config:\n    dequeue_interval_seconds: 1\n"

SENSOR_FILE = "sensor-batch.jsonl"
SENSOR_PROMPTS = [
    {"id": "fox", "prompt": "a red fox in the snow", "image_size": "square", "num_images": "2"},
    {"id": "sea", "prompt": "a calm sea at dawn", "image_size": "landscape_16_9"},
]
LAUNCH_FILE = "launched.jsonl"
LAUNCH_PROMPTS = [
    {"id": "owl", "prompt": "an owl at night", "image_size": "square_hd", "num_images": "2"},
    {"id": "tram", "prompt": "a tram in the rain", "image_size": "portrait_4_3"},
    {"id": "dune", "prompt": "dunes at noon", "image_size": "landscape_4_3"},
]


# --------------------------------------------------------------------------------------------
# dagster dev as a fixture
# --------------------------------------------------------------------------------------------


@dataclass
class DagsterDev:
    """A running ``dagster dev`` and what it points at."""

    url: str
    stack: LocalStack
    prompts: Path
    log_path: Path
    s3: Any
    materialized: list[str] = field(default_factory=list)

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        reply = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        reply.raise_for_status()
        body = reply.json()
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def write_prompts(self, name: str, records: list[dict[str, Any]]) -> str:
        (self.prompts / name).write_text(
            "".join(json.dumps(record) + "\n" for record in records), encoding="utf-8"
        )
        return name

    def runs(self, partition: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($tags: [ExecutionTag!]) {
                runsOrError(filter: {tags: $tags}) {
                    __typename ... on Runs { results { runId status tags { key value } } }
                }
            }""",
            tags=[{"key": "dagster/partition", "value": partition}],
        )
        result = data["runsOrError"]
        assert result["__typename"] == "Runs", result
        runs: list[dict[str, Any]] = result["results"]
        return runs

    def wait_for_run(self, run_id: str, timeout: float = 150.0) -> str:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            data = self.graphql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id
            )
            status = data["runOrError"]["status"]
            if status in FINAL_STATUSES:
                return str(status)
            time.sleep(1)
        message = f"run {run_id} still {status} after {timeout:.0f} s\n{self.log_tail()}"
        raise AssertionError(message)

    def image_keys(self, request_ids: list[str]) -> dict[str, list[str]]:
        """The stored ``.png`` keys of each request id (``kie/<model>/<id>/<task>/<n>.png``)."""
        keys: dict[str, list[str]] = {request_id: [] for request_id in request_ids}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.stack.bucket, Prefix="kie/"):
            for item in page.get("Contents", []):
                key = item["Key"]
                parts = key.split("/")
                if key.startswith("kie/_") or not key.endswith(".png") or len(parts) < 4:
                    continue
                if parts[-3] in keys:
                    keys[parts[-3]].append(key)
        return keys

    def assert_images_stored(self, records: list[dict[str, Any]]) -> None:
        found = self.image_keys([record["id"] for record in records])
        for record in records:
            keys = found[record["id"]]
            assert len(keys) == int(record.get("num_images", "1")), (record["id"], keys)
            for key in keys:
                body = self.s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
                with Image.open(io.BytesIO(body)) as image:
                    assert image.format == "PNG"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "dagster dev output (tail):\n" + "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (dagster dev shuts its tree down), then SIGKILL to its process group, by PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    with suppress(subprocess.TimeoutExpired):
        process.wait(10)


class _PortTaken(RuntimeError):
    """The webserver's port was taken between choosing it and binding it."""


def _wait_until_ready(dev: DagsterDev, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}\n{dev.log_tail()}")
        if "address already in use" in dev.log_tail():
            raise _PortTaken(dev.log_tail())
        try:
            if httpx.get(f"{dev.url}/server_info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        raise RuntimeError(f"dagster dev did not answer /server_info\n{dev.log_tail()}")
    # The webserver answers before the code location has loaded.
    while time.monotonic() < deadline:
        data = dev.graphql(
            """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"]["locationEntries"]
        loaded = [entry for entry in entries if entry["loadStatus"] == "LOADED"]
        if loaded:
            location = loaded[0]["locationOrLoadError"]
            assert location["__typename"] == "RepositoryLocation", location
            return
        time.sleep(0.3)
    raise RuntimeError(f"the code location did not load\n{dev.log_tail()}")


def _start_dagster_dev(
    stack: LocalStack, env: dict[str, str], prompts: Path, log_path: Path
) -> tuple[DagsterDev, subprocess.Popen[bytes]]:
    """``dagster dev`` on a free port, ready to answer; a fresh port if the chosen one was taken.

    The webserver binds its port seconds after the port is chosen (the daemon and the code server
    start first); meanwhile any outbound connection on the machine may be given that port.
    """
    dagster = str(Path(sys.executable).with_name("dagster"))
    for attempt in range(3):
        port = free_port()
        dev = DagsterDev(
            url=f"http://127.0.0.1:{port}",
            stack=stack,
            prompts=prompts,
            log_path=log_path,
            s3=stack.s3.client(),
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # A background shell hands SIGINT down as ignored; dagster dev stops its
                # children with SIGINT, so it must be the default again.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        try:
            _wait_until_ready(dev, process)
            return dev, process
        except _PortTaken:
            _stop(process)
            if attempt == 2:
                raise
        except BaseException:
            _stop(process)
            raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    """Local stack + ``dagster dev`` on a free port, stopped by PID at the end."""
    base = tmp_path_factory.mktemp("dagster-dev")
    home, prompts = base / "dagster_home", base / "prompts"
    home.mkdir()
    prompts.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with local_stack(bucket="kie-ui-test", data_dir=base / "s3", task_duration=0.5) as stack:
        env = {**os.environ, **stack.env()}
        for name in ("KIE_CALLBACK_URL", "DAGSTER_CLOUD_DEPLOYMENT_NAME"):
            env.pop(name, None)
        env.update(
            DAGSTER_HOME=str(home),
            KIE_PROMPTS_DIR=str(prompts),
            KIE_S3_PREFIX="kie",
            KIE_POLL_INTERVAL_SCALE="0.1",
        )
        dev, process = _start_dagster_dev(stack, env, prompts, base / "dagster-dev.log")
        try:
            yield dev
        finally:
            _stop(process)


# --------------------------------------------------------------------------------------------
# GraphQL helpers
# --------------------------------------------------------------------------------------------

SENSOR_QUERY = """query($s: SensorSelector!) {
    sensorOrError(sensorSelector: $s) {
        __typename
        ... on Sensor { sensorState { id status ticks(limit: 20) {
            status timestamp runIds skipReason error { message } } } }
    }
}"""


def _sensor_state(dev: DagsterDev) -> dict[str, Any]:
    data = dev.graphql(SENSOR_QUERY, s={**REPO, "sensorName": SENSOR})
    assert data["sensorOrError"]["__typename"] == "Sensor", data
    state: dict[str, Any] = data["sensorOrError"]["sensorState"]
    return state


def _launch(dev: DagsterDev, partition: str) -> str:
    added = dev.graphql(
        """mutation($r: RepositorySelector!, $p: String!, $k: String!) {
            addDynamicPartition(repositorySelector: $r, partitionsDefName: $p, partitionKey: $k) {
                __typename ... on PythonError { message } ... on UnauthorizedError { message }
            }
        }""",
        r=REPO,
        p=PARTITIONS,
        k=partition,
    )["addDynamicPartition"]
    assert added["__typename"] in {"AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"}
    params = {
        "selector": {
            **REPO,
            "jobName": JOB,
            "assetSelection": [{"path": ["kie", name]} for name in ASSETS],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = dev.graphql(
        """mutation($p: ExecutionParams!) {
            launchRun(executionParams: $p) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on PythonError { message }
                ... on InvalidSubsetError { message }
                ... on RunConfigValidationInvalid { errors { message } }
            }
        }""",
        p=params,
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_prompt_sensor_picks_up_a_new_file(dagster_dev: DagsterDev) -> None:
    dev = dagster_dev
    partition = dev.write_prompts(SENSOR_FILE, SENSOR_PROMPTS)
    started = dev.graphql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
            __typename ... on Sensor { sensorState { id status } } ... on PythonError { message }
        } }""",
        s={**REPO, "sensorName": SENSOR},
    )["startSensor"]
    assert started["__typename"] == "Sensor", started
    assert started["sensorState"]["status"] == "RUNNING"
    state_id = started["sensorState"]["id"]
    try:
        # The first tick (right away) adds the partition and requests one run.
        deadline = time.monotonic() + 90
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not runs:
            runs = dev.runs(partition)
            time.sleep(1)
        assert len(runs) == 1, f"no sensor run for {partition}\n{dev.log_tail()}"
        run = runs[0]
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/sensor_name"] == SENSOR
        assert tags["dagster-kie/trigger"] == "sensor"
        assert dev.wait_for_run(run["runId"]) == "SUCCESS", dev.log_tail()
        dev.materialized.append(partition)
        dev.assert_images_stored(SENSOR_PROMPTS)
        creates = dev.stack.emulator.admin.stats()["create_calls"]

        # The next tick (minimum interval 30 s) sees the same file version: no new run.
        # A tick is listed as STARTED while it is still evaluating; wait for one that finished.
        ticks = _sensor_state(dev)["ticks"]
        first = next(tick for tick in ticks if run["runId"] in tick["runIds"])
        deadline = time.monotonic() + 90
        later: list[dict[str, Any]] = []
        finished: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not finished:
            time.sleep(2)
            ticks = _sensor_state(dev)["ticks"]
            later = [tick for tick in ticks if tick["timestamp"] > first["timestamp"]]
            finished = [tick for tick in later if tick["status"] != "STARTED"]
        assert finished, f"no finished second sensor tick: {later}\n{dev.log_tail()}"
        assert all(not tick["runIds"] for tick in later), later
        assert all(tick["status"] == "SKIPPED" for tick in finished), finished
        assert all("No new or changed prompt files" in t["skipReason"] for t in finished)
        assert [r["runId"] for r in dev.runs(partition)] == [run["runId"]]
        assert dev.stack.emulator.admin.stats()["create_calls"] == creates
    finally:
        stopped = dev.graphql(
            """mutation($id: String!) { stopSensor(id: $id) { __typename
                ... on StopSensorMutationResult { instigationState { status } } } }""",
            id=state_id,
        )["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED"


def test_launch_run_through_graphql(dagster_dev: DagsterDev) -> None:
    dev = dagster_dev
    creates = dev.stack.emulator.admin.stats()["create_calls"]
    partition = dev.write_prompts(LAUNCH_FILE, LAUNCH_PROMPTS)

    run_id = _launch(dev, partition)

    assert dev.wait_for_run(run_id) == "SUCCESS", dev.log_tail()
    dev.materialized.append(partition)
    dev.assert_images_stored(LAUNCH_PROMPTS)
    assert dev.stack.emulator.admin.stats()["create_calls"] == creates + len(LAUNCH_PROMPTS)
    assert [run["runId"] for run in dev.runs(partition)] == [run_id]


def test_daily_schedule_starts(dagster_dev: DagsterDev) -> None:
    dev = dagster_dev
    started = dev.graphql(
        """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) {
            __typename
            ... on ScheduleStateResult { scheduleState { id status } }
            ... on PythonError { message }
            ... on UnauthorizedError { message }
        } }""",
        s={**REPO, "scheduleName": SCHEDULE},
    )["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    assert started["scheduleState"]["status"] == "RUNNING"
    stopped = dev.graphql(
        """mutation($id: String!) { stopRunningSchedule(id: $id) { __typename
            ... on ScheduleStateResult { scheduleState { status } } } }""",
        id=started["scheduleState"]["id"],
    )["stopRunningSchedule"]
    assert stopped["scheduleState"]["status"] == "STOPPED"


# --------------------------------------------------------------------------------------------
# Screenshot: headless Chromium over the DevTools pipe
# --------------------------------------------------------------------------------------------


def _find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed: the UI screenshot test needs it. Install it with "
        "`apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this in CI)."
    )


class DevTools:
    """Chromium with ``--remote-debugging-pipe``: CDP messages over fds 3 and 4, NUL-framed."""

    def __init__(self, binary: str, user_data_dir: Path, log_path: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Park the child's ends above fd 10, so that moving them to 3 and 4 never clobbers one.
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def child_fds() -> None:
            os.dup2(high_r, 3)  # dup2 to a new number makes them inheritable
            os.dup2(high_w, 4)

        argv = [
            binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
            "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=False,
                preexec_fn=child_fds,
                start_new_session=True,
            )
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self._write_fd, self._read_fd = to_chrome_w, from_chrome_r
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if ready:
                chunk = os.read(self._read_fd, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def open_page(self) -> None:
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(target for target in targets if target["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=WINDOW[0],
            height=WINDOW[1],
            deviceScaleFactor=1,
            mobile=False,
        )

    def evaluate(self, expression: str) -> Any:
        reply = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        with suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # helpers left in the group, if any
        for fd in (self._write_fd, self._read_fd):
            with suppress(OSError):
                os.close(fd)


# The leaf element reading "[Show Markdown]" in the metadata row of kie.preview.
_PREVIEW_BUTTON = """(() => {
  const rows = [...document.querySelectorAll('tr')].filter(
    row => row.firstElementChild && row.firstElementChild.textContent.trim() === 'kie.preview');
  if (!rows.length) return null;
  return [...rows[0].querySelectorAll('*')].find(
    el => el.children.length === 0 && el.textContent.trim() === '[Show Markdown]') || null;
})()"""
_PREVIEW_IMAGES = """[...document.querySelectorAll('img')].filter(img =>
  img.src.startsWith('data:image/jpeg;base64,') && img.complete && img.naturalWidth > 0).length"""


def test_asset_page_screenshot_shows_previews(dagster_dev: DagsterDev, tmp_path: Path) -> None:
    dev = dagster_dev
    chromium = _find_chromium()
    if not dev.materialized:  # run on its own: materialize something to show
        partition = dev.write_prompts(LAUNCH_FILE, LAUNCH_PROMPTS)
        assert dev.wait_for_run(_launch(dev, partition)) == "SUCCESS", dev.log_tail()
        dev.materialized.append(partition)
    latest = dev.materialized[-1]
    expected_images = sum(
        int(record.get("num_images", "1"))
        for record in (LAUNCH_PROMPTS if latest == LAUNCH_FILE else SENSOR_PROMPTS)
    )
    assert dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True  # no first-load modal

    # The Events tab selects the latest materialization and lists its metadata.
    url = f"{dev.url}/assets/kie/generated_images?view=events"
    ARTIFACTS.mkdir(exist_ok=True)
    browser = DevTools(chromium, tmp_path / "chromium-profile", ARTIFACTS / "chromium.log")
    try:
        browser.open_page()
        browser.send("Page.navigate", url=url)
        browser.wait_for(
            f"document.body && document.body.innerText.includes('{latest}') && !!{_PREVIEW_BUTTON}",
            timeout=60,
            what="the kie.preview metadata of the latest materialization",
        )
        browser.evaluate(f"{_PREVIEW_BUTTON}.click()")
        shown = browser.wait_for(
            f"({_PREVIEW_IMAGES}) >= {expected_images} && ({_PREVIEW_IMAGES})",
            timeout=20,
            what=f"{expected_images} decoded preview images",
        )
        time.sleep(0.8)  # the dialog's opening transition
        png = browser.screenshot()
        html = browser.evaluate("document.documentElement.outerHTML")
    finally:
        browser.close()

    shot, page = ARTIFACTS / "asset-page.png", ARTIFACTS / "asset-page.html"
    shot.write_bytes(png)
    page.write_text(html, encoding="utf-8")
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert colours is not None and len(colours) > 500, "the screenshot looks blank"
    assert shown >= expected_images
    assert len(re.findall(r'<img\b[^>]*\bsrc="data:image/jpeg;base64,', html)) >= expected_images
    assert "kie.preview" in html and latest in html
    if os.environ.get("KIE_UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
