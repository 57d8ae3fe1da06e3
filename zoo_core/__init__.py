"""zoo: one command from PyTorch weights to an accuracy and throughput table, on any backend."""

from __future__ import annotations

import pluggy

__version__ = "0.2.0"

#: Mark a plugin's hook implementations: ``@hookimpl def zoo_register_models(register): ...``
hookimpl = pluggy.HookimplMarker("zoo")

__all__ = ["__version__", "hookimpl"]
