"""Hostile test models: the tiny ResNeSt with odd preprocessing declarations and odd mean/std, one model a name
(``hostile-<case>``); ``$ZOO_HOSTILE_MODEL`` names the one case to register (all when unset)."""

from __future__ import annotations

import os
from dataclasses import replace

from zoo_core import hookimpl
from zoo_core.preprocessing import CenterCrop, Preprocessing, Resize
from zoo_tiny import TINY_RESNEST as TINY


def _preset(*steps, **values) -> tuple[Preprocessing]:
    return (Preprocessing("odd", steps=steps, **values),)


CASES = {
    "crop-over-resize": dict(presets=_preset(Resize(size=16), CenterCrop())),
    "size-1": dict(presets=_preset(Resize(size=1), CenterCrop(size=1))),
    "fraction-1": dict(presets=_preset(Resize(crop_fraction=1.0), CenterCrop())),
    "fraction-tiny": dict(presets=_preset(Resize(crop_fraction=1e-9), CenterCrop())),
    "non-square": dict(input_shape=(3, 32, 48), presets=_preset(Resize(crop_fraction=0.875), CenterCrop())),
    "short-side": dict(input_shape=(3, 32, 48), presets=_preset(Resize("short_side", crop_fraction=0.875),
                                                                CenterCrop())),
    "nan-mean": dict(mean=(float("nan"), 0.5, 0.5), presets=_preset(Resize(), CenterCrop())),
    "zero-std": dict(std=(0.0, 0.2, 0.2), presets=_preset(Resize(), CenterCrop())),
    "shape-mismatch": dict(presets=_preset(Resize(size=40), CenterCrop(size=30))),
    "shadow": dict(presets=(Preprocessing("modelzoo", steps=(Resize(size=40), CenterCrop(size=30))),)),
}


@hookimpl
def zoo_register_models(register) -> None:
    wanted = os.environ.get("ZOO_HOSTILE_MODEL")
    for case, changes in CASES.items():
        if wanted in (None, case):
            register(replace(TINY, name=f"hostile-{case}", preset=changes["presets"][0].name, **changes))
