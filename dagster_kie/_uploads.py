"""Upload sources: what to send to kie.ai's file-upload API, checked before anything is sent.

A source is a local path, bytes, a binary file object, or an http(s) URL. :func:`plan_upload`
checks it (an image must be JPEG/PNG/WebP by its first bytes and at most 10 MB, the limit of model
inputs), chooses the method (``auto``: a URL → ``file-url-upload``; up to 10 MB →
``file-base64-upload``; bigger → ``file-stream-upload``, streamed from disk) and a stable file name
(the content's hash, so a retried upload overwrites the same file instead of adding one).
:func:`build_upload_request` turns the plan into an ``httpx.Request``.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeGuard, Union

import httpx

from dagster_kie.download import SNIFF_BYTES, image_mime
from dagster_kie.errors import InvalidRequestError

__all__ = [
    "MAX_IMAGE_BYTES",
    "UploadMethod",
    "UploadPlan",
    "UploadSource",
    "build_upload_request",
    "load_image",
    "plan_upload",
]

MB = 1024 * 1024
MAX_IMAGE_BYTES = 10 * MB
"""Largest image kie.ai accepts as a model input (``image_url``, ``reference_image_urls``)."""
MAX_BASE64_BYTES = 10 * MB
"""Largest file sent through ``file-base64-upload``."""
MAX_STREAM_BYTES = 100 * MB
"""Largest file ``file-stream-upload`` accepts (about 100 MB)."""

UploadMethod = Literal["auto", "url", "base64", "stream"]
UploadSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
"""A local path, raw bytes, a binary file object, or an http(s) URL."""

_PATHS = {
    "url": "/api/file-url-upload",
    "base64": "/api/file-base64-upload",
    "stream": "/api/file-stream-upload",
}
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadPlan:
    """A checked upload: the method, the name, and where the bytes come from.

    Attributes:
        method: ``url``, ``base64`` or ``stream``.
        file_name: The name to store the file under (``None``: the server's choice).
        mime: The content type.
        label: How the source is named in messages.
        url: The remote file (``url`` method).
        data: The bytes (bytes and file-object sources).
        path: The local file (path sources; streamed from disk).
        size: Size in bytes, when known.
    """

    method: Literal["url", "base64", "stream"]
    file_name: str | None
    mime: str
    label: str
    url: str | None = None
    data: bytes | None = None
    path: Path | None = None
    size: int | None = None

    @property
    def endpoint(self) -> str:
        """The upload API path of the method."""
        return _PATHS[self.method]

    def read(self) -> bytes:
        """The whole file (bytes sources, or a path read from disk)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError("a URL upload has no local bytes")
        return self.path.read_bytes()


def _is_url(source: object) -> TypeGuard[str]:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _clean_name(name: str) -> str:
    cleaned = _UNSAFE_NAME.sub("-", name).strip("-.")
    return cleaned[:100] or "upload"


def _stable_name(stem: str, digest: str, mime: str, suffix: str = "") -> str:
    extension = _EXTENSIONS.get(mime) or suffix or ".bin"
    return f"{_clean_name(stem)}-{digest[:16]}{extension}"


def _check_image(label: str, head: bytes, size: int, limit: int) -> str:
    if size > limit:
        raise InvalidRequestError(
            f"{label}: the image is {size:,} bytes, over the {limit // MB} MB limit for images "
            "used as model inputs"
        )
    mime = image_mime(head)
    if mime is None:
        raise InvalidRequestError(
            f"{label}: not a JPEG, PNG or WebP image (kie.ai accepts only those as model inputs)"
        )
    return mime


def _read_limited(stream: IO[bytes], limit: int, label: str) -> bytes:
    data = stream.read(limit + 1)
    if not isinstance(data, bytes):
        raise TypeError(f"{label}: the file object must be opened in binary mode")
    return data


def plan_upload(
    source: UploadSource,
    *,
    file_name: str | None = None,
    method: UploadMethod = "auto",
    image: bool = True,
) -> UploadPlan:
    """Check a source and decide how to upload it.

    Args:
        source: A local path (str or ``Path``), bytes, a binary file object, or an http(s) URL.
        file_name: The stored name; default: ``<name>-<sha256 prefix>.<ext>`` (stable, so a
            retried upload overwrites instead of duplicating). URL uploads keep the server's name.
        method: ``auto``, ``url``, ``base64`` or ``stream``.
        image: The file is a model input image: JPEG/PNG/WebP, at most 10 MB. With ``False`` any
            file up to 100 MB is accepted.

    Returns:
        The plan.

    Raises:
        InvalidRequestError: The file is missing, too large or not an accepted image; or the
            method does not fit the source. Nothing was sent.
    """
    if method not in ("auto", "url", "base64", "stream"):
        raise ValueError(f"method must be auto, url, base64 or stream, not {method!r}")
    if _is_url(source):
        if method not in ("auto", "url"):
            raise InvalidRequestError(f"{source}: a URL source is uploaded with method 'url'")
        url = str(source)
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0] or "application/octet-stream"
        return UploadPlan("url", file_name, guessed, url, url=url)
    if method == "url":
        raise InvalidRequestError("method 'url' needs an http(s) URL as the source")
    limit = MAX_IMAGE_BYTES if image else MAX_STREAM_BYTES
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _plan_bytes(data, file_name or None, "upload", file_name or "<bytes>", method, image)
    if isinstance(source, (str, os.PathLike)):
        return _plan_path(Path(source).expanduser(), file_name, method, image, limit)
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = file_name or (str(name) if isinstance(name, str) else "<file object>")
        data = _read_limited(source, limit, label)
        stem = Path(name).stem if isinstance(name, str) else "upload"
        return _plan_bytes(data, file_name, stem, label, method, image)
    raise TypeError(
        f"cannot upload a {type(source).__name__}: pass a path, bytes, a binary file or a URL"
    )


def _choose(method: UploadMethod, size: int, label: str) -> Literal["base64", "stream"]:
    if method == "auto":
        return "base64" if size <= MAX_BASE64_BYTES else "stream"
    if method == "base64" and size > MAX_BASE64_BYTES:
        raise InvalidRequestError(
            f"{label}: {size:,} bytes is over the {MAX_BASE64_BYTES // MB} MB limit of base64 "
            "uploads; use method='stream'"
        )
    return "base64" if method == "base64" else "stream"


def _plan_bytes(data: bytes, file_name: str | None, stem: str, label: str,
                method: UploadMethod, image: bool) -> UploadPlan:  # fmt: skip
    limit = MAX_IMAGE_BYTES if image else MAX_STREAM_BYTES
    if image:
        mime = _check_image(label, data[:SNIFF_BYTES], len(data), limit)
    else:
        if len(data) > limit:
            raise InvalidRequestError(f"{label}: {len(data):,} bytes is over the upload limit")
        mime = image_mime(data[:SNIFF_BYTES]) or "application/octet-stream"
    name = file_name or _stable_name(stem, hashlib.sha256(data).hexdigest(), mime)
    return UploadPlan(_choose(method, len(data), label), name, mime, label, data=data,
                      size=len(data))  # fmt: skip


def _plan_path(path: Path, file_name: str | None, method: UploadMethod, image: bool,
               limit: int) -> UploadPlan:  # fmt: skip
    label = str(path)
    if not path.is_file():
        raise InvalidRequestError(f"{label}: no such file")
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
    if image:
        mime = _check_image(label, head, size, limit)
    else:
        if size > limit:
            raise InvalidRequestError(f"{label}: {size:,} bytes is over the upload limit")
        mime = image_mime(head) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if file_name is None:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1024 * 1024), b""):
                digest.update(block)
        file_name = _stable_name(path.stem, digest.hexdigest(), mime, path.suffix.lower())
    return UploadPlan(_choose(method, size, label), file_name, mime, label, path=path, size=size)


def build_upload_request(
    plan: UploadPlan, *, base_url: str, upload_path: str, headers: dict[str, str]
) -> tuple[httpx.Request, IO[bytes] | None]:
    """The request of one upload attempt.

    Returns:
        The request, and the file it streams from (close it after sending), if any.
    """
    url = base_url.rstrip("/") + plan.endpoint
    if plan.method == "url":
        body: dict[str, Any] = {"fileUrl": plan.url, "uploadPath": upload_path}
        if plan.file_name:
            body["fileName"] = plan.file_name
        return httpx.Request("POST", url, headers=headers, json=body), None
    if plan.method == "base64":
        encoded = base64.b64encode(plan.read()).decode("ascii")
        body = {"base64Data": f"data:{plan.mime};base64,{encoded}", "uploadPath": upload_path}
        if plan.file_name:
            body["fileName"] = plan.file_name
        return httpx.Request("POST", url, headers=headers, json=body), None
    fields = {"uploadPath": upload_path}
    if plan.file_name:
        fields["fileName"] = plan.file_name
    name = plan.file_name or "upload"
    handle: IO[bytes] | None = None
    if plan.path is not None:
        handle = plan.path.open("rb")
        content: IO[bytes] | bytes = handle
    else:
        content = plan.data or b""
    request = httpx.Request(
        "POST", url, headers=headers, data=fields, files={"file": (name, content, plan.mime)}
    )
    return request, handle


def load_image(source: UploadSource, *, file_name: str | None = None) -> tuple[str, bytes, str]:
    """Read a local image for a multipart part (Remix's ``image_file``), checked like an upload.

    Returns:
        ``(file name, bytes, mime type)``.

    Raises:
        InvalidRequestError: Not a JPEG/PNG/WebP image, over 10 MB, missing, or a URL.
    """
    if _is_url(source):
        raise InvalidRequestError(f"{source}: Remix needs the image file itself; download it first")
    plan = plan_upload(source, file_name=file_name, method="base64", image=True)
    return plan.file_name or "image", plan.read(), plan.mime
