"""zoo's public API for plugins: everything a model, dataset, backend or engine plugin needs, in one module.

A plugin imports from here only; the other ``zoo_core`` modules are the core's own and may change between
releases. Names load on first use (PEP 562), so ``from zoo_core.api import ModelSpec`` in a plugin costs
``zoo list`` nothing beyond the module that defines it, and never imports torch or numpy.

A typical model plugin is a declaration::

    from zoo_core.api import ModelSpec, WeightsSpec, declare_models

    MODELS = (ModelSpec(name="mynet", family="mynet", factory="zoo_mynet.model:build", ...),)
    zoo_register_models = declare_models(*MODELS)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from . import __version__, hookimpl

if TYPE_CHECKING:
    # `name as name`: an explicit re-export (PEP 484), so type checkers and linters see what __getattr__ serves
    from .datasets import (
        IMAGE_SUFFIXES as IMAGE_SUFFIXES, Classes as Classes, Dataset as Dataset, Sample as Sample,
        list_images as list_images, scan as scan, shown_name as shown_name, text_of as text_of,
    )
    from .engines import Engine as Engine, EngineSpec as EngineSpec
    from .errors import (
        CheckError as CheckError, PluginError as PluginError, UsageError as UsageError, ZooError as ZooError,
    )
    from .export import build_module as build_module, export_onnx as export_onnx, sample_batch as sample_batch
    from .options import OptionSpec as OptionSpec
    from .profiling import Profile as Profile, timed_calls as timed_calls
    from .preprocessing import (
        PRESETS as PRESETS, CenterCrop as CenterCrop, Preprocessing as Preprocessing, Resize as Resize,
        execute as execute,
    )
    from .runtime import (
        CompiledModel as CompiledModel, InputInfo as InputInfo, Runner as Runner, compiled_inputs as compiled_inputs,
    )
    from .specs import (
        Accuracy as Accuracy, BackendSpec as BackendSpec, DatasetSpec as DatasetSpec, ModelSpec as ModelSpec,
        RunOptions as RunOptions, WeightsSpec as WeightsSpec,
    )
    from .weights import WeightsRef as WeightsRef, load_state_dict as load_state_dict

# name -> the module that defines it
_EXPORTS = {
    # what a plugin declares
    "ModelSpec": "specs", "WeightsSpec": "specs", "Accuracy": "specs", "DatasetSpec": "specs",
    "BackendSpec": "specs", "RunOptions": "specs", "OptionSpec": "options", "EngineSpec": "engines",
    # declarative preprocessing
    "Preprocessing": "preprocessing", "Resize": "preprocessing", "CenterCrop": "preprocessing",
    "PRESETS": "preprocessing", "execute": "preprocessing",
    # what a backend compiles and runs
    "CompiledModel": "runtime", "InputInfo": "runtime", "Runner": "runtime", "compiled_inputs": "runtime",
    "Engine": "engines",
    "Profile": "profiling", "timed_calls": "profiling",
    # datasets
    "Dataset": "datasets", "Sample": "datasets", "Classes": "datasets", "scan": "datasets", "list_images": "datasets",
    "text_of": "datasets", "shown_name": "datasets", "IMAGE_SUFFIXES": "datasets",
    # weights and export, for a plugin that does more than the core's default
    "WeightsRef": "weights", "load_state_dict": "weights", "build_module": "export", "export_onnx": "export",
    "sample_batch": "export",
    # errors: ZooError prints one Error/Note pair; UsageError exits 2; CheckError 4; PluginError is a plugin's bug
    "ZooError": "errors", "UsageError": "errors", "CheckError": "errors", "PluginError": "errors",
}

__all__ = ["__version__", "declare_models", "hookimpl", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo_core.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"zoo_core.{module}"), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def declare_models(*specs: ModelSpec) -> Callable[..., None]:
    """The ``zoo_register_models`` hook of a plugin that only declares models: assign it to that name.

    ``zoo_register_models = declare_models(*MODELS)`` registers each spec, in order, as this plugin's.
    """

    @hookimpl
    def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
        for spec in specs:
            register(spec)

    return zoo_register_models
