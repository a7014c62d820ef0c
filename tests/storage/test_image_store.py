"""ImageStore against a real S3 server (SeaweedFS): streaming, manifests, presigned URLs."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from dagster_kie.storage import ImageStore, StoredObject, UnsafeKeyError
from tests.storage.s3_calls import count_calls

MODEL = "ideogram/v3-text-to-image"
MIB = 1024 * 1024


@pytest.fixture
def store(s3_bucket: tuple[Any, str]) -> ImageStore:
    client, bucket = s3_bucket
    return ImageStore(client, bucket, prefix="/kie/")


class Pattern:
    """A deterministic byte stream produced lazily, hashed as it is produced."""

    def __init__(self, total: int, block: int = 64 * 1024) -> None:
        self.total = total
        self.block = block
        self.sha256 = hashlib.sha256()
        self.produced = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[bytes]:
        base = bytes(range(256)) * (self.block // 256)
        index = 0
        while self.produced < self.total:
            chunk = bytes([index % 251]) + base[1 : min(self.block, self.total - self.produced)]
            self.sha256.update(chunk)
            self.produced += len(chunk)
            index += 1
            yield chunk
        self.exhausted = True


def tight_transfer() -> TransferConfig:
    """5 MiB parts, one at a time, one read ahead: a 20 MiB image is never held whole."""
    config = TransferConfig(
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
        max_concurrency=1,
        preferred_transfer_client="classic",
    )
    config.max_in_memory_upload_chunks = 1
    return config


def test_20_mib_generator_is_streamed_with_bounded_memory(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = ImageStore(client, bucket, transfer_config=tight_transfer())
    key = store.image_key(MODEL, "big-1", "task-1", 0)
    pattern = Pattern(20 * MIB)
    parts_before_end: list[bool] = []

    def on_part(**_: Any) -> None:
        parts_before_end.append(not pattern.exhausted)

    client.meta.events.register("after-call.s3.UploadPart", on_part)
    tracemalloc.start()
    try:
        stored = store.put_image(key, iter(pattern), content_type="image/png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.meta.events.unregister("after-call.s3.UploadPart", on_part)

    assert stored == StoredObject(
        key=key, uri=f"s3://{bucket}/{key}", sha256=pattern.sha256.hexdigest(), size=20 * MIB
    )
    assert peak < 18 * MIB, f"peak {peak / MIB:.1f} MiB: the image was held in memory"
    assert len(parts_before_end) == 4 and parts_before_end[0], "uploads did not overlap reading"

    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == 20 * MIB
    assert head["ContentType"] == "image/png"
    digest = hashlib.sha256()
    with closing(store.open(key)) as body:
        for chunk in body.iter_chunks(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == stored.sha256


def test_default_transfer_streams_a_generator(store: ImageStore) -> None:
    pattern = Pattern(9 * MIB + 123)  # above the 8 MiB threshold: multipart
    key = store.image_key(MODEL, "big-2", "task-1", 1, "jpg")
    stored = store.put_image(key, pattern, content_type="image/jpeg")
    assert (stored.size, stored.sha256) == (9 * MIB + 123, pattern.sha256.hexdigest())
    assert store.exists(key)


@pytest.mark.parametrize(
    "make",
    [
        lambda data: io.BytesIO(data),
        lambda data: data,
        lambda data: [data[:3], bytearray(data[3:10]), memoryview(data[10:])],
    ],
    ids=["file", "bytes", "chunks"],
)
def test_small_image_sources(store: ImageStore, make: Any) -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    key = store.image_key(MODEL, "small", "task", 0)
    stored = store.put_image(key, make(data), content_type="image/png")
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    with store.open(key) as body:
        assert body.read() == data


def test_spooled_file_from_its_current_position(store: ImageStore) -> None:
    with tempfile.SpooledTemporaryFile(max_size=1024) as spool:
        spool.write(b"header" + b"x" * 5000)
        spool.seek(6)
        stored = store.put_image(
            store.image_key(MODEL, "spool", "t", 0), spool, content_type="image/png"
        )
    assert stored.size == 5000 and stored.sha256 == hashlib.sha256(b"x" * 5000).hexdigest()


def test_empty_image(store: ImageStore) -> None:
    stored = store.put_image(store.image_key(MODEL, "e", "t", 0), [], content_type="image/png")
    assert stored.size == 0 and stored.sha256 == hashlib.sha256(b"").hexdigest()


def test_text_stream_is_refused(store: ImageStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        store.put_image(
            store.image_key(MODEL, "t", "t", 0), iter(["text"]), content_type="image/png"
        )


def test_manifest_round_trip(store: ImageStore, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    manifest = {
        "request_id": "req-1",
        "model": MODEL,
        "task_id": "task-a",
        "request": {"model": MODEL, "input": {"prompt": "a fox, 日本"}},
        "images": [{"index": 0, "sha256": "ab" * 32, "size": 10}],
        "credits": 3.5,
    }
    uri = store.put_manifest(manifest)
    key = store.manifest_key(MODEL, "req-1", "task-a")
    assert uri == f"s3://{bucket}/{key}"

    raw = client.get_object(Bucket=bucket, Key=key)
    assert raw["ContentType"] == "application/json"
    text = raw["Body"].read().decode("utf-8")
    assert text == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False)

    got = store.get_manifest(MODEL, "req-1", "task-a")
    assert got == {**manifest, "manifest_key": key, "manifest_uri": uri}
    assert store.get_manifest(MODEL, "req-1", "task-missing") is None
    assert store.get_manifest(MODEL, "req-missing", "task-a") is None


def test_manifest_needs_its_placing_fields(store: ImageStore) -> None:
    with pytest.raises(ValueError, match="task_id"):
        store.put_manifest({"model": MODEL, "request_id": "r"})
    with pytest.raises(UnsafeKeyError, match="request_id"):
        store.put_manifest({"model": MODEL, "request_id": "../r", "task_id": "t"})


def test_find_manifests_any_task_newest_first(store: ImageStore) -> None:
    store.put_manifest({"model": MODEL, "request_id": "req", "task_id": "t1", "n": 1})
    store.put_manifest({"model": MODEL, "request_id": "req", "task_id": "t2", "n": 2})
    # neighbours that must not be picked up
    store.put_manifest({"model": MODEL, "request_id": "req-2", "task_id": "t3", "n": 3})
    store.put_manifest({"model": "ideogram/v3-reframe", "request_id": "req", "task_id": "t4"})
    store.put_image(store.image_key(MODEL, "req", "t1", 0), [b"img"], content_type="image/png")
    store.put_image(
        store.task_prefix(MODEL, "req", "t1") + "nested/manifest.json", [b"{}"], content_type="x/y"
    )

    found = store.find_manifests(MODEL, "req")
    assert sorted(m["task_id"] for m in found) == ["t1", "t2"]
    assert all(m["manifest_uri"].endswith("/manifest.json") for m in found)
    assert store.find_manifests(MODEL, "nothing-here") == []


def test_presigned_get_with_httpx(store: ImageStore) -> None:
    data = bytes(range(256)) * 100
    key = store.image_key(MODEL, "pre", "task", 0)
    store.put_image(key, [data], content_type="image/png")
    url = store.presigned_url(key, expires_in=600)
    reply = httpx.get(url, trust_env=False, timeout=10)
    assert reply.status_code == 200
    assert reply.content == data
    assert reply.headers["content-type"] == "image/png"
    # the signature matters: the same URL without its query is refused
    assert httpx.get(url.split("?")[0], trust_env=False, timeout=10).status_code == 403


def test_exists_and_missing(store: ImageStore) -> None:
    key = store.image_key(MODEL, "ex", "task", 0)
    assert not store.exists(key)
    store.put_image(key, [b"x"], content_type="image/png")
    assert store.exists(key)
    with pytest.raises(Exception, match="NoSuchKey"):
        store.open(store.image_key(MODEL, "ex", "task", 1))


def test_missing_bucket_is_an_error_not_a_missing_object(s3_bucket: tuple[Any, str]) -> None:
    client, _ = s3_bucket
    store = ImageStore(client, "no-such-bucket-kie-test")
    with pytest.raises(Exception, match="NoSuchBucket"):
        store.get_manifest(MODEL, "r", "t")


@pytest.mark.parametrize(
    ("size", "operations"),
    [
        (14 * 1024, {"PutObject": 1}),
        (5 * MIB - 1, {"PutObject": 1}),
        # from the threshold on, as boto3 cuts it: multipart
        (5 * MIB, {"CreateMultipartUpload": 1, "UploadPart": 1, "CompleteMultipartUpload": 1}),
        (11 * MIB, {"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1}),
    ],
    ids=["14KiB", "below", "at-threshold", "above"],
)
@pytest.mark.parametrize("source", ["file", "chunks"])
def test_put_object_below_the_threshold_multipart_above(
    local_s3: Any, s3_bucket: tuple[Any, str], size: int, operations: dict[str, int], source: str
) -> None:
    _, bucket = s3_bucket
    client = local_s3.client()
    store = ImageStore(client, bucket, transfer_config=tight_transfer())
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    stream: Any = io.BytesIO(data) if source == "file" else iter([data[:777], data[777:]])
    key = store.image_key(MODEL, f"cut-{size}", "task", 0)
    calls = count_calls(client)

    stored = store.put_image(key, stream, content_type="image/webp")

    assert calls == Counter(operations)
    assert stored == StoredObject(
        key=key, uri=f"s3://{bucket}/{key}", sha256=hashlib.sha256(data).hexdigest(), size=size
    )
    head = client.head_object(Bucket=bucket, Key=key)
    assert (head["ContentLength"], head["ContentType"]) == (size, "image/webp")
    with closing(store.open(key)) as body:
        assert body.read() == data


def test_find_manifests_many_matches_find_manifests(store: ImageStore) -> None:
    ids = [f"req-{n}" for n in range(40)]
    for n, rid in enumerate(ids[:10]):
        store.put_manifest({"model": MODEL, "request_id": rid, "task_id": "t1", "n": n})
        store.put_image(store.image_key(MODEL, rid, "t1", 0), [b"img"], content_type="image/png")
    store.put_manifest({"model": MODEL, "request_id": "req-0", "task_id": "t2", "n": 99})
    store.put_manifest({"model": MODEL, "request_id": "req-3x", "task_id": "t", "n": 0})
    store.put_manifest({"model": "ideogram/v3-reframe", "request_id": "req-1", "task_id": "t"})
    store.put_image(
        store.task_prefix(MODEL, "req-2", "t1") + "nested/manifest.json", [b"{}"], content_type="x"
    )
    calls = count_calls(store.client)

    many = store.find_manifests_many(MODEL, [*ids, "req-5"], max_workers=4)

    assert calls == Counter({"ListObjectsV2": 1, "GetObject": 11})  # one LIST, the 11 found
    assert many == {rid: store.find_manifests(MODEL, rid) for rid in ids}
    assert [m["n"] for m in many["req-0"]] == [99, 0]  # newest first
    assert many["req-39"] == []
    calls.clear()
    few = store.find_manifests_many(MODEL, ["req-1", "req-39"], max_workers=4)
    assert few == {"req-1": many["req-1"], "req-39": []}
    assert calls == Counter({"ListObjectsV2": 2, "GetObject": 1})  # few ids: one LIST each
    with pytest.raises(UnsafeKeyError, match="request_id"):
        store.find_manifests_many(MODEL, ["ok", "../escape"])


def test_find_manifests_many_lists_each_request_when_the_folder_is_long(
    moto_s3: tuple[Any, str],
) -> None:
    client, bucket = moto_s3
    store = ImageStore(client, bucket)
    for n in range(2001):  # three pages: more than the two rounds of LISTs two ids take
        client.put_object(Bucket=bucket, Key=f"kie/{MODEL}/old-{n:05d}/t/0.png", Body=b"x")
    store.put_manifest({"model": MODEL, "request_id": "mine", "task_id": "t"})
    calls = count_calls(client)
    found = store.find_manifests_many(MODEL, ["mine", "not-there"], max_workers=1)
    assert [m["task_id"] for m in found["mine"]] == ["t"] and found["not-there"] == []
    assert calls == Counter({"ListObjectsV2": 4, "GetObject": 1})  # 2 pages, then 1 + 1
