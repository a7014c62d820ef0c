"""Both clients against the real emulator process: end to end, uploads, remix, every fault."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dagster_kie.client import AsyncKieClient
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.errors import (
    GenerationFailedError,
    MalformedResponseError,
    NotFoundError,
    ServerError,
    TransportError,
    WaitTimeoutError,
)
from dagster_kie.models import IMAGE_SIZE_DIMENSIONS, parse_request
from dagster_kie.polling import PollingPolicy
from dagster_kie.rate_limit import RateLimits

from .conftest import EMULATOR_SETTINGS, live_options
from .helpers import Api, png_bytes

pytestmark = pytest.mark.integration

SEEDS = json.loads((Path(__file__).parents[1] / "data" / "seed_requests.json").read_text())
FOX: dict[str, Any] = {
    "model": "ideogram/v3-text-to-image",
    "input": {"prompt": "A red fox in the snow"},
}


def decode(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
        return int(width), int(height)


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_size", "num_images"), [("square_hd", 1), ("landscape_16_9", 2), ("portrait_4_3", 1)]
)
def test_generate_download_and_decode(live: Api, image_size: str, num_images: int) -> None:
    request = {**FOX, "input": {**FOX["input"], "image_size": image_size,
                                "num_images": str(num_images)}}  # fmt: skip
    states: list[str] = []
    record = live.generate(request, on_update=lambda rec: states.append(rec.state))
    assert record.succeeded and states[-1] == "success"
    assert len(record.result_urls) == num_images
    for url in record.result_urls:
        content_type, _, data = live.download(url)
        assert content_type == "image/png"
        assert decode(data) == IMAGE_SIZE_DIMENSIONS[image_size]


def test_credits_go_down_by_what_tasks_cost(live: Api, emu: EmulatorProcess) -> None:
    before = live.get_credits()
    record = live.generate({**FOX, "input": {**FOX["input"], "num_images": "2"}})
    assert record.credits_consumed == pytest.approx(3.2)
    assert live.get_credits() == pytest.approx(before - 3.2)


def test_unknown_task_is_not_found(live: Api) -> None:
    with pytest.raises(NotFoundError):
        live.get_task("task_that_never_existed")


def test_learned_polling_needs_few_polls(live: Api, emu: EmulatorProcess) -> None:
    for _ in range(8):
        live.generate(FOX)
    polls = emu.admin.stats()["polls_per_task"]
    counts = list(polls.values())
    assert len(counts) == 8
    assert counts[-4:] == [1, 1, 1, 1]  # 0.3 s tasks, learned: one poll each
    assert live.client.polling_stats.median_polls <= 3


# --- uploads --------------------------------------------------------------------------------------


def test_uploads_with_all_three_methods(live: Api, tmp_path: Path) -> None:
    path = tmp_path / "input.png"
    path.write_bytes(png_bytes((40, 30), "green"))
    by_base64 = live.upload_file(png_bytes((20, 20), "blue"))
    by_stream = live.upload_file(path, method="stream")
    by_url = live.upload_file(by_base64.url, file_name="copy.png")
    for uploaded, size in ((by_base64, (20, 20)), (by_stream, (40, 30)), (by_url, (20, 20))):
        content_type, _, data = live.download(uploaded.url)
        assert content_type == "image/png"
        assert decode(data) == size
    reframed = live.generate({"model": "ideogram/v3-reframe", "input": {
        "image_url": by_stream.url, "image_size": "landscape_4_3", "rendering_speed": "TURBO",
        "style": "AUTO", "num_images": "1"}})  # fmt: skip
    assert decode(live.download(reframed.result_urls[0])[2]) == (1024, 768)


# --- expired result URLs --------------------------------------------------------------------------


def test_expired_result_url_is_recovered_through_download_url(
    live: Api, emu: EmulatorProcess
) -> None:
    emu.admin.set_faults(expire_result_urls=True)
    record = live.generate(FOX)
    _, final_url, data = live.download(record.result_urls[0])
    assert final_url != record.result_urls[0]
    assert decode(data) == (1024, 1024)
    stats = emu.admin.stats()
    assert stats["downloads_forbidden"] >= 1
    assert stats["query_calls"]["download_url"] == 1


# --- remix ----------------------------------------------------------------------------------------


REMIX = {"prompt": "the same scene in watercolour", "aspect_ratio": "ASPECT_16_9"}


def test_remix_queued_task(live: Api) -> None:
    queued = live.remix(png_bytes((64, 64)), REMIX)
    assert queued.task_id and queued.status == "submitted"
    deadline = time.monotonic() + 15
    result = queued
    while result.status != "succeed":
        assert time.monotonic() < deadline, result
        time.sleep(0.1)
        result = live.get_remix_task(queued.task_id)
    assert len(result.image_urls) == 1
    assert decode(live.download(result.image_urls[0])[2])[0] > 0


@pytest.fixture(scope="module")
def sync_remix_emulator() -> Iterator[EmulatorProcess]:
    """An emulator answering Remix synchronously (Ideogram's own shape)."""
    with EmulatorProcess(**EMULATOR_SETTINGS, remix_mode="sync") as emu:
        yield emu


def test_remix_synchronous_images(
    sync_remix_emulator: EmulatorProcess, make_live: Callable[..., Api]
) -> None:
    api = make_live(sync_remix_emulator)
    result = api.remix(png_bytes((64, 64)), {**REMIX, "num_images": 2})
    assert result.task_id is None
    assert len(result.image_urls) == 2
    for url in result.image_urls:
        assert decode(api.download(url)[2])[0] > 0


# --- faults ---------------------------------------------------------------------------------------


def test_429_storm_on_create_is_retried_without_extra_tasks(
    live: Api, emu: EmulatorProcess
) -> None:
    emu.admin.set_faults(rate_limit_storm={"count": 2, "endpoint": "create"})
    assert live.create_task(FOX)
    stats = emu.admin.stats()
    assert (stats["create_calls"], stats["tasks_created"]) == (3, 1)


def test_455_window_is_waited_out(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(maintenance={"duration": 0.6, "endpoint": "create"})
    assert live.generate(FOX).succeeded
    assert emu.admin.stats()["tasks_created"] == 1


def test_500_burst_on_queries_is_retried(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(server_error={"count": 3, "endpoint": "record_info"})
    assert live.generate(FOX).succeeded
    assert emu.admin.stats()["faults_triggered"]["server_error"] == 3


def test_500_on_create_is_not_resent(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(server_error={"count": 1, "endpoint": "create"})
    with pytest.raises(ServerError):
        live.create_task(FOX)
    assert emu.admin.stats()["create_calls"] == 1


def test_failed_task_raises(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(fail_tasks={"count": 1, "fail_msg": "Image generation failed."})
    with pytest.raises(GenerationFailedError) as caught:
        live.generate(FOX)
    assert caught.value.fail_code == "501"
    assert caught.value.task_id
    assert live.generate(FOX).succeeded  # the next task is fine


def test_slow_task_times_out_and_can_be_resumed(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(slow_tasks={"count": 1, "multiplier": 10})
    task_id = live.create_task(FOX)
    with pytest.raises(WaitTimeoutError) as caught:
        live.wait(task_id, timeout=0.5)
    assert caught.value.retryable and caught.value.task_id == task_id
    assert live.wait(task_id, timeout=30).succeeded


@pytest.mark.parametrize("when", ["before", "after"])
def test_dropped_connection_on_create_is_never_resent(
    live: Api, emu: EmulatorProcess, when: str
) -> None:
    emu.admin.set_faults(drop_connection={"count": 1, "endpoint": "create", "when": when})
    with pytest.raises(TransportError) as caught:
        live.create_task(FOX)
    assert caught.value.request_sent is True
    stats = emu.admin.stats()
    assert stats["create_calls"] == 1  # no second createTask ...
    assert stats["tasks_created"] == (1 if when == "after" else 0)  # ... so no second task


def test_dropped_connection_on_query_is_retried(live: Api, emu: EmulatorProcess) -> None:
    task_id = live.create_task(FOX)
    emu.admin.set_faults(drop_connection={"count": 2, "endpoint": "record_info", "mode": "partial"})
    assert live.wait(task_id).succeeded


def test_malformed_create_reply_is_not_resent(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(malformed_json={"count": 1, "endpoint": "create"})
    with pytest.raises(MalformedResponseError):
        live.create_task(FOX)
    stats = emu.admin.stats()
    assert (stats["create_calls"], stats["tasks_created"]) == (1, 1)


def test_malformed_query_reply_is_retried(live: Api, emu: EmulatorProcess) -> None:
    emu.admin.set_faults(malformed_json={"count": 2, "endpoint": "record_info"})
    assert live.generate(FOX).succeeded


def test_connection_refused_is_retried_then_reported(make_live: Callable[..., Api],
                                                     emu: EmulatorProcess) -> None:  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    api = make_live(emu, base_url=f"http://127.0.0.1:{closed_port}", max_retries=2)
    with pytest.raises(TransportError) as caught:
        api.create_task(FOX)
    assert caught.value.request_sent is False


def test_wrong_key_is_authentication_error(make_live: Callable[..., Api],
                                           emu: EmulatorProcess) -> None:  # fmt: skip
    from dagster_kie.errors import AuthenticationError

    api = Api("sync", **live_options(emu, api_key="not-the-key"))
    try:
        with pytest.raises(AuthenticationError):
            api.get_credits()
    finally:
        api.close()


# --- pacing ---------------------------------------------------------------------------------------


def test_a_burst_goes_out_at_the_allowed_pace_without_429() -> None:
    limits = {"create_limit": 5, "create_window": 1.0, "query_limit": 5, "query_window": 1.0}
    with EmulatorProcess(**{**EMULATOR_SETTINGS, **limits}) as emu:

        async def burst() -> int:
            async with AsyncKieClient(**live_options(
                emu, rate_limits=RateLimits(create_per_window=5, create_window_s=1.0,
                                            queries_per_second=5.0))) as client:  # fmt: skip
                requests = [{**FOX, "input": {"prompt": f"fox {i}"}} for i in range(20)]
                records = await asyncio.gather(*(client.generate(r) for r in requests))
                return sum(record.succeeded for record in records)

        assert asyncio.run(burst()) == 20
        stats = emu.admin.stats()
        assert stats["rate_limited"].get("total", 0) == 0
        assert stats["tasks_created"] == 20


def test_a_burst_with_spread_durations_keeps_the_poll_budget_and_ends_promptly() -> None:
    """60 tasks sent together, durations spread widely (lognormal, sigma 0.5). The first tasks
    to finish are the short ones: they must not make the rest look overdue (median polls stay
    within 3), while the last ones are polled from the spare query budget."""
    settings = {"task_duration": 1.5, "task_duration_dist": "lognormal", "task_jitter": 0.5,
                "query_limit": 400, "query_window": 1.0}  # fmt: skip
    with EmulatorProcess(**{**EMULATOR_SETTINGS, **settings}) as emu:

        async def burst() -> list[bool]:
            async with AsyncKieClient(**live_options(
                emu, rate_limits=RateLimits(create_per_window=100, queries_per_second=400.0),
                polling=PollingPolicy(interval_scale=0.25))) as client:  # fmt: skip
                requests = [{**FOX, "input": {"prompt": f"fox {i}"}} for i in range(60)]
                records = await asyncio.gather(*(client.generate(r) for r in requests))
                return [record.succeeded for record in records]

        assert all(asyncio.run(burst()))
        stats = emu.admin.stats()
    assert stats["rate_limited"]["total"] == 0
    polls = sorted(stats["polls_per_task"].values())
    assert len(polls) == 60
    assert polls[len(polls) // 2] <= 3
    assert max(polls) > 3  # the overdue ones were polled more often
    lags = stats["detection_lag_per_task"]
    assert len(lags) == 60
    assert all(lag >= 0 for lag in lags.values())


# --- the seeds' own requests ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS, ids=[s["seed"][:3] for s in SEEDS])
def test_seed_requests_validate(seed: dict[str, Any]) -> None:
    request = parse_request(seed["body"])
    assert request.model == seed["body"]["model"]
    assert request.body()["input"] == {**request.body()["input"], **seed["body"]["input"]}


@pytest.mark.parametrize("seed", SEEDS, ids=[s["seed"][:3] for s in SEEDS])
def test_seed_requests_run_against_the_emulator(live: Api, seed: dict[str, Any]) -> None:
    body = json.loads(json.dumps(seed["body"]))
    body.pop("callBackUrl")  # your-domain.com is a placeholder
    uploaded = live.upload_file(png_bytes((48, 48), "purple"))
    if "image_url" in body["input"]:
        body["input"]["image_url"] = uploaded.url
    if "reference_image_urls" in body["input"]:
        body["input"]["reference_image_urls"] = [uploaded.url]
    record = live.generate(parse_request(body))
    assert record.succeeded
    size = IMAGE_SIZE_DIMENSIONS[body["input"]["image_size"]]
    assert decode(live.download(record.result_urls[0])[2]) == size


def test_record_info_null_right_after_creation_is_waited_out(
    make_live: Callable[..., Api],
) -> None:
    """kie.ai may answer "recordInfo is null" for a task created a moment ago."""
    with EmulatorProcess(**{**EMULATOR_SETTINGS, "record_delay": 0.4}) as emu:
        api = make_live(emu)
        task_id = api.create_task(FOX)
        assert api.get_task(task_id).task_id == task_id
        assert api.generate(FOX).succeeded
