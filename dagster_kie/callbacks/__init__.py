"""The callback receiver: kie.ai POSTs each task's final state here; it lands in S3.

Pieces (all without Dagster):

- :func:`sign` / :func:`verify` — kie.ai's webhook HMAC signatures;
- :func:`callback_url_for` / :func:`request_id_from` — callback URLs naming their request;
- :class:`CallbackInbox` — verified callbacks in S3 (``{prefix}/_callbacks/{task_id}.json``),
  with a cheap batch view for runs waiting on many tasks;
- :func:`create_app` — the starlette receiver; ``python -m dagster_kie.callbacks`` serves it;
- :class:`CallbackReceiverProcess` — the receiver as a child process (tests, demo).

Importing this package is cheap: starlette, uvicorn, boto3 and pydantic load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CallbackRejected, InvalidTaskId
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from .urls import DEFAULT_PATH, REQUEST_ID_PARAM, callback_url_for, request_id_from

if TYPE_CHECKING:
    from .app import CallbackHandler, create_app
    from .inbox import CallbackInbox, validate_task_id
    from .process import CallbackReceiverProcess
    from .protocols import LedgerEntryLike, LedgerLike
    from .s3 import s3_client_from_env

_LAZY: dict[str, str] = {
    "CallbackHandler": "app",
    "create_app": "app",
    "CallbackInbox": "inbox",
    "validate_task_id": "inbox",
    "CallbackReceiverProcess": "process",
    "LedgerEntryLike": "protocols",
    "LedgerLike": "protocols",
    "s3_client_from_env": "s3",
}

__all__ = [
    "DEFAULT_PATH",
    "REQUEST_ID_PARAM",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallbackHandler",
    "CallbackInbox",
    "CallbackReceiverProcess",
    "CallbackRejected",
    "InvalidTaskId",
    "LedgerEntryLike",
    "LedgerLike",
    "callback_url_for",
    "create_app",
    "request_id_from",
    "s3_client_from_env",
    "sign",
    "validate_task_id",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
