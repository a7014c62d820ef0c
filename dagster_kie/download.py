"""Safe downloads of result images: the policy, its checks, and the streamed download objects.

A result URL comes from a remote service, so fetching it is treated like fetching any untrusted
URL (server-side request forgery): only http(s); the host is resolved and loopback, private,
link-local and other non-global addresses are refused (unless ``allow_private_addresses``);
the address actually connected to is checked again (DNS rebinding); redirects are followed by
hand and only to the same host or hosts listed in ``allowed_redirect_hosts``; the reply must be
``image/*`` whose first bytes are a PNG, JPEG or WebP signature; and the size cap is enforced while
streaming, so memory stays bounded whatever the server sends.

Example:
    >>> policy = DownloadPolicy()
    >>> try:
    ...     check_url("file:///etc/passwd", policy)
    ... except DownloadRefusedError as error:
    ...     print(error.message)
    refused to download file:///etc/passwd: scheme 'file' is not allowed (allowed: https, http)
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from dagster_kie.errors import DownloadRefusedError

__all__ = [
    "AsyncDownload",
    "Download",
    "DownloadGuard",
    "DownloadPolicy",
    "check_addresses",
    "check_url",
    "image_mime",
    "is_public_address",
    "safe_url",
]

MB = 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
SNIFF_BYTES = 12
"""Bytes needed to recognise a PNG, JPEG or WebP file."""


def image_mime(head: bytes) -> str | None:
    """The MIME type of a PNG, JPEG or WebP file from its first bytes, or ``None``."""
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def safe_url(url: str) -> str:
    """The URL without its query string and fragment (signed URLs are capabilities)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + (
        "?…" if parts.query else ""
    )


@dataclass(frozen=True)
class DownloadPolicy:
    """What ``stream_download`` may fetch.

    Attributes:
        max_bytes: Largest file accepted (checked against ``Content-Length`` and while streaming).
        allowed_schemes: URL schemes accepted.
        allow_private_addresses: Allow loopback, private, link-local and other non-global
            addresses (only for a local emulator).
        allowed_redirect_hosts: Hosts a redirect may lead to besides the URL's own host
            (``None``: the same host only).
        max_redirects: Redirects followed at most.
        verify_peer_address: Check the address actually connected to as well (defeats DNS
            rebinding). Turn off only when downloads go through a proxy on a private address.
    """

    max_bytes: int = 50 * MB
    allowed_schemes: tuple[str, ...] = ("https", "http")
    allow_private_addresses: bool = False
    allowed_redirect_hosts: tuple[str, ...] | None = None
    max_redirects: int = 5
    verify_peer_address: bool = True

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        bad = [s for s in self.allowed_schemes if s.lower() not in ("http", "https")]
        if bad:
            raise ValueError(f"only http and https downloads are supported, not {bad}")


_PRIVATE_HINT = (
    "; allow such addresses only for a local emulator: KieResource(allow_private_downloads=True), "
    "`dagster-kie --allow-private-downloads` (or KIE_ALLOW_PRIVATE_DOWNLOADS=1), or "
    "DownloadPolicy(allow_private_addresses=True) for a client you build yourself"
)
"""How to allow private addresses, in the words of each place they are configured."""


def _refuse(url: str, reason: str) -> DownloadRefusedError:
    return DownloadRefusedError(f"refused to download {safe_url(url)}: {reason}")


def check_url(url: str, policy: DownloadPolicy) -> tuple[str, int]:
    """Check a URL's scheme and host.

    Returns:
        ``(host, port)`` to resolve.

    Raises:
        DownloadRefusedError: The scheme is not allowed or there is no host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse(url, "not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in {s.lower() for s in policy.allowed_schemes}:
        allowed = ", ".join(policy.allowed_schemes)
        raise _refuse(url, f"scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
    if not parts.hostname:
        raise _refuse(url, "the URL has no host")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> str | None:
    """The host itself when it is an IP literal (``[::1]`` → ``::1``), else ``None``."""
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None
    return candidate


def check_addresses(url: str, addresses: Iterable[str], policy: DownloadPolicy) -> None:
    """Refuse a host that resolves to (or is) a non-public address.

    Raises:
        DownloadRefusedError: No address, or one of them is loopback/private/link-local/...
    """
    found = list(addresses)
    if not found:
        raise _refuse(url, "the host did not resolve to any address")
    if policy.allow_private_addresses:
        return
    private = [a for a in found if not is_public_address(a)]
    if private:
        raise _refuse(
            url, f"the host resolves to the non-public address {private[0]}{_PRIVATE_HINT}"
        )


def check_peer(url: str, response: httpx.Response, policy: DownloadPolicy) -> None:
    """Refuse a reply that came from a non-public address (DNS rebinding)."""
    if policy.allow_private_addresses or not policy.verify_peer_address:
        return
    stream: Any = response.extensions.get("network_stream")
    if stream is None:
        return
    try:
        peer = stream.get_extra_info("server_addr")
    except Exception:  # a transport without that information: nothing to check
        return
    if isinstance(peer, tuple) and peer and not is_public_address(str(peer[0])):
        raise _refuse(
            url, f"the connection went to the non-public address {peer[0]}{_PRIVATE_HINT}"
        )


def check_redirect(origin_host: str, target: str, policy: DownloadPolicy) -> None:
    """Refuse a redirect to a host other than the original one or an allowed one."""
    host = (urlsplit(target).hostname or "").lower()
    allowed = {origin_host.lower(), *(h.lower() for h in policy.allowed_redirect_hosts or ())}
    if host not in allowed:
        raise _refuse(
            target, f"redirect to host {host!r} is not allowed (allowed: {sorted(allowed)})"
        )


def check_headers(url: str, response: httpx.Response, policy: DownloadPolicy) -> str:
    """Check ``Content-Type`` (``image/*``) and ``Content-Length`` (the cap).

    Returns:
        The content type, without parameters.
    """
    content_type = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    if not content_type.startswith("image/"):
        raise _refuse(url, f"the reply is {content_type or 'untyped'}, not an image")
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > policy.max_bytes:
        raise _refuse(url, f"the file is {int(length)} bytes, over the {policy.max_bytes}-byte cap")
    return content_type


class DownloadGuard:
    """Checks a body while it streams: image signature first, then the size cap.

    Feed it every chunk; it holds back the first bytes until the signature is known.

    Args:
        url: The URL (for messages).
        max_bytes: The size cap.
    """

    def __init__(self, url: str, max_bytes: int) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.received = 0
        self.mime: str | None = None
        self._head = b""

    def feed(self, chunk: bytes) -> bytes:
        """Account for one chunk; return the bytes that may be passed on (maybe none yet)."""
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise _refuse(self.url, f"the file is over the {self.max_bytes}-byte cap")
        if self.mime is not None:
            return chunk
        self._head += chunk
        if len(self._head) < SNIFF_BYTES:
            return b""
        self._check_head()
        head, self._head = self._head, b""
        return head

    def finish(self) -> bytes:
        """The end of the body: check a short file's signature and return what was held."""
        if self.mime is None:
            self._check_head()
        head, self._head = self._head, b""
        return head

    def _check_head(self) -> None:
        mime = image_mime(self._head)
        if mime is None:
            raise _refuse(self.url, "the file is not a PNG, JPEG or WebP image")
        self.mime = mime


_Chunks = TypeVar("_Chunks", Iterator[bytes], AsyncIterator[bytes])


class _DownloadBase(Generic[_Chunks]):
    def __init__(self, url: str, content_type: str, response: httpx.Response, head: bytes,
                 guard: DownloadGuard, chunks: _Chunks) -> None:  # fmt: skip
        self.url = url
        self.content_type = content_type
        self.response = response
        self._head = head
        self._guard = guard
        self._chunks: _Chunks = chunks

    @property
    def status_code(self) -> int:
        """The HTTP status of the final reply."""
        return self.response.status_code

    @property
    def content_length(self) -> int | None:
        """The announced size in bytes (``Content-Length``), when the server sent one."""
        value = self.response.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    @property
    def bytes_received(self) -> int:
        """Bytes read from the network so far."""
        return self._guard.received

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={safe_url(self.url)!r}, content_type={self.content_type!r})"
        )


class Download(_DownloadBase[Iterator[bytes]]):
    """An image being downloaded (sync): iterate :meth:`iter_bytes` once.

    Attributes:
        url: The URL the bytes come from (after redirects or a refresh).
        content_type: The reply's content type (``image/png``, ...).
    """

    def iter_bytes(self) -> Iterator[bytes]:
        """The body in chunks, checked against the policy as it streams."""
        if self._head:
            head, self._head = self._head, b""
            yield head
        for chunk in self._chunks:
            out = self._guard.feed(chunk)
            if out:
                yield out
        tail = self._guard.finish()
        if tail:
            yield tail

    def read(self) -> bytes:
        """The whole body (bounded by the policy's cap)."""
        return b"".join(self.iter_bytes())


class AsyncDownload(_DownloadBase[AsyncIterator[bytes]]):
    """An image being downloaded (async): iterate :meth:`aiter_bytes` once.

    Attributes:
        url: The URL the bytes come from (after redirects or a refresh).
        content_type: The reply's content type (``image/png``, ...).
    """

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks, checked against the policy as it streams."""
        if self._head:
            head, self._head = self._head, b""
            yield head
        async for chunk in self._chunks:
            out = self._guard.feed(chunk)
            if out:
                yield out
        tail = self._guard.finish()
        if tail:
            yield tail

    async def aread(self) -> bytes:
        """The whole body (bounded by the policy's cap)."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])
