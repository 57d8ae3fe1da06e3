"""A test plugin: the tiny ResNeSt with slow preprocessing (and export, on demand), so that a test can interrupt
a run. Both hooks only wait, then answer None: the core's own export and declared preprocessing do the work."""

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
    time.sleep(float(os.environ.get("ZOO_SLOW_EXPORT_SECONDS", "0")))  # room to interrupt a build
    return None  # then the core's generic export


@hookimpl
def zoo_preprocess(model, preset, image_path):
    time.sleep(float(os.environ.get("ZOO_SLOW_SECONDS", "0.05")))
    return None  # then the model's declared preprocessing
