"""A test plugin: the tiny ResNeSt with slow preprocessing, so that a test can interrupt an accuracy run."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from zoo_core import hookimpl

from zoo_tiny import TINY

SLOW = replace(TINY, name="tiny-slow", family="slowtest")


@hookimpl
def zoo_register_models(register):
    register(SLOW)


@hookimpl
def zoo_export(model, weights, path, options):
    if model.family != "slowtest":
        return None
    from zoo_core.export import export_onnx

    time.sleep(float(os.environ.get("ZOO_SLOW_EXPORT_SECONDS", "0")))  # room to interrupt a build
    export_onnx(model, weights, path, opset=options.opset)
    return path


@hookimpl
def zoo_preprocess(model, preset, image_path):
    if model.family != "slowtest":
        return None
    from zoo_resnest.preprocess import PRESETS

    time.sleep(float(os.environ.get("ZOO_SLOW_SECONDS", "0.05")))
    return PRESETS[preset](image_path, model)
