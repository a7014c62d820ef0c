"""Images and their JSON manifests in S3 (any S3-compatible endpoint).

Key layout (a contract users rely on)::

    {prefix}/{model}/{request_id}/{task_id}/{index}.{ext}      one generated image
    {prefix}/{model}/{request_id}/{task_id}/manifest.json      its lineage, sha256s, parameters

A model id such as ``ideogram/v3-text-to-image`` keeps its two path segments. Every segment built
from an id or a name is checked against ``[A-Za-z0-9._-]+`` (and may not be ``.`` or ``..``), so a
key can never leave the configured prefix; :class:`UnsafeKeyError` names the offending segment.

Images are streamed: :meth:`ImageStore.put_image` hashes the bytes as they are read. An image
below the multipart threshold (8 MiB by default) is read into memory and sent with one
``PutObject``; a larger one goes through boto3's multipart upload, so memory stays bounded by its
chunk size whatever the image size.

Reading many requests at once (:meth:`ImageStore.find_manifests_many`) lists a model's folder in
pages instead of listing each request's folder, when that takes fewer calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef

__all__ = [
    "MANIFEST_NAME",
    "ImageStore",
    "StoredObject",
    "UnsafeKeyError",
    "connection_pool_size",
    "is_not_found",
    "join_key",
    "list_objects",
    "model_segments",
    "normalize_prefix",
    "parse_s3_uri",
    "validate_segment",
]

MANIFEST_NAME = "manifest.json"
MAX_SEGMENT_LENGTH = 255
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}", re.ASCII)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DEFAULT_POOL_CONNECTIONS = 10  # botocore's default max_pool_connections
_T = TypeVar("_T")
_R = TypeVar("_R")


class UnsafeKeyError(ValueError):
    """A key segment could escape the prefix or is not in ``[A-Za-z0-9._-]+``.

    Attributes:
        segment: The rejected value.
        what: What it was meant to be (``request_id``, ``task_id``, ``prefix``...).
    """

    def __init__(self, what: str, segment: object, reason: str) -> None:
        self.what = what
        self.segment = segment
        super().__init__(f"unsafe {what} {segment!r} in an S3 key: {reason}")


# -- key building ----------------------------------------------------------------------------


def validate_segment(value: str, what: str = "segment") -> str:
    """Check one path segment of a key.

    Args:
        value: The segment (an id, a name, one half of a model id).
        what: What it is, for the error message.

    Returns:
        ``value`` unchanged.

    Raises:
        UnsafeKeyError: If it is empty, ``.``, ``..``, too long or has a character outside
            ``[A-Za-z0-9._-]`` (slashes, unicode and whitespace included).
    """
    if not isinstance(value, str):
        raise UnsafeKeyError(what, value, "not a string")
    if not value:
        raise UnsafeKeyError(what, value, "empty")
    if value in (".", ".."):
        raise UnsafeKeyError(what, value, "a relative path segment")
    if len(value) > MAX_SEGMENT_LENGTH:
        raise UnsafeKeyError(what, value, f"longer than {MAX_SEGMENT_LENGTH} characters")
    if not _SEGMENT.fullmatch(value):
        raise UnsafeKeyError(what, value, "only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")
    return value


def normalize_prefix(prefix: str) -> str:
    """Strip leading and trailing slashes from a key prefix and check its segments.

    Args:
        prefix: For example ``"kie"``, ``"/kie/"`` or ``"team-a/kie"``; ``""`` for the bucket root.

    Returns:
        The prefix without surrounding slashes (``"kie"``).

    Raises:
        UnsafeKeyError: If a segment is unsafe (``a//b`` has an empty one).
    """
    stripped = prefix.strip("/")
    if stripped:
        for part in stripped.split("/"):
            validate_segment(part, "prefix")
    return stripped


def model_segments(model: str) -> list[str]:
    """Split a model id into its (one or two) checked path segments.

    Args:
        model: For example ``ideogram/v3-text-to-image``.

    Returns:
        ``["ideogram", "v3-text-to-image"]``.

    Raises:
        UnsafeKeyError: If it has more than two segments, an unsafe one, or starts with ``_``
            (folders such as ``_ledger`` and ``_callbacks`` are reserved under the prefix).
    """
    if not isinstance(model, str) or not model:
        raise UnsafeKeyError("model", model, "empty")
    parts = model.split("/")
    if len(parts) > 2:
        raise UnsafeKeyError("model", model, "more than two path segments")
    for part in parts:
        validate_segment(part, "model")
    if parts[0].startswith("_"):
        raise UnsafeKeyError("model", model, "names starting with '_' are reserved")
    return parts


def join_key(prefix: str, *segments: str) -> str:
    """Join an already normalized prefix and already checked segments with ``/``.

    Args:
        prefix: A prefix from :func:`normalize_prefix` (may be empty).
        *segments: Checked segments.

    Returns:
        The key.
    """
    return "/".join([prefix, *segments] if prefix else segments)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key.

    Args:
        uri: The URI.

    Returns:
        ``(bucket, key)``.

    Raises:
        ValueError: If it does not start with ``s3://`` or lacks a bucket or a key.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI (expected s3://bucket/key): {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an S3 URI needs a bucket and a key (s3://bucket/key): {uri!r}")
    return bucket, key


# -- listing and concurrency -----------------------------------------------------------------


def connection_pool_size(client: S3Client) -> int:
    """How many HTTP connections a boto3 client keeps (``Config(max_pool_connections=...)``).

    More threads than this sharing the client only queue on urllib3's pool lock.

    Args:
        client: A boto3 S3 client.

    Returns:
        Its ``max_pool_connections`` (botocore's default, 10, if it has none).
    """
    size = getattr(client.meta.config, "max_pool_connections", None)
    return int(size) if size else _DEFAULT_POOL_CONNECTIONS


def list_objects(
    client: S3Client, bucket: str, prefix: str, *, max_pages: int | None = None
) -> list[ObjectTypeDef] | None:
    """Every object under a prefix, one paginated ``ListObjectsV2`` (order not guaranteed).

    Args:
        client: A boto3 S3 client.
        bucket: The bucket.
        prefix: The key prefix.
        max_pages: Give up after this many pages (``None``: no limit).

    Returns:
        The objects as ``ListObjectsV2`` returns them (``Key``, ``LastModified``...), or ``None``
        if there are more than ``max_pages`` pages of them.
    """
    found: list[ObjectTypeDef] = []
    paginator = client.get_paginator("list_objects_v2")
    for pages, page in enumerate(paginator.paginate(Bucket=bucket, Prefix=prefix), start=1):
        found.extend(page.get("Contents", []))
        if max_pages is not None and pages >= max_pages and page.get("IsTruncated"):
            return None
    return found


def _map_threads(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """``[fn(item) for item in items]`` on up to ``workers`` threads (none for one worker)."""
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kie-s3-read") as pool:
        return list(pool.map(fn, items))


def _newest_first(objects: Iterable[ObjectTypeDef]) -> list[str]:
    """Keys of listed objects, most recently written first."""
    dated = sorted(
        ((item["LastModified"].isoformat(), item["Key"]) for item in objects), reverse=True
    )
    return [key for _, key in dated]


# -- streaming -------------------------------------------------------------------------------


class _HashingReader:
    """A read-only, non-seekable file object that hashes and counts what is read through it.

    Being non-seekable makes boto3 read it exactly once, front to back, in bounded chunks. Chunks
    of an iterable are joined per read, never accumulated in a growing buffer.
    """

    def __init__(self, source: BinaryIO | Iterable[bytes] | bytes) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._file: BinaryIO | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._pending = memoryview(b"")
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._pending = memoryview(source).cast("B")
        elif hasattr(source, "read"):
            self._file = source  # type: ignore[assignment]
        else:
            self._chunks = iter(source)

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining bytes if ``None`` or negative)."""
        if self._file is not None:
            data = self._file.read() if size is None or size < 0 else self._file.read(size)
        else:
            data = self._read_chunks(size)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"image stream must yield bytes, got {type(data).__name__}")
        self.sha256.update(data)
        self.size += len(data)
        return bytes(data)

    def read_at_most(self, size: int) -> bytes:
        """Read until ``size`` bytes or the end of the stream (a file may return short reads)."""
        parts: list[bytes] = []
        have = 0
        while have < size:
            data = self.read(size - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _read_chunks(self, size: int | None) -> bytes:
        parts: list[memoryview] = []
        have = 0
        while size is None or size < 0 or have < size:
            if len(self._pending):
                chunk, self._pending = self._pending, memoryview(b"")
            else:
                item = next(self._chunks, None)
                if item is None:
                    break
                if not isinstance(item, (bytes, bytearray, memoryview)):
                    raise TypeError(f"image stream must yield bytes, got {type(item).__name__}")
                chunk = memoryview(item).cast("B")
            if size is not None and size >= 0 and len(chunk) > size - have:
                chunk, self._pending = chunk[: size - have], chunk[size - have :]
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def readable(self) -> bool:
        """Always ``True``."""
        return True

    def seekable(self) -> bool:
        """Always ``False``: boto3 must read the stream once, in order."""
        return False


class _Prepended:
    """A non-seekable file object: ``head`` (already read from ``rest``), then the rest."""

    def __init__(self, head: bytes, rest: _HashingReader) -> None:
        self._head: bytes | None = head
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining bytes if ``None`` or negative)."""
        head, self._head = self._head, None
        if head is None:
            return self._rest.read(size)
        if size is None or size < 0:
            return head + self._rest.read()
        if size < len(head):
            head, self._head = head[:size], head[size:]
            return head
        # boto3 asks for exactly the threshold first: then the head is handed over, not copied.
        return head + self._rest.read(size - len(head)) if size > len(head) else head

    def readable(self) -> bool:
        """Always ``True``."""
        return True

    def seekable(self) -> bool:
        """Always ``False``: boto3 must read the stream once, in order."""
        return False


# -- the store -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """An object written to S3.

    Attributes:
        key: Its key.
        uri: ``s3://bucket/key``.
        sha256: Hex SHA-256 of the bytes written.
        size: Number of bytes written.
    """

    key: str
    uri: str
    sha256: str
    size: int


class ImageStore:
    """Images and manifests of generation requests in one bucket, under one prefix.

    Args:
        client: A boto3 S3 client (thread-safe; shared by all calls).
        bucket: The bucket.
        prefix: Key prefix (``KIE_S3_PREFIX``); slashes around it are ignored.
        transfer_config: boto3 transfer settings for image uploads; images below its
            ``multipart_threshold`` take one ``PutObject``. The default: 8 MiB threshold, larger
            images streamed in 8 MiB parts, two at a time with two read ahead (a few parts of
            buffers per upload, whatever the image size).

    Raises:
        UnsafeKeyError: If the prefix is unsafe.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "kie",
        *,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self._transfer_config = transfer_config or _default_transfer_config()

    # -- keys --

    def request_prefix(self, model: str, request_id: str) -> str:
        """The folder (ending in ``/``) that holds every task of one request.

        Args:
            model: The model id (``ideogram/v3-text-to-image``).
            request_id: The request id.

        Returns:
            ``{prefix}/{model}/{request_id}/``.

        Raises:
            UnsafeKeyError: If a segment is unsafe.
        """
        segments = [*model_segments(model), validate_segment(request_id, "request_id")]
        return join_key(self.prefix, *segments) + "/"

    def task_prefix(self, model: str, request_id: str, task_id: str) -> str:
        """The folder (ending in ``/``) of one task's images and manifest.

        Args:
            model: The model id.
            request_id: The request id.
            task_id: The kie.ai task id.

        Returns:
            ``{prefix}/{model}/{request_id}/{task_id}/``.

        Raises:
            UnsafeKeyError: If a segment is unsafe.
        """
        return self.request_prefix(model, request_id) + validate_segment(task_id, "task_id") + "/"

    def image_key(
        self, model: str, request_id: str, task_id: str, index: int, extension: str = "png"
    ) -> str:
        """The key of one result image.

        Args:
            model: The model id.
            request_id: The request id.
            task_id: The kie.ai task id.
            index: Position of the image in the task's results (0-based).
            extension: File extension without the dot (``png``, ``jpg``, ``webp``).

        Returns:
            ``{prefix}/{model}/{request_id}/{task_id}/{index}.{ext}``.

        Raises:
            UnsafeKeyError: If a segment, the index or the extension is unsafe.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise UnsafeKeyError("index", index, "not a non-negative integer")
        ext = extension.lstrip(".") if isinstance(extension, str) else extension
        if not isinstance(ext, str) or not _EXTENSION.fullmatch(ext):
            raise UnsafeKeyError("extension", extension, "only 1-16 letters and digits")
        return self.task_prefix(model, request_id, task_id) + f"{index}.{ext.lower()}"

    def manifest_key(self, model: str, request_id: str, task_id: str) -> str:
        """The key of one task's manifest.

        Args:
            model: The model id.
            request_id: The request id.
            task_id: The kie.ai task id.

        Returns:
            ``{prefix}/{model}/{request_id}/{task_id}/manifest.json``.

        Raises:
            UnsafeKeyError: If a segment is unsafe.
        """
        return self.task_prefix(model, request_id, task_id) + MANIFEST_NAME

    def uri(self, key: str) -> str:
        """``s3://bucket/key`` of a key.

        Args:
            key: The key.

        Returns:
            The URI.
        """
        return f"s3://{self.bucket}/{key}"

    def check_key(self, key: str) -> str:
        """Check that a key lies under this store's prefix and has only safe segments.

        Args:
            key: The key.

        Returns:
            ``key`` unchanged.

        Raises:
            UnsafeKeyError: If it does not.
        """
        if not isinstance(key, str) or not key:
            raise UnsafeKeyError("key", key, "empty")
        parts = key.split("/")
        prefix_parts = self.prefix.split("/") if self.prefix else []
        if parts[: len(prefix_parts)] != prefix_parts or len(parts) <= len(prefix_parts):
            raise UnsafeKeyError("key", key, f"not under the prefix {self.prefix!r}")
        for part in parts:
            validate_segment(part, "key segment")
        return key

    # -- images --

    def put_image(
        self,
        key: str,
        stream: BinaryIO | Iterable[bytes] | bytes,
        *,
        content_type: str,
    ) -> StoredObject:
        """Store an image in S3, computing its SHA-256 and size on the way.

        The stream is read once, front to back. Below the transfer config's multipart threshold
        (8 MiB by default) it is read whole and sent with one ``PutObject``; above it, it is
        streamed in boto3's multipart chunks and never held in memory whole.

        Args:
            key: The key (from :meth:`image_key`).
            stream: A binary file object (read from its current position) or an iterable of
                ``bytes`` chunks (a generator, an ``httpx`` response's ``iter_bytes()``).
            content_type: The MIME type stored with the object (``image/png``).

        Returns:
            The key, URI, SHA-256 and size of what was written.

        Raises:
            UnsafeKeyError: If the key is not under the prefix or has an unsafe segment.
            TypeError: If the stream yields something other than bytes.
            botocore.exceptions.ClientError: If S3 refuses the upload.
        """
        self.check_key(key)
        config = self._transfer_config
        reader = _HashingReader(stream)
        head = reader.read_at_most(config.multipart_threshold)
        # The same cut as boto3's (multipart from the threshold on), without a transfer manager
        # and its threads per small image.
        if len(head) < config.multipart_threshold:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=head, ContentType=content_type)
        else:
            upload = _Prepended(head, reader)
            del head  # else the first part stays in memory until the whole upload is done
            self.client.upload_fileobj(
                upload,  # type: ignore[arg-type]
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=config,
            )
        return StoredObject(
            key=key, uri=self.uri(key), sha256=reader.sha256.hexdigest(), size=reader.size
        )

    def exists(self, key: str) -> bool:
        """Whether an object exists.

        Args:
            key: The key.

        Returns:
            ``True`` if a HEAD request finds it.

        Raises:
            UnsafeKeyError: If the key is unsafe.
            botocore.exceptions.ClientError: For errors other than "not found".
        """
        self.check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if is_not_found(error):
                return False
            raise
        return True

    def open(self, key: str) -> StreamingBody:
        """Open an object for streaming reads.

        Args:
            key: The key.

        Returns:
            botocore's streaming body (``read(n)``, ``iter_chunks()``...); close it when done,
            e.g. ``with contextlib.closing(store.open(key)) as body`` (a plain ``with`` yields
            the underlying urllib3 response, which also has ``read``).

        Raises:
            UnsafeKeyError: If the key is unsafe.
            botocore.exceptions.ClientError: If it does not exist (``NoSuchKey``).
        """
        self.check_key(key)
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        """A presigned GET URL of an object (no request is made).

        Args:
            key: The key.
            expires_in: Validity in seconds.

        Returns:
            The URL.

        Raises:
            UnsafeKeyError: If the key is unsafe.
        """
        self.check_key(key)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    # -- manifests --

    def put_manifest(self, manifest: dict[str, Any]) -> str:
        """Write a task's manifest (JSON, ``sort_keys=True``, ``indent=2``).

        Args:
            manifest: A JSON object with at least ``model``, ``request_id`` and ``task_id``
                (which place it); every other field is the asset layer's.

        Returns:
            The manifest's ``s3://`` URI.

        Raises:
            ValueError: If a placing field is missing (``UnsafeKeyError`` if unsafe).
            TypeError: If the manifest is not JSON-serializable.
        """
        missing = [name for name in ("model", "request_id", "task_id") if not manifest.get(name)]
        if missing:
            raise ValueError(f"a manifest needs {', '.join(missing)}")
        key = self.manifest_key(manifest["model"], manifest["request_id"], manifest["task_id"])
        body = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False).encode("utf-8")
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
        )
        return self.uri(key)

    def get_manifest(self, model: str, request_id: str, task_id: str) -> dict[str, Any] | None:
        """Read one task's manifest.

        Args:
            model: The model id.
            request_id: The request id.
            task_id: The kie.ai task id.

        Returns:
            The manifest, with ``manifest_key`` and ``manifest_uri`` added if absent; ``None``
            if there is none.

        Raises:
            UnsafeKeyError: If a segment is unsafe.
        """
        return self._read_manifest(self.manifest_key(model, request_id, task_id))

    def find_manifests(self, model: str, request_id: str) -> list[dict[str, Any]]:
        """Every manifest of a request, whatever its task id, newest first.

        Args:
            model: The model id.
            request_id: The request id.

        Returns:
            The manifests (as :meth:`get_manifest` returns them), most recently written first.

        Raises:
            UnsafeKeyError: If a segment is unsafe.
        """
        folder = self.request_prefix(model, request_id)
        listed = list_objects(self.client, self.bucket, folder) or []
        keys = _newest_first(item for item in listed if _is_manifest(item["Key"][len(folder) :]))
        manifests = (self._read_manifest(key) for key in keys)
        return [manifest for manifest in manifests if manifest is not None]

    def find_manifests_many(
        self, model: str, request_ids: Iterable[str], *, max_workers: int = 16
    ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`find_manifests` of many requests of one model, in few calls.

        When there are more requests than threads, the model's folder is listed once (paginated)
        and only the manifests found are read; a new batch then costs a page or so of LIST,
        whatever its size. If that folder turns out to hold more pages than there are rounds
        of per-request LISTs (a long history, a small batch), each request's folder is listed
        instead, concurrently.

        Args:
            model: The model id.
            request_ids: The request ids (duplicates are read once).
            max_workers: Threads for concurrent calls (also capped by the client's pool).

        Returns:
            Every request id → its manifests, newest first (``[]`` when it has none).

        Raises:
            UnsafeKeyError: If a segment is unsafe (checked before any request is made).
        """
        ids = list(dict.fromkeys(request_ids))
        folders = {request_id: self.request_prefix(model, request_id) for request_id in ids}
        workers = max(1, min(max_workers, connection_pool_size(self.client)))
        listed = None
        if len(ids) > workers:
            model_folder = join_key(self.prefix, *model_segments(model)) + "/"
            rounds = math.ceil(len(ids) / workers)
            listed = list_objects(self.client, self.bucket, model_folder, max_pages=rounds)
        if listed is None:
            found = _map_threads(lambda rid: self.find_manifests(model, rid), ids, workers)
            return dict(zip(ids, found, strict=True))
        by_request: dict[str, list[ObjectTypeDef]] = {}
        for item in listed:
            request_id, _, rest = item["Key"][len(model_folder) :].partition("/")
            if request_id in folders and _is_manifest(rest):
                by_request.setdefault(request_id, []).append(item)
        keys = [key for items in by_request.values() for key in _newest_first(items)]
        read = dict(zip(keys, _map_threads(self._read_manifest, keys, workers), strict=True))
        return {
            request_id: [
                manifest
                for key in _newest_first(by_request.get(request_id, []))
                if (manifest := read[key]) is not None
            ]
            for request_id in ids
        }

    def _read_manifest(self, key: str) -> dict[str, Any] | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        with closing(reply["Body"]) as body:
            manifest = json.loads(body.read())
        if not isinstance(manifest, dict):
            raise ValueError(f"manifest {self.uri(key)} is not a JSON object")
        manifest.setdefault("manifest_key", key)
        manifest.setdefault("manifest_uri", self.uri(key))
        return manifest


def _default_transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    mib = 1024 * 1024
    config = TransferConfig(
        multipart_threshold=8 * mib,
        multipart_chunksize=8 * mib,
        max_concurrency=2,
        preferred_transfer_client="classic",
    )
    config.max_in_memory_upload_chunks = 2  # parts read ahead of the uploads (default 10)
    return config


def is_not_found(error: Exception) -> bool:
    """Whether a botocore ``ClientError`` means "no such key".

    Args:
        error: Any exception.

    Returns:
        ``True`` for ``NoSuchKey``/``404``/``NotFound``; ``False`` otherwise (``NoSuchBucket``
        included: a missing bucket is a configuration error, not a missing object).
    """
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    return str(response.get("Error", {}).get("Code", "")) in _NOT_FOUND


def _is_manifest(rest: str) -> bool:
    """Whether a key relative to a request folder is a manifest (``{task}/manifest.json``)."""
    task_id, _, name = rest.partition("/")
    return bool(task_id) and name == MANIFEST_NAME
