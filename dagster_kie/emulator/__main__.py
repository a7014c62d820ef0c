"""``python -m dagster_kie.emulator`` — run the local kie.ai emulator."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
