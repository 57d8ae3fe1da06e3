"""Test plugins: backends named alike, to show that the plugin ``zoo plugins`` reports as the owner of a name is the
one that compiles and infers (the other's registration is ignored, and its stage hooks are never called).

``zoo_dup_first`` and ``zoo_dup_second`` (thin modules) both register ``dup-cpu``; the second also registers
``onnxruntime``, the built-in's name. The order of ``$ZOO_PLUGINS`` is their registration order. Each backend runs on
ONNX Runtime (the built-in backend's code) and appends "<plugin> <stage> <backend>" to the file ``$ZOO_DUP_LOG``.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo_core import hookimpl
from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.specs import BackendSpec


def _log(plugin: str, stage: str, backend: str) -> None:
    with open(os.environ["ZOO_DUP_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{plugin} {stage} {backend}\n")


class DuplicateBackend:
    """A backend plugin object that registers ``names`` and runs them on ONNX Runtime, logging each stage."""

    def __init__(self, plugin: str, names: tuple[str, ...]) -> None:
        self.plugin = plugin
        self.names = names

    @hookimpl
    def zoo_register_backends(self, register) -> None:
        for name in self.names:
            register(BackendSpec(name=name, description=f"ONNX Runtime, as registered by {self.plugin}",
                                 priority=-100))

    @hookimpl
    def zoo_compile(self, backend, model, onnx_path: Path, batch_size: int, workdir: Path, options):
        _log(self.plugin, "compile", backend.name)
        compiled = ort_backend.zoo_compile(backend=backend, model=model, onnx_path=onnx_path, batch_size=batch_size,
                                           workdir=workdir, options=options)
        return compiled.__class__(**{**compiled.__dict__, "backend": backend.name})

    @hookimpl
    def zoo_infer(self, compiled, options):
        _log(self.plugin, "infer", compiled.backend)
        return ort_backend.OnnxRuntimeRunner(compiled, options.threads)
