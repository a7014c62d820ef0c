"""Figures of the reliability runs, for RELIABILITY.md.

Tests call :func:`record`; when ``KIE_RELIABILITY_REPORT`` names a file, each call appends one
JSON line to it (``python -m tests.reliability.soak`` sets it and turns the lines into tables).
"""

from __future__ import annotations

import json
import os
from typing import Any

REPORT_ENV = "KIE_RELIABILITY_REPORT"


def record(section: str, **row: Any) -> None:
    """Append one row of figures to the report file, if one is configured."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as sink:
        sink.write(json.dumps({"section": section, **row}, default=str) + "\n")
