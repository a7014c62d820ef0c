"""A faithful local kie.ai server (jobs API, uploads, remix, callbacks, fault injection).

Run it with ``python -m dagster_kie.emulator``, or from Python with :class:`EmulatorProcess`.
Importing this package is cheap: it does not import starlette, uvicorn or httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_API_KEY, EmulatorSettings
from .images import IMAGE_SIZE_DIMENSIONS

if TYPE_CHECKING:
    from .process import EmulatorAdmin, EmulatorProcess

__all__ = [
    "DEFAULT_API_KEY",
    "IMAGE_SIZE_DIMENSIONS",
    "EmulatorAdmin",
    "EmulatorProcess",
    "EmulatorSettings",
]


def __getattr__(name: str) -> Any:
    if name in ("EmulatorProcess", "EmulatorAdmin"):
        from . import process

        return getattr(process, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
