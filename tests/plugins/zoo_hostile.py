"""A hostile test backend ``hostile-cpu`` (ONNX Runtime underneath) whose stage hooks misbehave as
``$ZOO_HOSTILE`` says: ``no-stages`` (registers the backend, implements no zoo_compile/zoo_infer),
``no-infer`` (no zoo_infer),
``compile-str`` (zoo_compile returns a str), ``compile-other`` (a CompiledModel of the built-in onnxruntime),
``compile-bs1`` (a CompiledModel that says batch 1),
``compile-inputs1`` (one whose input takes batch 1),
``infer-str`` (zoo_infer returns a str), ``twice`` (registers its backend name twice), ``register-raises``.
Its option --knob has a type function that raises KeyError."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from zoo_core import hookimpl
from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.options import OptionSpec
from zoo_core.specs import BackendSpec

MODE = os.environ.get("ZOO_HOSTILE", "")
NAME = "hostile-cpu"


@hookimpl
def zoo_register_backends(register) -> None:
    if MODE == "register-raises":
        raise RuntimeError("hostile registration")
    register(BackendSpec(name=NAME, description="ONNX Runtime, misbehaving on purpose", priority=-100))
    if MODE == "twice":
        register(BackendSpec(name=NAME, description="the same name again", priority=-100))


@hookimpl
def zoo_add_options(register) -> None:
    register(OptionSpec("knob", "Its type function has a bug.", backend=NAME, type=lambda text: {}[text]))


def _compile(backend, model, onnx_path: Path, batch_size: int, workdir: Path, options):
    compiled = ort_backend.zoo_compile(backend=backend, model=model, onnx_path=onnx_path, batch_size=batch_size,
                                       workdir=workdir, options=options)
    if MODE == "compile-str":
        return str(compiled.path)
    if MODE == "compile-other":
        return compiled  # backend "onnxruntime": another plugin's
    if MODE == "compile-inputs1":  # says batch 8, but its input takes one image: 8 times the real throughput
        one = tuple(replace(i, shape=(1, *i.shape[1:])) for i in compiled.inputs)
        return replace(compiled, backend=backend.name, inputs=one)
    if MODE == "compile-bs1":  # says batch 1 while it was asked for (and fed) another
        return compiled.__class__(**{**compiled.__dict__, "backend": backend.name, "batch_size": 1})
    return compiled.__class__(**{**compiled.__dict__, "backend": backend.name})


def _infer(compiled, options):
    if MODE == "infer-str":
        return "a runner"
    return ort_backend.OnnxRuntimeRunner(compiled, options.threads)


# Marked copies: a marked _compile would itself be taken for a hook named "_compile".
if MODE != "no-stages":
    zoo_compile = hookimpl(lambda backend, model, onnx_path, batch_size, workdir, options: _compile(
        backend, model, onnx_path, batch_size, workdir, options))
if MODE not in ("no-stages", "no-infer"):
    zoo_infer = hookimpl(lambda compiled, options: _infer(compiled, options))
