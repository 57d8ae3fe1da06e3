"""zoo: one command from PyTorch weights to an accuracy and throughput table, on any backend.

From Python, ``zoo_core.run``, ``zoo_core.compare`` and ``zoo_core.report`` do what the commands of the same name
do and return typed results (``zoo_core.results``), and ``zoo_core.load`` reads a results.json; they load on first
use (PEP 562), so ``import zoo_core`` imports neither torch nor numpy nor onnx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.2.0"

#: Mark a plugin's hook implementations: ``@hookimpl def zoo_register_models(register): ...``
hookimpl = pluggy.HookimplMarker("zoo")

if TYPE_CHECKING:
    # `name as name`: an explicit re-export (PEP 484) of what __getattr__ serves
    from .python_api import compare as compare, load as load, report as report, run as run
    from .results import CompareResult as CompareResult, RunComparison as RunComparison, RunResults as RunResults

# name -> the module that defines it, imported when the name is first used
_LAZY = {"run": "python_api", "compare": "python_api", "report": "python_api", "load": "python_api",
         "RunResults": "results", "CompareResult": "results", "RunComparison": "results"}
__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"zoo_core.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
