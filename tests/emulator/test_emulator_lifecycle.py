"""Task lifecycle, recordInfo, result images, credits and download-url."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from dagster_kie.emulator import IMAGE_SIZE_DIMENSIONS, EmulatorProcess

from .helpers import Kie, result_urls

pytestmark = pytest.mark.integration


def test_create_reply_shape(kie: Kie) -> None:
    reply = kie.create({"model": "ideogram/v3-text-to-image", "input": {"prompt": "hi"}})
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 200 and body["msg"] == "success"
    assert re.fullmatch(r"task_ideogram_\d+", body["data"]["taskId"])


def test_lifecycle_to_success(kie: Kie) -> None:
    body = {
        "model": "ideogram/v3-text-to-image",
        "callBackUrl": "http://127.0.0.1:9/unused",
        "input": {"prompt": "A lighthouse at dusk", "image_size": "landscape_16_9"},
    }
    task_id = kie.create(body).json()["data"]["taskId"]
    first = kie.record(task_id)
    assert first["code"] == 200
    data = first["data"]
    assert data["state"] in ("waiting", "queuing", "generating")
    assert data["resultJson"] == "" and data["completeTime"] is None and data["costTime"] is None
    assert data["failCode"] is None and data["failMsg"] in ("", None)
    assert json.loads(data["param"]) == body
    assert data["model"] == "ideogram/v3-text-to-image" and data["taskId"] == task_id
    seen = {data["state"]}
    while data["state"] not in ("success", "fail"):
        time.sleep(0.02)
        data = kie.record(task_id)["data"]
        seen.add(data["state"])
        assert 0 <= data["progress"] <= 100
    assert data["state"] == "success"
    assert len(seen) >= 2
    assert data["progress"] == 100
    assert data["completeTime"] >= data["createTime"]
    assert data["costTime"] == data["completeTime"] - data["createTime"]
    assert data["updateTime"] == data["completeTime"]
    assert data["creditsConsumed"] == pytest.approx(1.6)
    urls = result_urls(data)
    assert len(urls) == 1
    assert re.search(r"/files/task_ideogram_\d+/0\.png\?expires=\d+&sig=\w+$", urls[0])


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("ideogram/v3-text-to-image", {"prompt": "a castle"}),
        (
            "ideogram/character",
            {"prompt": "a woman", "reference_image_urls": ["http://127.0.0.1:1/a.png"]},
        ),
        (
            "ideogram/v3-reframe",
            {
                "image_url": "http://127.0.0.1:1/a.png",
                "rendering_speed": "TURBO",
                "style": "AUTO",
            },
        ),
    ],
)
@pytest.mark.parametrize("size", ["square", "portrait_16_9", "landscape_4_3"])
def test_images_have_size_and_count(
    kie: Kie, model: str, extra: dict[str, object], size: str
) -> None:
    task_id = kie.create(
        {"model": model, "input": {**extra, "image_size": size, "num_images": "3"}}
    ).json()["data"]["taskId"]
    data = kie.wait(task_id)
    urls = result_urls(data)
    assert len(urls) == 3
    for url in urls:
        reply = httpx.get(url)
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(reply.content)) as img:
            img.load()
            assert img.format == "PNG"
            assert img.size == IMAGE_SIZE_DIMENSIONS[size]


def test_default_size_is_square_hd(kie: Kie) -> None:
    data = kie.wait(kie.create_ok())
    content = httpx.get(result_urls(data)[0]).content
    assert Image.open(io.BytesIO(content)).size == (1024, 1024)


def test_seed_makes_same_bytes(kie: Kie) -> None:
    a = kie.wait(kie.create_ok("same prompt", seed=42, num_images="2"))
    b = kie.wait(kie.create_ok("same prompt", seed=42, num_images="2"))
    c = kie.wait(kie.create_ok("same prompt", seed=43, num_images="2"))
    bytes_a = [httpx.get(u).content for u in result_urls(a)]
    bytes_b = [httpx.get(u).content for u in result_urls(b)]
    bytes_c = [httpx.get(u).content for u in result_urls(c)]
    assert bytes_a == bytes_b
    assert bytes_a[0] != bytes_a[1]  # each index differs
    assert bytes_a[0] != bytes_c[0]


def test_record_info_errors(kie: Kie) -> None:
    assert kie.record("task_ideogram_000") == {
        "code": 422,
        "msg": "recordInfo is null",
        "data": None,
    }
    reply = kie.http.get(kie.base + "/api/v1/jobs/recordInfo")
    assert reply.status_code == 200
    assert reply.json()["code"] == 400
    assert reply.json()["msg"] == "taskId parameter is required"


def test_record_delay(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(record_delay=0.3, task_duration=0.5)
    kie = Kie(emu)
    task_id = kie.create_ok()
    assert kie.record(task_id)["msg"] == "recordInfo is null"
    time.sleep(0.35)
    assert kie.record(task_id)["code"] == 200
    kie.close()


def test_credits_charged_on_success_only(kie: Kie) -> None:
    before = kie.credit()
    assert before == 10000
    kie.emu.admin.set_faults(fail_tasks={"count": 1})
    failed = kie.wait(kie.create_ok(num_images="4"))
    assert failed["state"] == "fail" and failed["failCode"] == "501" and failed["failMsg"]
    assert failed["creditsConsumed"] == 0 and failed["resultJson"] == ""
    assert kie.credit() == before
    ok = kie.wait(kie.create_ok(num_images="4"))
    assert ok["creditsConsumed"] == pytest.approx(6.4)
    assert kie.credit() == pytest.approx(before - 6.4)
    assert kie.emu.admin.stats()["credits_balance"] == pytest.approx(before - 6.4)


def test_insufficient_credits_402(kie: Kie) -> None:
    kie.emu.admin.reset(credits=3.0)
    assert kie.create_ok(num_images="1")  # 1.6 reserved
    reply = kie.create(
        {"model": "ideogram/v3-text-to-image", "input": {"prompt": "x", "num_images": "1"}}
    )
    assert reply.status_code == 200
    assert reply.json()["code"] == 402 and reply.json()["data"] is None
    stats = kie.emu.admin.stats()
    assert stats["tasks_created"] == 1 and stats["errors_by_code"]["402"] == 1


def test_download_url(kie: Kie) -> None:
    data = kie.wait(kie.create_ok(num_images="2"))
    url = result_urls(data)[1]
    reply = kie.http.post(kie.base + "/api/v1/common/download-url", json={"url": url}).json()
    assert reply["code"] == 200
    fresh = reply["data"]
    assert isinstance(fresh, str) and fresh != url
    expires = int(parse_qs(urlsplit(fresh).query)["expires"][0])
    assert 19 * 60 < expires - time.time() <= 20 * 60 + 1
    assert httpx.get(fresh).content == httpx.get(url).content
    for foreign in ("https://example.com/files/x/0.png", kie.base + "/files/nope/0.png", "x"):
        bad = kie.http.post(kie.base + "/api/v1/common/download-url", json={"url": foreign})
        assert bad.json()["code"] == 422 and "url" in bad.json()["msg"]
    missing = kie.http.post(kie.base + "/api/v1/common/download-url", json={})
    assert missing.json()["code"] == 422


def test_bad_signature_and_expired_url_403(kie: Kie) -> None:
    url = result_urls(kie.wait(kie.create_ok()))[0]
    tampered = re.sub(r"sig=\w+", "sig=0000", url)
    assert httpx.get(tampered).status_code == 403
    no_sig = url.split("?")[0]
    assert httpx.get(no_sig).status_code == 403
    expired = re.sub(r"expires=\d+", "expires=1000", url)
    assert httpx.get(expired).status_code == 403
    stats = kie.emu.admin.stats()
    assert stats["downloads_forbidden"] == 3


def test_credit_endpoint(kie: Kie) -> None:
    reply = kie.http.get(kie.base + "/api/v1/chat/credit").json()
    assert reply == {"code": 200, "msg": "success", "data": 10000}


def test_stats_counts(kie: Kie) -> None:
    task_id = kie.create_ok()
    kie.wait(task_id)
    kie.record(task_id)
    stats = kie.emu.admin.stats()
    assert stats["create_calls"] == 1 and stats["tasks_created"] == 1
    assert stats["polls_per_task"][task_id] >= 2
    assert stats["query_calls"]["total"] == stats["query_calls"]["record_info"]
    assert stats["tasks_by_state"] == {"success": 1}
