"""The environment fingerprint recorded with every result: versions, CPU, cores."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import __version__
from .specs import cpu_count

PACKAGES = ("torch", "onnx", "onnxruntime", "onnxsim", "numpy")


def package_version(name: str) -> str | None:
    """An installed distribution's version without importing it, or ``None``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, Any]:
    """What a reader needs to compare two runs' numbers."""
    return {
        "zoo": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu": cpu_model(),
        "cores": cpu_count(),
        **{name: package_version(name) for name in PACKAGES},
    }
