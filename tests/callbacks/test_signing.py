"""kie.ai webhook signatures: sign, and verify's decision table."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from dagster_kie.callbacks import CallbackRejected, sign, verify

from .helpers import KEY

NOW = 1_765_180_600
TASK = "task_ideogram_1765180586443"


def test_sign_matches_the_documented_formula() -> None:
    expected = base64.b64encode(
        hmac.new(KEY.encode(), f"{TASK}.{NOW}".encode(), hashlib.sha256).digest()
    ).decode()
    assert sign(TASK, NOW, KEY) == expected
    assert sign(TASK, str(NOW), KEY.encode()) == expected


def test_sign_matches_the_emulator() -> None:
    from dagster_kie.emulator.signing import webhook_signature

    assert sign(TASK, NOW, KEY) == webhook_signature(KEY, TASK, NOW)


def test_good_signature_passes() -> None:
    verify(TASK, str(NOW), sign(TASK, NOW, KEY), KEY, now=NOW)
    verify(TASK, f" {NOW} ", sign(TASK, NOW, KEY) + " ", KEY, now=NOW + 299)  # whitespace, edge


def test_millisecond_timestamp_is_understood() -> None:
    stamp = str(NOW * 1000)
    verify(TASK, stamp, sign(TASK, stamp, KEY), KEY, now=NOW + 10)
    with pytest.raises(CallbackRejected, match="stale"):
        verify(TASK, stamp, sign(TASK, stamp, KEY), KEY, now=NOW + 301)


GOOD = sign(TASK, NOW, KEY)


@pytest.mark.parametrize(
    ("task_id", "stamp", "signature", "key", "now", "reason"),
    [
        (TASK, str(NOW), sign(TASK, NOW, "other-key"), KEY, NOW, "bad signature"),
        ("task_other", str(NOW), GOOD, KEY, NOW, "bad signature"),
        (TASK, str(NOW + 1), GOOD, KEY, NOW, "bad signature"),
        (TASK, str(NOW), "not base64 at all ☃", KEY, NOW, "bad signature"),
        (TASK, str(NOW), GOOD[:-2], KEY, NOW, "bad signature"),
        (TASK, str(NOW), GOOD, KEY, NOW + 301, "stale timestamp"),
        (TASK, str(NOW), GOOD, KEY, NOW - 301, "timestamp in the future"),
        (TASK, None, GOOD, KEY, NOW, "missing signature headers"),
        (TASK, str(NOW), None, KEY, NOW, "missing signature headers"),
        (TASK, "", GOOD, KEY, NOW, "missing signature headers"),
        (TASK, str(NOW), "", KEY, NOW, "missing signature headers"),
        (TASK, "17651806OO", GOOD, KEY, NOW, "timestamp is not an integer"),
        (TASK, "1765180600.5", GOOD, KEY, NOW, "timestamp is not an integer"),
        (TASK, "-1765180600", GOOD, KEY, NOW, "timestamp is not an integer"),
        (TASK, "1" * 40, GOOD, KEY, NOW, "timestamp is not an integer"),
    ],
    ids=[
        "wrong-key",
        "other-task",
        "other-timestamp",
        "garbage",
        "truncated",
        "stale",
        "future",
        "no-timestamp",
        "no-signature",
        "empty-timestamp",
        "empty-signature",
        "letters",
        "fraction",
        "negative",
        "huge",
    ],
)
def test_rejections(
    task_id: str, stamp: str | None, signature: str | None, key: str, now: int, reason: str
) -> None:
    with pytest.raises(CallbackRejected) as caught:
        verify(task_id, stamp, signature, key, now=now)
    assert caught.value.reason == reason
    assert caught.value.status_code == 401
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


def test_max_age_is_configurable() -> None:
    verify(TASK, str(NOW), GOOD, KEY, now=NOW + 1000, max_age_s=3600)
    with pytest.raises(CallbackRejected, match="stale"):
        verify(TASK, str(NOW), GOOD, KEY, now=NOW + 11, max_age_s=10)


def test_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify(TASK, str(NOW), GOOD, KEY, now=NOW)
    assert len(calls) == 1
