"""Uploads: source checks before sending, the three methods, replies and retries."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dagster_kie._uploads import MAX_IMAGE_BYTES, plan_upload
from dagster_kie.errors import InvalidRequestError

from .helpers import Api, Script, png_bytes

UPLOAD = "https://kieai.redpandaai.co"
PNG = png_bytes((16, 16))


def uploaded(name: str = "x.png", **extra: object) -> httpx.Response:
    data = {
        "fileName": name,
        "filePath": f"dagster-kie/{name}",
        "downloadUrl": f"https://files.example/{name}",
        "fileSize": 10,
        "mimeType": "image/png",
        "uploadedAt": "2025-01-01T00:00:00Z",
        **extra,
    }
    return httpx.Response(
        200, json={"success": True, "code": 200, "msg": "File uploaded successfully", "data": data}
    )


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "my fox.png"
    path.write_bytes(PNG)
    return path


def test_small_image_goes_base64(api: Api, script: Script, png_file: Path) -> None:
    script.on("POST", "/api/file-base64-upload", uploaded())
    result = api.upload_file(png_file, upload_path="inputs")
    assert result.url == "https://files.example/x.png"
    (request,) = script.requests
    assert str(request.url).startswith(UPLOAD)
    body = json.loads(request.content)
    assert body["uploadPath"] == "inputs"
    prefix = "data:image/png;base64,"
    assert body["base64Data"].startswith(prefix)
    assert base64.b64decode(body["base64Data"][len(prefix) :]) == PNG
    assert body["fileName"].startswith("my-fox-") and body["fileName"].endswith(".png")


def test_file_name_is_stable_for_the_same_content(png_file: Path) -> None:
    first = plan_upload(png_file)
    assert first.file_name == plan_upload(png_file).file_name
    assert plan_upload(png_bytes(color="blue")).file_name != plan_upload(PNG).file_name


@pytest.mark.parametrize("kind", ["bytes", "fileobj"])
def test_bytes_and_file_objects(api: Api, script: Script, kind: str) -> None:
    script.on("POST", "/api/file-base64-upload", uploaded())
    source = PNG if kind == "bytes" else io.BytesIO(PNG)
    api.upload_file(source, file_name="given.png")
    body = json.loads(script.requests[0].content)
    assert body["fileName"] == "given.png"


def test_stream_method_is_multipart_from_disk(api: Api, script: Script, png_file: Path) -> None:
    script.on("POST", "/api/file-stream-upload", uploaded())
    api.upload_file(png_file, method="stream", file_name="f.png")
    (request,) = script.requests
    assert request.headers["content-type"].startswith("multipart/form-data")
    content = request.read()
    assert PNG in content
    assert b'name="uploadPath"' in content and b'name="fileName"' in content
    assert b'name="file"; filename="f.png"' in content


def test_big_files_stream_in_auto_mode(api: Api, script: Script, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * (MAX_IMAGE_BYTES + 1))
    script.on("POST", "/api/file-stream-upload", uploaded("big.bin"))
    api.upload_file(path, image=False)
    assert script.requests[0].url.path == "/api/file-stream-upload"


def test_url_source_uses_url_upload(api: Api, script: Script) -> None:
    script.on("POST", "/api/file-url-upload", uploaded())
    api.upload_file("https://example.com/cat.png")
    body = json.loads(script.requests[0].content)
    assert body == {"fileUrl": "https://example.com/cat.png", "uploadPath": "dagster-kie"}


def test_reply_with_file_url_only(api: Api, script: Script) -> None:
    reply = uploaded()
    data = json.loads(reply.content)
    data["data"] = {"fileUrl": "https://files.example/old-shape.png"}
    script.on("POST", "/api/file-base64-upload", httpx.Response(200, json=data))
    assert api.upload_file(PNG).url == "https://files.example/old-shape.png"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.with_name("missing.png"), "no such file"),
        (
            lambda p: (p.with_name("notes.txt").write_text("hello"), p.with_name("notes.txt"))[1],
            "not a JPEG, PNG or WebP",
        ),
        (
            lambda p: (
                p.with_name("huge.png").write_bytes(PNG + b"\0" * MAX_IMAGE_BYTES),
                p.with_name("huge.png"),
            )[1],
            "10 MB",
        ),
    ],
)
def test_bad_sources_are_refused_before_sending(
    api: Api, script: Script, png_file: Path, make: Callable[[Path], Path], match: str
) -> None:
    path = make(png_file)
    with pytest.raises(InvalidRequestError, match=match) as caught:
        api.upload_file(path)
    assert str(path) in str(caught.value)  # names the file
    assert script.requests == []


def test_method_must_fit_the_source(api: Api, script: Script) -> None:
    with pytest.raises(InvalidRequestError):
        api.upload_file("https://example.com/a.png", method="base64")
    with pytest.raises(InvalidRequestError):
        api.upload_file(PNG, method="url")
    assert script.requests == []


def test_upload_error_envelope(api: Api, script: Script) -> None:
    script.on(
        "POST",
        "/api/file-base64-upload",
        httpx.Response(200, json={"success": False, "code": 413, "msg": "too large"}),
    )
    with pytest.raises(InvalidRequestError, match="too large"):
        api.upload_file(PNG)


def test_upload_retried_on_server_error(api: Api, script: Script, png_file: Path) -> None:
    script.on(
        "POST",
        "/api/file-stream-upload",
        httpx.Response(500, text="oops"),
        httpx.ReadTimeout("slow"),
        uploaded(),
    )
    api.upload_file(png_file, method="stream")
    assert script.count("POST", "/api/file-stream-upload") == 3
    assert all(PNG in r.read() for r in script.requests)
