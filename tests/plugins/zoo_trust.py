"""A test plugin: tiny ResNeSt variants whose preprocessing is wrong on purpose, one way per model name.

``tiny-raises`` raises on every image, ``tiny-raises-later`` from the third image on, ``tiny-shape`` returns a sample
of the wrong shape, ``tiny-dtype`` one of
the wrong dtype, ``tiny-shape-later`` a wrong shape from the third image on, and ``tiny-nopre`` lists a preset
``custom`` that it neither declares nor prepares.
"""

from __future__ import annotations

from dataclasses import replace

from zoo_core import hookimpl

from zoo_tiny import TINY

RAISES = replace(TINY, name="tiny-raises")
RAISES_LATER = replace(TINY, name="tiny-raises-later")
SHAPE = replace(TINY, name="tiny-shape")
DTYPE = replace(TINY, name="tiny-dtype")
SHAPE_LATER = replace(TINY, name="tiny-shape-later")
NO_PREPROCESSING = replace(TINY, name="tiny-nopre", preset="custom", presets=("custom",))


@hookimpl
def zoo_register_models(register):
    for spec in (RAISES, RAISES_LATER, SHAPE, DTYPE, SHAPE_LATER, NO_PREPROCESSING):
        register(spec)


def _broken_step(image_path):
    raise ValueError(f"plugin bug while preprocessing {image_path.name}")


@hookimpl
def zoo_preprocess(model, preset, image_path):
    from zoo_core.preprocessing import apply

    if model.name == NO_PREPROCESSING.name:
        return None  # and "custom" has no declaration
    first_two = image_path.stem.endswith(("01", "02"))
    if model.name == RAISES.name or (model.name == RAISES_LATER.name and not first_two):
        _broken_step(image_path)
    array = apply(model, preset, image_path)
    if model.name == SHAPE.name or (model.name == SHAPE_LATER.name and not first_two):
        return array[:, :32, :32].copy()
    if model.name == DTYPE.name:
        return array.astype("float64")
    return array
