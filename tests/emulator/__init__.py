"""Tests of the local kie.ai emulator (real processes on loopback, raw httpx)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # the package may not be installed in the venv
    sys.path.insert(0, _ROOT)
