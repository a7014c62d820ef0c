"""Callback URLs that name the request they belong to (``?request_id=<id>``).

The asset layer sends ``callBackUrl=callback_url_for(receiver_url, request_id)`` with createTask,
so every callback says which ledger entry it answers, even if the run crashed before it could
record the task id.

Example:
    >>> url = callback_url_for("https://hooks.example.com/kie/callback?tenant=a", "req-1")
    >>> url
    'https://hooks.example.com/kie/callback?tenant=a&request_id=req-1'
    >>> request_id_from(url)
    'req-1'
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit, urlunsplit

__all__ = ["DEFAULT_PATH", "REQUEST_ID_PARAM", "callback_url_for", "request_id_from"]

DEFAULT_PATH = "/kie/callback"
"""Where the receiver accepts callbacks."""

REQUEST_ID_PARAM = "request_id"
"""The query parameter that carries the request id."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_request_id(request_id: str) -> str:
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise ValueError(
            "a request id is 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit"
        )
    return request_id


def callback_url_for(base_url: str, request_id: str) -> str:
    """``base_url`` with ``request_id=<request_id>`` added to its query.

    Other query parameters (and the fragment) are kept exactly as written; a ``request_id`` already
    in ``base_url`` is replaced.

    Args:
        base_url: The receiver's public URL (``http(s)://host/kie/callback``).
        request_id: The request's id (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``).

    Raises:
        ValueError: If ``base_url`` is not an absolute http(s) URL or the request id is invalid.
    """
    _check_request_id(request_id)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the callback base URL must be an absolute http(s) URL")
    kept = [
        field
        for field in parts.query.split("&")
        if field and unquote_plus(field.split("=", 1)[0]) != REQUEST_ID_PARAM
    ]
    kept.append(f"{REQUEST_ID_PARAM}={quote(request_id, safe='')}")
    return urlunsplit(parts._replace(query="&".join(kept)))


def request_id_from(url_or_query: str) -> str | None:
    """The request id of a callback URL or query string (``"a=1&request_id=x"``, ``"?..."``).

    Returns:
        The id, or ``None`` when it is missing, given more than once, or not a valid request id.
    """
    text = url_or_query or ""
    if "://" in text or text.startswith("/"):
        query = urlsplit(text).query
    else:
        query = text.split("#", 1)[0].lstrip("?")
    values = parse_qs(query, keep_blank_values=True).get(REQUEST_ID_PARAM, [])
    if len(values) != 1 or not _REQUEST_ID.match(values[0]):
        return None
    return values[0]
