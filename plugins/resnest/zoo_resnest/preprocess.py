"""ResNeSt preprocessing presets: the ModelZoo script's exact steps, and the upstream evaluation's.

Both presets are bit-exact with a literal float32 implementation of their documented steps (see
``tests/test_preprocess.py``), and ``reference`` with upstream's own ``resnest.transforms.ECenterCrop`` plus
ToTensor and Normalize (``tests/test_trust_precision.py``); the speed-ups below change no output bit:

- The normalisation ``(x / 255 - mean) / std`` in float32 depends only on the channel and the 8-bit value
  ``x``, so it is a 3 x 256 lookup table computed once with exactly those float32 operations, in that order.
  Applying it to the uint8 pixels gives the same bits as the per-pixel arithmetic, writes CHW directly and
  never builds a float32 HWC copy.
- ``modelzoo`` crops the uint8 pixels before anything is converted to float.
- The resize itself is left whole. Computing only the cropped region (``resize(..., box=...)``) is NOT exact:
  recent Pillow picks the order of its two passes (horizontal or vertical first) from the geometry, the
  region resize can pick the other order, and the rounding between the passes then differs (e.g. 375x500).
- An image that is already RGB is not copied by ``convert('RGB')``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

    from zoo_core.specs import ModelSpec


@lru_cache(maxsize=16)
def _table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``table[c, v] == (float32(v) / 255 - mean[c]) / std[c]``, each step in float32, in the seed's order."""
    import numpy as np

    values = np.arange(256, dtype=np.float32)[None, :]
    table = values / np.float32(255.0)
    table = table - np.asarray(mean, dtype=np.float32)[:, None]
    table = table / np.asarray(std, dtype=np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


def _normalise(hwc: np.ndarray, model: ModelSpec) -> np.ndarray:
    """uint8 HWC pixels -> normalised float32 CHW (C-contiguous, a fresh array)."""
    import numpy as np

    table = _table(tuple(model.mean), tuple(model.std))
    height, width, channels = hwc.shape
    out = np.empty((channels, height, width), dtype=np.float32)
    for c in range(channels):
        # uint8 indices never leave [0, 256): "wrap" is a no-op that skips take's buffered bounds check.
        np.take(table[c], hwc[:, :, c], out=out[c], mode="wrap")
    return out


def _rgb(img):  # noqa: ANN001, ANN202
    """``img.convert('RGB')``, without the copy that convert makes of an image already RGB."""
    if img.mode == "RGB":
        img.load()
        return img
    return img.convert("RGB")


def modelzoo(image_path: Path, model: ModelSpec) -> np.ndarray:
    """The seed script: squash to 256x256 (bilinear), crop [16:240], /255, mean/std, CHW float32.

    For other input sizes the same proportions hold: squash to ``size * 256 / 224``, centre crop ``size``.
    """
    import numpy as np
    from PIL import Image

    size = model.input_shape[-1]
    resize = round(size * 256 / 224)
    top = (resize - size) // 2
    with Image.open(image_path) as img:
        img = _rgb(img)
        hwc = np.asarray(img.resize((resize, resize), Image.BILINEAR))[top : top + size, top : top + size]
    return _normalise(hwc, model)


def reference(image_path: Path, model: ModelSpec) -> np.ndarray:
    """The upstream evaluation (``resnest.transforms.ECenterCrop`` then ToTensor and Normalize): a centre crop
    of ``size / (size + 32)`` of the short side, bicubic to ``size x size``, /255, mean/std, CHW float32, where
    ``size`` is the model's input size (224/256 for resnest50, 320/352 for resnest200, 416/448 for resnest269).

    Rounding, as upstream's code does it: ``crop = size / (size + 32) * short`` stays a float;
    ``top = int(round((h - crop) / 2))``, ``left = int(round((w - crop) / 2))`` (Python's round, half to even);
    Pillow then rounds the float box corners ``left + crop`` and ``top + crop`` the same way, so the crop can be
    one pixel wider than tall (or the reverse), and the resize squashes it to a square.
    """
    import numpy as np
    from PIL import Image

    size = model.input_shape[-1]
    with Image.open(image_path) as img:
        img = _rgb(img)
        w, h = img.size
        crop = float(size) / (size + 32) * min(w, h)
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        box = (left, top, int(round(left + crop)), int(round(top + crop)))
        img = img.crop(box).resize((size, size), Image.BICUBIC)
        hwc = np.asarray(img)
    return _normalise(hwc, model)


PRESETS: dict[str, Callable[[Path, "ModelSpec"], "np.ndarray"]] = {"modelzoo": modelzoo, "reference": reference}
