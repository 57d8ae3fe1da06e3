"""A test plugin: the tiny ResNeSt again, each copy with one declaration that static AIPP cannot express (as its
default preset), and one with two presets AIPP can express (tests/test_aipp.py). Load it with
``ZOO_PLUGINS=zoo_tiny,zoo_aipp_cases``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zoo_core import hookimpl
from zoo_core.api import CenterCrop, Preprocessing, Resize

_SQUASH = Resize("squash", crop_fraction=0.875, rounding="round")

#: model name -> (its one preset, and why --aipp refuses it, as the error says)
REFUSED: dict[str, tuple[str | Preprocessing, str]] = {
    "aipp-reference": ("reference", "does not end in a centre crop"),
    "aipp-bgr": (Preprocessing("bgr", steps=(_SQUASH, CenterCrop()), channels="BGR"), "orders channels BGR"),
    "aipp-unnormalised": (Preprocessing("plain", steps=(_SQUASH, CenterCrop()), normalize=False),
                          "has no mean/std normalisation"),
    "aipp-hwc": (Preprocessing("hwc", steps=(_SQUASH, CenterCrop()), layout="HWC"), "lays samples out HWC"),
    "aipp-short-side": (Preprocessing("short", steps=(Resize("short_side", size=73), CenterCrop())),
                        "resizes with mode 'short_side'"),
    "aipp-crop-only": (Preprocessing("crop", steps=(CenterCrop(),)), "crops an image it has not resized"),
    "aipp-share": (Preprocessing("share", steps=(_SQUASH, CenterCrop(fraction=0.875))),
                   "crops a share of each image's short side"),
    "aipp-padded": (Preprocessing("padded", steps=(Resize("squash", size=48), CenterCrop())),
                    "crops 64x64 out of a smaller 48x48 image"),
    "aipp-undeclared": ("custom", "is prepared by its plugin's own code"),
}

#: two presets AIPP expresses, with different configs: squash to 73 or to 80, crop 64
WIDE = Preprocessing("wide", steps=(Resize("squash", size=80), CenterCrop()))


@hookimpl
def zoo_register_models(register: Any) -> None:
    from zoo_tiny import TINY

    for name, (preset, _) in REFUSED.items():
        register(replace(TINY, name=name, presets=(preset,),
                         preset=preset if isinstance(preset, str) else preset.name))
    register(replace(TINY, name="aipp-two", presets=("modelzoo", WIDE)))
