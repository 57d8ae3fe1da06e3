"""A test plugin: ResNeSt-50 and ResNet-50 again, as ``<name>-mutant``, with deliberately wrong preprocessing.

The accuracy tests' mutation controls: on the self-consistent set (labels = the model's own predictions under
the ``modelzoo`` steps) each wrong preset must lower top-1, which proves that the set can catch it. Every preset
here is the ``modelzoo`` steps (squash bilinear to 256x256, crop [16:240], /255, mean/std, CHW float32) written
out with one thing changed; ``control`` changes nothing and must keep top-1 = 1.0.
Load it with ``ZOO_PLUGINS=zoo_mutants`` (tests/plugins is on the tests' PYTHONPATH).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from zoo_core import hookimpl

FAMILY = "mutant"
# preset -> (resample filter name, column shift in pixels, channel order)
MUTATIONS: dict[str, tuple[str, int, str]] = {
    "control": ("BILINEAR", 0, "RGB"),
    "shift": ("BILINEAR", 1, "RGB"),  # the crop one pixel to the right: columns [17:241]
    "bicubic": ("BICUBIC", 0, "RGB"),  # bicubic where the recipe says bilinear
    "bgr": ("BILINEAR", 0, "BGR"),  # channels reversed
}


def _bases() -> list[Any]:
    from zoo_resnest.config import MODELS

    bases = [MODELS[0]]
    try:
        from zoo_resnet.config import MODELS as RESNETS
    except ImportError:  # the example plugin is not installed
        return bases
    return [*bases, RESNETS[0]]


@hookimpl
def zoo_register_models(register: Any) -> None:
    for base in _bases():
        register(replace(base, name=f"{base.name}-mutant", family=FAMILY, preset="control",
                         presets=tuple(MUTATIONS), backend_inputs={}, backend_args={},
                         description=f"{base.name} with deliberately wrong preprocessing (tests only)"))


@hookimpl
def zoo_preprocess(model: Any, preset: str, image_path: Path) -> Any:
    import numpy as np
    from PIL import Image

    resample, shift, order = MUTATIONS[preset]
    size = model.input_shape[-1]
    squash = round(size * 256 / 224)
    top = (squash - size) // 2
    with Image.open(image_path) as img:
        rgb = img.convert("RGB").resize((squash, squash), getattr(Image, resample))
    hwc = np.asarray(rgb, dtype=np.float32)[top : top + size, top + shift : top + shift + size]
    if order == "BGR":
        hwc = hwc[..., ::-1]
    hwc = (hwc / np.float32(255.0) - np.asarray(model.mean, np.float32)) / np.asarray(model.std, np.float32)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)
