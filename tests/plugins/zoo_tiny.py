"""A test plugin: a tiny ResNeSt (the ResNeSt plugin's code, small widths) registered the way any third-party model
is, a declaration. zoo's own tests use it throughout (``ZOO_PLUGINS=zoo_tiny``)."""

from __future__ import annotations

from zoo_core.api import ModelSpec, declare_models

#: A ResNeSt with layers [1, 1, 1, 1] and small widths: exported in about a second, 10 classes, 64x64 input, the
#: core's presets, the seed's input and output names.
TINY_RESNEST = ModelSpec(
    name="resnest-tiny",
    family="resnest",
    factory="zoo_resnest.model:build_resnest",
    factory_kwargs={"layers": (1, 1, 1, 1), "stem_width": 8, "planes": (8, 16, 32, 64), "num_classes": 10},
    input_names=("actual_input_1",),
    input_shape=(3, 64, 64),
    output_names=("output1",),
    num_classes=10,
    description="ResNeSt with layers [1,1,1,1] and small widths, for tests",
)
TINY = TINY_RESNEST

__all__ = ["TINY", "TINY_RESNEST"]

zoo_register_models = declare_models(TINY_RESNEST)
