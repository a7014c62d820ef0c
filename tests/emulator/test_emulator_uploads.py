"""The three upload endpoints on their own base URL, and the files they serve."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from dagster_kie.emulator import EmulatorProcess

from .helpers import Kie, png_bytes

pytestmark = pytest.mark.integration


def _check_ok(reply: httpx.Response, name: str, path: str, data: bytes, mime: str) -> str:
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True and body["code"] == 200
    assert body["msg"] == "File uploaded successfully"
    info = body["data"]
    assert set(info) == {
        "fileName",
        "filePath",
        "downloadUrl",
        "fileSize",
        "mimeType",
        "uploadedAt",
    }
    assert info["fileName"] == name
    assert info["filePath"] == f"{path}/{name}"
    assert info["fileSize"] == len(data) and info["mimeType"] == mime
    assert info["uploadedAt"].endswith("Z")
    served = httpx.get(info["downloadUrl"])
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"].startswith(mime)
    return str(info["downloadUrl"])


def test_stream_upload(kie: Kie) -> None:
    data = png_bytes()
    reply = kie.http.post(
        kie.upload_base + "/api/file-stream-upload",
        files={"file": ("local.png", data, "image/png")},
        data={"uploadPath": "images/user-uploads", "fileName": "cat.png"},
    )
    _check_ok(reply, "cat.png", "images/user-uploads", data, "image/png")


def test_base64_upload_data_url_and_bare(kie: Kie) -> None:
    data = png_bytes(fmt="JPEG")
    encoded = base64.b64encode(data).decode()
    for i, payload in enumerate([f"data:image/jpeg;base64,{encoded}", encoded]):
        reply = kie.http.post(
            kie.upload_base + "/api/file-base64-upload",
            json={"base64Data": payload, "uploadPath": "b64", "fileName": f"f{i}.jpg"},
        )
        _check_ok(reply, f"f{i}.jpg", "b64", data, "image/jpeg")


def test_url_upload(kie: Kie) -> None:
    data = png_bytes(fmt="WEBP")
    first = kie.http.post(
        kie.upload_base + "/api/file-stream-upload",
        files={"file": ("x.webp", data, "image/webp")},
        data={"uploadPath": "src", "fileName": "x.webp"},
    )
    source = first.json()["data"]["downloadUrl"]
    reply = kie.http.post(
        kie.upload_base + "/api/file-url-upload",
        json={"fileUrl": source, "uploadPath": "copied", "fileName": "y.webp"},
    )
    _check_ok(reply, "y.webp", "copied", data, "image/webp")


def test_url_upload_rejections(kie: Kie) -> None:
    url = kie.upload_base + "/api/file-url-upload"
    remote = kie.http.post(url, json={"fileUrl": "https://example.com/a.png", "uploadPath": "a"})
    assert remote.json()["success"] is False and "fileUrl" in remote.json()["msg"]
    missing = kie.http.post(
        url, json={"fileUrl": kie.base + "/uploads/nope.png", "uploadPath": "a"}
    )
    assert missing.json()["code"] == 400 and "404" in missing.json()["msg"]
    no_path = kie.http.post(url, json={"fileUrl": kie.base + "/uploads/x.png"})
    assert no_path.json()["success"] is False


def test_generated_file_name(kie: Kie) -> None:
    reply = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(png_bytes()).decode(), "uploadPath": "gen"},
    )
    info = reply.json()["data"]
    assert info["fileName"].endswith(".png") and info["filePath"] == f"gen/{info['fileName']}"


def test_same_path_overwrites(kie: Kie) -> None:
    url = kie.upload_base + "/api/file-base64-upload"
    first, second = png_bytes((10, 10)), png_bytes((20, 20))
    for data in (first, second):
        reply = kie.http.post(
            url,
            json={
                "base64Data": base64.b64encode(data).decode(),
                "uploadPath": "same",
                "fileName": "a.png",
            },
        )
        download = reply.json()["data"]["downloadUrl"]
    assert httpx.get(download).content == second


def test_rejects_non_images(kie: Kie) -> None:
    text = b"%PDF-1.4 not an image"
    stream = kie.http.post(
        kie.upload_base + "/api/file-stream-upload",
        files={"file": ("doc.png", text, "image/png")},
        data={"uploadPath": "x"},
    )
    assert stream.status_code == 200
    assert stream.json()["success"] is False and stream.json()["code"] == 415
    assert "file" in stream.json()["msg"]
    b64 = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(text).decode(), "uploadPath": "x"},
    )
    assert b64.json()["code"] == 415
    garbage = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": "!!!not base64!!!", "uploadPath": "x"},
    )
    assert garbage.json()["code"] == 400 and "base64Data" in garbage.json()["msg"]
    no_file = kie.http.post(
        kie.upload_base + "/api/file-stream-upload", data={"uploadPath": "x"}, files={}
    )
    assert no_file.json()["success"] is False


def test_base64_over_10_mb(kie: Kie) -> None:
    data = png_bytes() + b"\0" * (10 * 1024 * 1024)
    reply = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(data).decode(), "uploadPath": "big"},
    )
    assert reply.json()["code"] == 413 and "10 MB" in reply.json()["msg"]


def test_stream_over_limit(start_emulator: Callable[..., EmulatorProcess]) -> None:
    emu = start_emulator(max_stream_upload=256 * 1024)
    kie = Kie(emu)
    data = png_bytes() + b"\0" * (300 * 1024)
    reply = kie.http.post(
        kie.upload_base + "/api/file-stream-upload",
        files={"file": ("big.png", data, "image/png")},
        data={"uploadPath": "big"},
    )
    assert reply.json()["code"] == 413
    ok = kie.http.post(
        kie.upload_base + "/api/file-stream-upload",
        files={"file": ("ok.png", png_bytes(), "image/png")},
        data={"uploadPath": "big"},
    )
    assert ok.json()["success"] is True


def test_download_url_for_upload(kie: Kie) -> None:
    reply = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(png_bytes()).decode(), "uploadPath": "d"},
    )
    url = reply.json()["data"]["downloadUrl"]
    fresh = kie.http.post(kie.base + "/api/v1/common/download-url", json={"url": url}).json()
    assert fresh["code"] == 200 and "sig=" in fresh["data"]
    assert httpx.get(fresh["data"]).status_code == 200


def test_uploaded_file_as_reframe_input(kie: Kie) -> None:
    reply = kie.http.post(
        kie.upload_base + "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(png_bytes()).decode(), "uploadPath": "in"},
    )
    url = reply.json()["data"]["downloadUrl"]
    body = {
        "model": "ideogram/v3-reframe",
        "input": {
            "image_url": url,
            "image_size": "portrait_4_3",
            "rendering_speed": "BALANCED",
            "style": "AUTO",
            "num_images": "1",
        },
    }
    task_id = kie.create(body).json()["data"]["taskId"]
    assert kie.wait(task_id)["state"] == "success"
