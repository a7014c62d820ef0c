"""Where uploaded files live: a directory on disk (a temporary one unless configured)."""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["UploadRecord", "UploadStore", "clean_upload_path"]

_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


@dataclass(frozen=True)
class UploadRecord:
    """One uploaded file."""

    file_name: str
    file_path: str
    size: int
    mime_type: str
    uploaded_at: str
    disk_path: Path


def clean_upload_path(value: str) -> str:
    """Normalise an ``uploadPath``: no empty, ``.`` or ``..`` segments; ``ValueError`` if unsafe."""
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(value)
    return "/".join(parts)


class UploadStore:
    """Files by ``filePath`` (``uploadPath/fileName``); the same path overwrites silently."""

    def __init__(self, directory: str | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kie-emulator-uploads-")
            directory = self._tmp.name
        self.root = Path(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, UploadRecord] = {}

    def save(self, upload_path: str, file_name: str | None, data: bytes, mime: str) -> UploadRecord:
        """Store ``data`` (``file_name`` is generated when missing)."""
        name = file_name or f"{secrets.token_hex(8)}.{_EXT.get(mime, 'bin')}"
        file_path = f"{upload_path}/{name}"
        disk = self.root / file_path
        disk.parent.mkdir(parents=True, exist_ok=True)
        tmp = disk.with_name(disk.name + f".{secrets.token_hex(4)}.part")
        tmp.write_bytes(data)
        os.replace(tmp, disk)
        now = datetime.now(timezone.utc)
        record = UploadRecord(
            file_name=name,
            file_path=file_path,
            size=len(data),
            mime_type=mime,
            uploaded_at=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            disk_path=disk,
        )
        self._records[file_path] = record
        return record

    def get(self, file_path: str) -> UploadRecord | None:
        """The upload at ``file_path``, if any."""
        return self._records.get(file_path)

    def close(self) -> None:
        """Delete the temporary directory (if this store made one)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
