"""Handlers of the file-upload API (served under ``<base>/upload``) and of uploaded files.

Only images (JPEG, PNG, WebP, recognised by their magic bytes) are accepted. Limits: 10 MB for
base64 uploads, 100 MB for stream and URL uploads (configurable). URL uploads only fetch loopback
URLs unless ``--allow-remote-url-upload`` is given.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from .config import MB
from .filestore import clean_upload_path
from .images import sniff_image_mime
from .replies import json_reply, upload_error
from .state import EmulatorState

if TYPE_CHECKING:
    from .app import Ctx

__all__ = ["base64_upload", "serve_upload", "stream_upload", "url_upload"]

ALLOWED = "only image/jpeg, image/png and image/webp files are accepted"


class UploadRejected(Exception):
    """An upload request is invalid; carries the reply code and message."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _mb(n: int) -> str:
    return f"{n / MB:g} MB"


def _store(
    state: EmulatorState, data: bytes, upload_path: Any, file_name: Any, max_bytes: int
) -> JSONResponse:
    if not isinstance(upload_path, str) or not upload_path.strip():
        raise UploadRejected(400, "uploadPath: is required (e.g. images/user-uploads)")
    try:
        path = clean_upload_path(upload_path)
    except ValueError:
        raise UploadRejected(400, "uploadPath: must be a relative path without '..'") from None
    if file_name is not None and file_name != "":
        if (
            not isinstance(file_name, str)
            or file_name in (".", "..")
            or set(file_name) & set("/\\")
        ):
            raise UploadRejected(400, "fileName: must be a plain file name (no '/')")
    else:
        file_name = None
    if len(data) > max_bytes:
        raise UploadRejected(413, f"file: too large ({len(data)} bytes); at most {_mb(max_bytes)}")
    if not data:
        raise UploadRejected(400, "file: is empty")
    mime = sniff_image_mime(data)
    if mime is None:
        raise UploadRejected(415, f"file: unsupported file type; {ALLOWED}")
    record = state.uploads.save(path, file_name, data, mime)
    state.stats.uploads += 1
    return json_reply(
        {
            "success": True,
            "code": 200,
            "msg": "File uploaded successfully",
            "data": {
                "fileName": record.file_name,
                "filePath": record.file_path,
                "downloadUrl": f"{state.base_url}/uploads/{quote(record.file_path)}",
                "fileSize": record.size,
                "mimeType": record.mime_type,
                "uploadedAt": record.uploaded_at,
            },
        }
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UploadRejected(400, "body: must be a JSON object") from None
    if not isinstance(body, dict):
        raise UploadRejected(400, "body: must be a JSON object")
    return body


async def stream_upload(request: Request, ctx: Ctx) -> Response:
    """``POST /upload/api/file-stream-upload`` (multipart: file, uploadPath, fileName?)."""
    state = ctx.state
    limit = state.settings.max_stream_upload
    try:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise UploadRejected(
                400, "file: a multipart/form-data body with a 'file' part is required"
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit + MB:
            raise UploadRejected(413, f"file: too large; at most {_mb(limit)}")
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # malformed multipart, too many parts
            raise UploadRejected(400, f"file: invalid multipart body ({exc})") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise UploadRejected(400, "file: is required (the file part)")
            data = await upload.read(limit + 1)
        finally:
            await form.close()
        return _store(state, data, form.get("uploadPath"), form.get("fileName"), limit)
    except UploadRejected as exc:
        return upload_error(state.stats, exc.code, exc.msg)


async def base64_upload(request: Request, ctx: Ctx) -> Response:
    """``POST /upload/api/file-base64-upload`` (JSON: base64Data, uploadPath, fileName?)."""
    state = ctx.state
    limit = state.settings.max_base64_upload
    try:
        body = await _json_body(request)
        raw = body.get("base64Data")
        if not isinstance(raw, str) or not raw:
            raise UploadRejected(400, "base64Data: is required (a data URL or bare base64)")
        payload = raw
        if raw.startswith("data:"):
            header, sep, payload = raw.partition(",")
            if not sep or not header.endswith(";base64"):
                raise UploadRejected(
                    400, "base64Data: a data URL must look like data:<mime>;base64,<data>"
                )
        payload = "".join(payload.split())
        if len(payload) * 3 // 4 > limit + 3:
            raise UploadRejected(413, f"base64Data: file too large; at most {_mb(limit)}")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise UploadRejected(400, "base64Data: not valid base64") from None
        return _store(state, data, body.get("uploadPath"), body.get("fileName"), limit)
    except UploadRejected as exc:
        return upload_error(state.stats, exc.code, exc.msg)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def url_upload(request: Request, ctx: Ctx) -> Response:
    """``POST /upload/api/file-url-upload`` (JSON: fileUrl, uploadPath, fileName?)."""
    import httpx

    state = ctx.state
    settings = state.settings
    limit = settings.max_url_upload
    try:
        body = await _json_body(request)
        url = body.get("fileUrl")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise UploadRejected(400, "fileUrl: is required (an http(s) URL)")
        if not settings.allow_remote_url_upload and not _is_loopback(urlsplit(url).hostname):
            raise UploadRejected(
                400, "fileUrl: the emulator only downloads loopback URLs (127.0.0.1, localhost)"
            )
        chunks: list[bytes] = []
        size = 0
        started = time.monotonic()
        try:
            headers = {"User-Agent": "kie-emulator-url-upload/1.0"}
            async with (
                httpx.AsyncClient(timeout=settings.url_upload_timeout, trust_env=False) as client,
                client.stream("GET", url, headers=headers) as reply,
            ):
                if reply.status_code >= 400:
                    status = reply.status_code
                    raise UploadRejected(400, f"fileUrl: download failed with HTTP {status}")
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise UploadRejected(413, f"fileUrl: file too large; at most {_mb(limit)}")
                    if time.monotonic() - started > settings.url_upload_timeout:
                        raise httpx.ReadTimeout("download took too long")
                    chunks.append(chunk)
        except httpx.TimeoutException:
            raise UploadRejected(
                408, f"fileUrl: download timed out after {settings.url_upload_timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise UploadRejected(400, f"fileUrl: download failed ({type(exc).__name__})") from None
        return _store(state, b"".join(chunks), body.get("uploadPath"), body.get("fileName"), limit)
    except UploadRejected as exc:
        return upload_error(state.stats, exc.code, exc.msg)


async def serve_upload(request: Request, ctx: Ctx) -> Response:
    """``GET /uploads/{filePath}`` — an uploaded file (a signature, if present, is checked)."""
    state = ctx.state
    path = request.scope["path"]
    expires, sig = request.query_params.get("expires"), request.query_params.get("sig")
    if expires is not None or sig is not None:
        reason = state.signer.check(path, expires, sig, time.time())
        if reason is not None:
            state.stats.error(403)
            return PlainTextResponse(f"Forbidden: {reason}", status_code=403)
    record = state.uploads.get(request.path_params["path"])
    if record is None or not record.disk_path.exists():
        state.stats.error(404)
        return PlainTextResponse("Not Found", status_code=404)
    return FileResponse(record.disk_path, media_type=record.mime_type)
