"""Where prompt files come from: a local folder or an S3 prefix.

A source lists its prompt files with a cheap fingerprint each (no file is read to list it), so a
sensor can tell new and changed files from a cursor, and reads one file when a run needs it.
A file's *name* is its path relative to the folder or prefix; it becomes the Dagster partition key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dagster_kie.prompts import PROMPT_FILE_SUFFIXES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["LocalPromptSource", "PromptSource", "S3PromptSource"]


class PromptSource(Protocol):
    """Lists prompt files with fingerprints and reads them."""

    @property
    def description(self) -> str:
        """Where the files are, for logs and the UI."""
        ...

    def scan(self) -> dict[str, str]:
        """Map every prompt file's name to a fingerprint that changes when the file changes."""
        ...

    def read(self, name: str) -> bytes:
        """The bytes of one prompt file (raises ``FileNotFoundError`` if it is gone)."""
        ...


def _is_prompt_file(name: str) -> bool:
    return name.lower().endswith(PROMPT_FILE_SUFFIXES) and not name.rsplit("/", 1)[-1].startswith(
        "."
    )


@dataclass(frozen=True)
class LocalPromptSource:
    """Prompt files in a local folder (and its subfolders).

    Args:
        path: The folder (``KIE_PROMPTS_DIR``); it may not exist yet (then it has no files).
    """

    path: str

    @property
    def description(self) -> str:
        """The folder's absolute path."""
        return str(Path(self.path).resolve())

    def scan(self) -> dict[str, str]:
        """Fingerprints (``mtime_ns-size``) of every prompt file, by relative POSIX path."""
        root = Path(self.path)
        found: dict[str, str] = {}
        if not root.is_dir():
            return found
        stack = [root]
        while stack:
            folder = stack.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                        stack.append(Path(entry.path))
                    elif entry.is_file() and _is_prompt_file(entry.name):
                        stat = entry.stat()
                        name = Path(entry.path).relative_to(root).as_posix()
                        found[name] = f"{stat.st_mtime_ns}-{stat.st_size}"
        return found

    def read(self, name: str) -> bytes:
        """Read one file; names that would leave the folder are refused."""
        root = Path(self.path).resolve()
        target = (root / name).resolve()
        if root not in target.parents:
            raise ValueError(f"prompt file name {name!r} leaves the folder {root}")
        return target.read_bytes()


@dataclass(frozen=True)
class S3PromptSource:
    """Prompt files under an S3 prefix.

    Args:
        client_factory: Returns a boto3 S3 client (e.g. ``S3Resource.get_client``).
        bucket: The bucket.
        prefix: The prefix the files sit under.
    """

    client_factory: Callable[[], S3Client]
    bucket: str
    prefix: str = "prompts/"

    @property
    def description(self) -> str:
        """The ``s3://`` URI of the prefix."""
        return f"s3://{self.bucket}/{self.prefix}"

    def _root(self) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    def scan(self) -> dict[str, str]:
        """ETags of every prompt file under the prefix, by name relative to it."""
        root = self._root()
        found: dict[str, str] = {}
        paginator = self.client_factory().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
            for item in page.get("Contents", []):
                name = item["Key"][len(root) :]
                if _is_prompt_file(name):
                    found[name] = f"{item.get('ETag', '').strip(chr(34))}-{item.get('Size', 0)}"
        return found

    def read(self, name: str) -> bytes:
        """Read one object."""
        if ".." in name.split("/"):
            raise ValueError(f"prompt file name {name!r} leaves the prefix")
        client = self.client_factory()
        try:
            reply = client.get_object(Bucket=self.bucket, Key=self._root() + name)
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.description}{name}") from None
        return reply["Body"].read()
