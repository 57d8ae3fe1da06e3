"""A test plugin: a backend ``opt-cpu`` (ONNX Runtime underneath) that adds its own command-line options and reads
them, as a third-party backend would (tests/test_backend_options.py).

Its options: ``--opt-level N`` (int), ``--tag TEXT`` (repeatable), ``--fast`` (a flag), ``secret_knob`` (no flag:
``--backend-opt secret_knob=...`` only) and ``--ray-knob`` for the ``ray`` engine. Two more are wrong on purpose:
one for a backend this plugin does not register, one on zoo's own ``--device``; ``zoo plugins`` reports both.
Each hook that runs appends one JSON line to ``$ZOO_OPTIONED_LOG`` (when set): the stage and the options it saw.
"""

from __future__ import annotations

import json
import os

from zoo_core import hookimpl
from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.options import OptionSpec
from zoo_core.specs import BackendSpec

NAME = "opt-cpu"
DEVICE_NAME = "OptChip 7"


def _log(stage: str, **facts: object) -> None:
    if os.environ.get("ZOO_OPTIONED_LOG"):
        with open(os.environ["ZOO_OPTIONED_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps({"stage": stage, **facts}) + "\n")


@hookimpl
def zoo_register_backends(register) -> None:
    register(BackendSpec(name=NAME, description="ONNX Runtime with options of its own", priority=-100))


@hookimpl
def zoo_add_options(register) -> None:
    _log("add_options")
    register(OptionSpec("opt-level", "How hard to optimize.", backend=NAME, type=int, metavar="N"))
    register(OptionSpec("tag", "A tag; repeatable.", backend=NAME, multiple=True))
    register(OptionSpec("fast", "Go fast.", backend=NAME, type=bool))
    register(OptionSpec("secret-knob", "Only through --backend-opt.", backend=NAME, command_line=False))
    register(OptionSpec("ray-knob", "An option of the ray engine.", engine="ray"))
    register(OptionSpec("not-mine", "For a backend another plugin registers.", backend="onnxruntime"))
    register(OptionSpec("device", "Clashes with zoo's own --device.", backend=NAME))


@hookimpl
def zoo_compile(backend, model, onnx_path, batch_size, workdir, options):
    _log("compile", options=dict(options.backend_options))
    compiled = ort_backend.zoo_compile(backend=backend, model=model, onnx_path=onnx_path, batch_size=batch_size,
                                       workdir=workdir, options=options)
    return compiled.__class__(**{**compiled.__dict__, "backend": NAME})


@hookimpl
def zoo_infer(compiled, options):
    _log("infer", options=dict(options.backend_options))
    return ort_backend.OnnxRuntimeRunner(compiled, options.threads)


@hookimpl
def zoo_device_name(env):
    return f"{DEVICE_NAME} ({env.get('cores')} cores)"
