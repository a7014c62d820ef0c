"""The requests every contender gets, and the settings of one benchmark run.

One prompt file of N shorthand records (``{"id", "prompt", "image_size", "seed"}``), the same for
every contender; the baselines read the equivalent createTask bodies from a JSON file so that they
stay plain scripts that import nothing from dagster-kie.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ContenderConfig",
    "gathered_result",
    "load_config",
    "run_contender",
    "write_prompt_file",
]

MODEL = "ideogram/v3-text-to-image"
_SUBJECTS = ("a red fox", "a lighthouse", "a mountain range", "a koi pond", "a city at night")
_STYLES = ("watercolor", "oil painting", "flat design poster", "pencil sketch", "photograph")


def _record(index: int, image_size: str) -> dict[str, Any]:
    subject = _SUBJECTS[index % len(_SUBJECTS)]
    style = _STYLES[(index // len(_SUBJECTS)) % len(_STYLES)]
    return {
        "id": f"bench-{index:05d}",
        "prompt": f"{subject}, {style}, variation {index}",
        "image_size": image_size,
        "seed": index,
    }


def write_prompt_file(
    folder: Path, count: int, image_size: str, *, first: int = 0
) -> tuple[Path, Path]:
    """Write ``bench.jsonl`` (for dagster-kie) and ``bodies.json`` (for the baselines): requests
    number ``first`` to ``first + count - 1``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [_record(i, image_size) for i in range(first, first + count)]
    prompts = folder / "bench.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    bodies = [
        {
            "id": r["id"],
            "body": {"model": MODEL, "input": {k: v for k, v in r.items() if k != "id"}},
        }
        for r in records
    ]
    bodies_path = folder / "bodies.json"
    bodies_path.write_text(json.dumps(bodies), encoding="utf-8")
    return prompts, bodies_path


@dataclass
class ContenderConfig:
    """Everything a contender process needs (written as JSON, path passed on its command line)."""

    base_url: str
    upload_base_url: str
    api_key: str
    bucket: str
    prefix: str
    prompts_path: str
    bodies_path: str
    result_path: str
    create_limit: int
    create_window: float
    queries_per_second: float
    poll_seconds: float = 2.0
    cap_seconds: float | None = None
    concurrency: int = 50
    retry_sleep_seconds: float = 1.0
    callback_url: str | None = None
    """dagster-kie contenders: the callback receiver's URL (callbacks on) or ``None`` (polling)."""

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path


def load_config(path: str) -> ContenderConfig:
    """Read the JSON written by :meth:`ContenderConfig.write`."""
    return ContenderConfig(**json.loads(Path(path).read_text(encoding="utf-8")))


def write_result(config: ContenderConfig, **result: Any) -> None:
    """What a contender reports back (completed requests, its own elapsed time, errors)."""
    Path(config.result_path).write_text(json.dumps(result, indent=2), encoding="utf-8")


def gathered_result(results: Sequence[int | BaseException], started: float) -> dict[str, Any]:
    """The result of per-request coroutines gathered with ``return_exceptions=True``: each gave
    its number of images stored or an error (the first five errors are printed)."""
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors[:5]:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
    return {
        "completed": len(results) - len(errors),
        "images": sum(r for r in results if isinstance(r, int)),
        "failed": len(errors),
        "capped": False,
        "elapsed": time.monotonic() - started,
    }


def run_contender(
    run: Callable[[ContenderConfig], Awaitable[dict[str, Any]]], argv: list[str]
) -> int:
    """A contender's ``main``: load the config named by ``argv[0]``, run, write the result."""
    config = load_config(argv[0])
    write_result(config, **asyncio.run(run(config)))
    return 0
