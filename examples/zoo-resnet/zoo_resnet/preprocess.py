"""ResNet preprocessing presets: ``modelzoo`` on the host in float32, ``aipp`` leaving the rest to the chip.

``modelzoo`` is ``aipp`` followed by what the static AIPP config (``aipp_resnet50.cfg``) does on an Ascend chip:
crop [16:240] of the 256x256 uint8 image, ``(x - 255*mean) * 1/(255*std)`` per channel, HWC -> CHW float. Both
start from the same decoded and resized pixels, so a model compiled with AIPP sees what the float model sees
(up to float rounding).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

    from zoo_core.specs import ModelSpec


def _squash_size(model: ModelSpec) -> tuple[int, int]:
    """(resized side, crop offset): 256 and 16 for a 224 input; the same proportions for other sizes."""
    size = model.input_shape[-1]
    resized = round(size * 256 / 224)
    return resized, (resized - size) // 2


@lru_cache(maxsize=16)
def _table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``table[c, v] == (float32(v) / 255 - mean[c]) / std[c]`` in float32: normalising uint8 is a lookup."""
    import numpy as np

    values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    table = (values - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


def aipp(image_path: Path, model: ModelSpec) -> np.ndarray:
    """Decode, convert to RGB, squash to 256x256 (bilinear): uint8 HWC ``(256, 256, 3)``, C-contiguous, writable."""
    import numpy as np
    from PIL import Image

    resized, _ = _squash_size(model)
    with Image.open(image_path) as img:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        return np.array(rgb.resize((resized, resized), Image.BILINEAR), dtype=np.uint8)  # a fresh, writable copy


def modelzoo(image_path: Path, model: ModelSpec) -> np.ndarray:
    """``aipp``'s pixels, then crop [16:240], /255, mean/std per channel: CHW float32 ``(3, 224, 224)``."""
    import numpy as np

    size = model.input_shape[-1]
    _, top = _squash_size(model)
    hwc = aipp(image_path, model)[top : top + size, top : top + size]
    table = _table(tuple(model.mean), tuple(model.std))
    out = np.empty((hwc.shape[2], size, size), dtype=np.float32)
    for c in range(hwc.shape[2]):
        np.take(table[c], hwc[:, :, c], out=out[c])
    return out


PRESETS: dict[str, Callable[[Path, ModelSpec], np.ndarray]] = {"modelzoo": modelzoo, "aipp": aipp}
