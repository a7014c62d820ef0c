"""HMAC signatures: expiring file URLs and webhook (callback) headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode

__all__ = ["UrlSigner", "webhook_signature"]


class UrlSigner:
    """Signs ``path`` + expiry into ``?expires=<unix>&sig=<hex>`` and checks such URLs."""

    def __init__(self, secret: str | None = None) -> None:
        self._key = (secret or secrets.token_hex(16)).encode()

    def signature(self, path: str, expires: int) -> str:
        """The hex HMAC of one path and expiry."""
        return hmac.new(self._key, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, base_url: str, path: str, expires: float) -> str:
        """An absolute URL for ``path`` (decoded form) valid until ``expires`` (Unix seconds)."""
        exp = int(expires)
        query = urlencode({"expires": exp, "sig": self.signature(path, exp)})
        return f"{base_url}{quote(path)}?{query}"

    def check(self, path: str, expires: str | None, sig: str | None, now: float) -> str | None:
        """``None`` if the signature is good and not expired, else the reason."""
        if not expires or not sig:
            return "missing signature"
        try:
            exp = int(expires)
        except ValueError:
            return "bad expiry"
        if not hmac.compare_digest(self.signature(path, exp), sig):
            return "bad signature"
        if now >= exp:
            return "URL expired"
        return None


def webhook_signature(key: str, task_id: str, timestamp: int) -> str:
    """base64(HMAC-SHA256(key, f"{task_id}.{timestamp}")), as kie.ai signs callbacks."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
