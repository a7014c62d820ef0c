"""Download policy: schemes, private addresses, redirects, type, magic bytes, size, expiry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dagster_kie.download import (
    DownloadGuard,
    DownloadPolicy,
    check_addresses,
    image_mime,
    is_public_address,
)
from dagster_kie.errors import DownloadRefusedError, NotFoundError

from .helpers import Api, Script, png_bytes, reply

PNG = png_bytes((64, 64))
PUBLIC = {
    "cdn.example": ["93.184.216.34"],
    "mirror.example": ["93.184.216.35"],
    "evil.example": ["203.0.113.9"],
    "fresh.example": ["93.184.216.36"],
}


@pytest.fixture
def dl(make_api: Callable[..., Api]) -> Callable[..., Api]:
    """A client with a fake resolver (public names) and the given download policy."""

    def make(
        policy: DownloadPolicy | None = None,
        resolve: dict[str, list[str]] | None = None,
        **options: Any,
    ) -> Api:
        return make_api(
            download_policy=policy or DownloadPolicy(),
            resolve={**PUBLIC, **(resolve or {})},
            **options,
        )

    return make


def image(content: bytes = PNG, content_type: str = "image/png", **headers: str) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"content-type": content_type, **headers})


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (PNG[:16], "image/png"),
        (png_bytes(fmt="JPEG")[:16], "image/jpeg"),
        (png_bytes(fmt="WEBP")[:16], "image/webp"),
        (b"GIF89a........", None),
        (b"<html><body>", None),
    ],
)
def test_image_magic(head: bytes, mime: str | None) -> None:
    assert image_mime(head) == mime


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("127.0.0.1", False),
        ("10.0.0.8", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("2606:4700::1111", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_any_private_address_refuses_the_host() -> None:
    with pytest.raises(DownloadRefusedError, match=r"10\.0\.0\.1"):
        check_addresses("https://x/a.png", ["93.184.216.34", "10.0.0.1"], DownloadPolicy())
    check_addresses("https://x/a.png", ["10.0.0.1"], DownloadPolicy(allow_private_addresses=True))


def test_downloads_a_checked_image(dl: Callable[..., Api], script: Script) -> None:
    api = dl()
    script.on("GET", "/a.png", image())
    content_type, url, data = api.download("https://cdn.example/a.png?sig=abc")
    assert (content_type, data) == ("image/png", PNG)
    assert url == "https://cdn.example/a.png?sig=abc"
    (request,) = script.requests
    assert "authorization" not in request.headers  # the API key never goes to file hosts
    assert request.headers["user-agent"].startswith("dagster-kie/")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://cdn.example/a.png", "gopher://cdn.example/", "https:///nohost"],
)
def test_only_http_urls(dl: Callable[..., Api], script: Script, url: str) -> None:
    with pytest.raises(DownloadRefusedError):
        dl().download(url)
    assert script.requests == []


@pytest.mark.parametrize(
    ("url", "resolve"),
    [
        ("http://127.0.0.1:8000/a.png", None),
        ("http://[::1]/a.png", None),
        ("http://169.254.169.254/latest/meta-data", None),
        ("https://internal.example/a.png", {"internal.example": ["10.1.2.3"]}),
        ("https://sneaky.example/a.png", {"sneaky.example": ["93.184.216.34", "192.168.0.4"]}),
        ("http://localhost/a.png", {"localhost": ["127.0.0.1"]}),
    ],
)
def test_private_addresses_refused(
    dl: Callable[..., Api], script: Script, url: str, resolve: dict[str, list[str]] | None
) -> None:
    with pytest.raises(DownloadRefusedError, match="non-public address"):
        dl(resolve=resolve).download(url)
    assert script.requests == []


def test_private_address_refusal_names_the_settings_that_allow_it(dl: Callable[..., Api]) -> None:
    with pytest.raises(DownloadRefusedError) as caught:
        dl().download("http://127.0.0.1:8000/a.png")
    message = str(caught.value)
    assert "non-public address 127.0.0.1" in message
    assert "KieResource(allow_private_downloads=True)" in message
    assert "--allow-private-downloads" in message and "KIE_ALLOW_PRIVATE_DOWNLOADS" in message


def test_private_addresses_allowed_when_asked(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", image())
    api = dl(DownloadPolicy(allow_private_addresses=True))
    assert api.download("http://127.0.0.1:9/a.png")[2] == PNG


class _Stream:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return (self.peer, 443) if name == "server_addr" else None


def test_connection_to_a_private_peer_is_refused(dl: Callable[..., Api], script: Script) -> None:
    """DNS rebinding: the name resolved to a public address, the socket went elsewhere."""

    def rebound(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=PNG,
            headers={"content-type": "image/png"},
            extensions={"network_stream": _Stream("10.0.0.7")},
        )

    script.on("GET", "/a.png", rebound)
    with pytest.raises(DownloadRefusedError, match=r"10\.0\.0\.7"):
        dl().download("https://cdn.example/a.png")


def test_redirect_to_same_host_is_followed(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/old.png", httpx.Response(302, headers={"location": "/new.png"}))
    script.on("GET", "/new.png", image())
    _, url, data = dl().download("https://cdn.example/old.png")
    assert url == "https://cdn.example/new.png" and data == PNG


def test_redirect_to_foreign_host_is_refused(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", httpx.Response(302, headers={"location": "https://evil.example/x"}))
    with pytest.raises(DownloadRefusedError, match=r"evil\.example"):
        dl().download("https://cdn.example/a.png")
    assert [r.url.host for r in script.requests] == ["cdn.example"]


def test_redirect_to_listed_host_is_followed(dl: Callable[..., Api], script: Script) -> None:
    script.on(
        "GET", "/a.png", httpx.Response(301, headers={"location": "https://mirror.example/b.png"})
    )
    script.on("GET", "/b.png", image())
    api = dl(DownloadPolicy(allowed_redirect_hosts=("mirror.example",)))
    assert api.download("https://cdn.example/a.png")[1] == "https://mirror.example/b.png"


def test_redirect_to_private_address_is_refused(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", httpx.Response(302, headers={"location": "http://127.0.0.1/admin"}))
    api = dl(DownloadPolicy(allowed_redirect_hosts=("127.0.0.1",)))
    with pytest.raises(DownloadRefusedError, match="non-public"):
        api.download("https://cdn.example/a.png")


def test_redirect_loops_stop(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", httpx.Response(302, headers={"location": "/a.png"}))
    with pytest.raises(Exception, match="redirects"):
        dl(DownloadPolicy(max_redirects=3)).download("https://cdn.example/a.png")
    assert len(script.requests) == 4


def test_non_image_content_type_refused(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", image(b"<html></html>", "text/html"))
    with pytest.raises(DownloadRefusedError, match="text/html"):
        dl().download("https://cdn.example/a.png")


def test_bad_magic_refused_before_any_byte_is_handed_out(
    dl: Callable[..., Api], script: Script
) -> None:
    script.on("GET", "/a.png", image(b"<html>not really a png</html>" * 10))
    api = dl()
    with pytest.raises(DownloadRefusedError, match="not a PNG, JPEG or WebP"):
        if api.mode == "sync":
            with api.client.stream_download("https://cdn.example/a.png"):  # type: ignore[union-attr]
                pytest.fail("the context must not be entered")
        else:
            api.download("https://cdn.example/a.png")


def test_tiny_non_image_refused(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", image(b"GIF"))
    with pytest.raises(DownloadRefusedError):
        dl().download("https://cdn.example/a.png")


def test_size_cap_from_content_length(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", image(PNG + b"\0" * 5000))
    with pytest.raises(DownloadRefusedError, match="cap"):
        dl(DownloadPolicy(max_bytes=1000)).download("https://cdn.example/a.png")


def test_size_cap_enforced_while_streaming(dl: Callable[..., Api], script: Script) -> None:
    """No Content-Length: the cap is counted chunk by chunk."""

    def endless(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield PNG
            for _ in range(1000):
                yield b"\0" * 1024

        return httpx.Response(200, headers={"content-type": "image/png"}, stream=_Both(body))

    script.on("GET", "/a.png", endless)
    with pytest.raises(DownloadRefusedError, match="cap"):
        dl(DownloadPolicy(max_bytes=50_000)).download("https://cdn.example/a.png")


class _Both(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body without a length, readable by both clients."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks()

    async def __aiter__(self) -> Any:
        for chunk in self.chunks():
            yield chunk


def test_guard_counts_every_byte() -> None:
    guard = DownloadGuard("https://x/a.png", max_bytes=100)
    assert guard.feed(PNG[:4]) == b""  # held until the signature is known
    assert guard.feed(PNG[4:20]) == PNG[:20]
    with pytest.raises(DownloadRefusedError):
        guard.feed(b"\0" * 200)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_result_url_is_refreshed_once(
    dl: Callable[..., Api], script: Script, status: int
) -> None:
    script.on("GET", "/old.png", httpx.Response(status, text="expired"))
    script.on("POST", "/api/v1/common/download-url", reply("https://fresh.example/new.png"))
    script.on("GET", "/new.png", image())
    _, url, data = dl().download("https://cdn.example/old.png?expires=1")
    assert url == "https://fresh.example/new.png" and data == PNG
    refresh = [r for r in script.requests if r.method == "POST"]
    assert len(refresh) == 1
    assert b"cdn.example/old.png" in refresh[0].content


def test_refresh_happens_only_once(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/old.png", httpx.Response(404))
    script.on("POST", "/api/v1/common/download-url", reply("https://fresh.example/new.png"))
    script.on("GET", "/new.png", httpx.Response(404))
    with pytest.raises(NotFoundError):
        dl().download("https://cdn.example/old.png")
    assert script.count("POST", "/api/v1/common/download-url") == 1


def test_server_errors_while_opening_are_retried(dl: Callable[..., Api], script: Script) -> None:
    script.on("GET", "/a.png", httpx.Response(503), httpx.ConnectError("refused"), image())
    assert dl().download("https://cdn.example/a.png")[2] == PNG
    assert script.count("GET", "/a.png") == 3
