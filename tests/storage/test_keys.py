"""Key layout and key safety: nothing built from an id or a name can leave the prefix."""

from __future__ import annotations

from typing import Any, cast

import pytest

from dagster_kie.ledger import TaskLedger
from dagster_kie.storage import (
    ImageStore,
    UnsafeKeyError,
    model_segments,
    normalize_prefix,
    parse_s3_uri,
    validate_segment,
)

MODEL = "ideogram/v3-text-to-image"
NO_CLIENT = cast(Any, None)  # building keys never touches S3

UNSAFE = [
    "",
    ".",
    "..",
    "../x",
    "a/b",
    "/abs",
    "a\\b",
    "x\x00y",
    "tab\there",
    "new\nline",
    "sp ace",
    "café",
    "日本",
    "١٢٣",  # Arabic-Indic digits are not ASCII digits
    "a%2Fb",
    "a?b",
    "a*b",
    "~home",
    "x" * 256,
]


def store(prefix: str = "kie") -> ImageStore:
    return ImageStore(NO_CLIENT, "bucket", prefix)


def test_image_and_manifest_layout() -> None:
    s = store()
    assert s.image_key(MODEL, "req-1", "task_9", 0) == (
        "kie/ideogram/v3-text-to-image/req-1/task_9/0.png"
    )
    assert s.image_key(MODEL, "req-1", "task_9", 3, "JPG") == (
        "kie/ideogram/v3-text-to-image/req-1/task_9/3.jpg"
    )
    assert s.image_key(MODEL, "req-1", "task_9", 1, ".webp").endswith("/1.webp")
    assert s.manifest_key(MODEL, "req-1", "task_9") == (
        "kie/ideogram/v3-text-to-image/req-1/task_9/manifest.json"
    )
    assert s.request_prefix(MODEL, "req-1") == "kie/ideogram/v3-text-to-image/req-1/"
    assert s.uri("kie/a.png") == "s3://bucket/kie/a.png"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("kie", "kie"), ("/kie/", "kie"), ("kie/", "kie"), ("team-a/kie", "team-a/kie"), ("", "")],
)
def test_prefix_is_normalized(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected
    key = store(prefix).manifest_key(MODEL, "r", "t")
    assert (
        key == (f"{expected}/" if expected else "") + "ideogram/v3-text-to-image/r/t/manifest.json"
    )
    assert not key.startswith("/") and "//" not in key


@pytest.mark.parametrize("prefix", ["a//b", "../kie", "kie/..", "k ie", "kié"])
def test_unsafe_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(UnsafeKeyError, match="prefix"):
        ImageStore(NO_CLIENT, "bucket", prefix)
    with pytest.raises(UnsafeKeyError):
        TaskLedger(NO_CLIENT, "bucket", prefix)


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_request_id_is_rejected(value: str) -> None:
    with pytest.raises(UnsafeKeyError, match="request_id") as raised:
        store().image_key(MODEL, value, "task", 0)
    assert raised.value.segment == value
    with pytest.raises(UnsafeKeyError, match="request_id"):
        store().find_manifests(MODEL, value)
    with pytest.raises(UnsafeKeyError, match="request_id"):
        TaskLedger(NO_CLIENT, "bucket").key(value)


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_task_id_is_rejected(value: str) -> None:
    with pytest.raises(UnsafeKeyError, match="task_id"):
        store().manifest_key(MODEL, "req", value)
    with pytest.raises(UnsafeKeyError, match="task_id"):
        store().get_manifest(MODEL, "req", value)


@pytest.mark.parametrize(
    "model",
    ["", "/", "a/", "/a", "a/b/c", "../x", "a/..", "_ledger/x", "_callbacks", "ideo gram/v3"],
)
def test_unsafe_model_is_rejected(model: str) -> None:
    with pytest.raises(UnsafeKeyError, match="model"):
        store().image_key(model, "req", "task", 0)


def test_model_keeps_its_segments() -> None:
    assert model_segments(MODEL) == ["ideogram", "v3-text-to-image"]
    assert model_segments("single") == ["single"]


@pytest.mark.parametrize("index", [-1, 1.0, "0", True])
def test_index_must_be_a_natural_number(index: Any) -> None:
    with pytest.raises(UnsafeKeyError, match="index"):
        store().image_key(MODEL, "req", "task", index)


@pytest.mark.parametrize("extension", ["", "png/../x", "p g", "../png", "x" * 17, "pñg"])
def test_unsafe_extension_is_rejected(extension: str) -> None:
    with pytest.raises(UnsafeKeyError, match="extension"):
        store().image_key(MODEL, "req", "task", 0, extension)


def test_safe_segments_pass() -> None:
    for value in ["a", "A-b_c.d", "...", ".hidden", "0" * 255, "task_20250101abc"]:
        assert validate_segment(value) == value


@pytest.mark.parametrize(
    "key",
    [
        "other/x.png",
        "kie",
        "kie/",
        "kie/../x.png",
        "kie/a//b.png",
        "kiex/a.png",
        "/kie/a.png",
        "kie/a b.png",
    ],
)
def test_keys_outside_the_prefix_are_refused(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        store().check_key(key)
    with pytest.raises(UnsafeKeyError):
        store().put_image(key, [b"data"], content_type="image/png")
    with pytest.raises(UnsafeKeyError):
        store().presigned_url(key)


def test_keys_under_the_prefix_are_accepted() -> None:
    key = store().image_key(MODEL, "r", "t", 0)
    assert store().check_key(key) == key
    assert store("").check_key("anything/at/root.png") == "anything/at/root.png"


def test_ledger_key_layout() -> None:
    assert TaskLedger(NO_CLIENT, "b").key("req-1") == "kie/_ledger/req-1.json"
    assert TaskLedger(NO_CLIENT, "b", "/team/kie/").key("r") == "team/kie/_ledger/r.json"
    assert TaskLedger(NO_CLIENT, "b", "").key("r") == "_ledger/r.json"


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    for bad in ["bucket/key", "s3://bucket", "s3://bucket/", "s3:///key", "http://b/k", ""]:
        with pytest.raises(ValueError, match="S3 URI"):
            parse_s3_uri(bad)
