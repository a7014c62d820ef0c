"""Callback URLs that carry the request id."""

from __future__ import annotations

import pytest

from dagster_kie.callbacks import callback_url_for, request_id_from


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8080/kie/callback", "http://127.0.0.1:8080/kie/callback?request_id=r1"),
        ("https://h.example/cb?", "https://h.example/cb?request_id=r1"),
        ("https://h.example/cb?tenant=a", "https://h.example/cb?tenant=a&request_id=r1"),
        (
            "https://h.example/cb?x=a%20b&y=1+2&flag",
            "https://h.example/cb?x=a%20b&y=1+2&flag&request_id=r1",
        ),
        ("https://h.example/cb?request_id=old&t=1", "https://h.example/cb?t=1&request_id=r1"),
        ("https://h.example/cb?t=1#frag", "https://h.example/cb?t=1&request_id=r1#frag"),
    ],
)
def test_callback_url_for(base: str, expected: str) -> None:
    url = callback_url_for(base, "r1")
    assert url == expected
    assert request_id_from(url) == "r1"


@pytest.mark.parametrize("request_id", ["", "a/b", "../x", "a b", "-x", "x" * 129, "a&b=c"])
def test_callback_url_for_rejects_bad_request_ids(request_id: str) -> None:
    with pytest.raises(ValueError):
        callback_url_for("http://h/cb", request_id)


@pytest.mark.parametrize("base", ["/kie/callback", "ftp://h/cb", "h.example/cb", ""])
def test_callback_url_for_needs_an_http_url(base: str) -> None:
    with pytest.raises(ValueError):
        callback_url_for(base, "r1")


def test_request_id_round_trips_the_hash_ids() -> None:
    rid = "0f" * 16
    assert request_id_from(callback_url_for("http://h/cb", rid)) == rid
    assert request_id_from(callback_url_for("http://h/cb", "my.req_1-a")) == "my.req_1-a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("request_id=abc", "abc"),
        ("?request_id=abc", "abc"),
        ("a=1&request_id=abc&b=2", "abc"),
        ("http://h/cb?request_id=abc#x", "abc"),
        ("/kie/callback?request_id=abc", "abc"),
        ("", None),
        ("a=1", None),
        ("request_id=", None),
        ("request_id=a&request_id=b", None),
        ("request_id=..%2Fx", None),
        ("http://h/cb", None),
    ],
)
def test_request_id_from(text: str, expected: str | None) -> None:
    assert request_id_from(text) == expected
