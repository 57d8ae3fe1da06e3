"""A test plugin: a tiny ResNeSt (same code, small widths) registered the way any third-party model is."""

from __future__ import annotations

from zoo_core import hookimpl
from zoo_core.specs import ModelSpec

TINY = ModelSpec(
    name="resnest-tiny",
    family="resnest",  # exported by the ResNeSt plugin's zoo_export, like the real models
    factory="zoo_resnest.model:build_resnest",
    factory_kwargs={"layers": (1, 1, 1, 1), "stem_width": 8, "planes": (8, 16, 32, 64), "num_classes": 10},
    input_shape=(3, 64, 64),
    num_classes=10,
    description="ResNeSt with layers [1,1,1,1] and small widths, for tests",
)


@hookimpl
def zoo_register_models(register):
    register(TINY)
