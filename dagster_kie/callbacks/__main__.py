"""``python -m dagster_kie.callbacks`` — run the callback receiver (see ``--help``)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
