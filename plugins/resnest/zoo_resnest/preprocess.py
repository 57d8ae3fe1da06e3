"""ResNeSt preprocessing presets: the ModelZoo script's exact steps, and the upstream evaluation's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

    from zoo_core.specs import ModelSpec


def _normalise(hwc: np.ndarray, model: ModelSpec) -> np.ndarray:
    import numpy as np

    mean = np.asarray(model.mean, dtype=np.float32)
    std = np.asarray(model.std, dtype=np.float32)
    out = (hwc / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


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
        img = img.convert("RGB").resize((resize, resize), Image.BILINEAR)
        hwc = np.asarray(img, dtype=np.float32)[top : top + size, top : top + size, :]
    return _normalise(hwc, model)


def reference(image_path: Path, model: ModelSpec) -> np.ndarray:
    """The upstream evaluation: centre square crop of side ``224/256`` of the short side, bicubic to the
    input size, /255, mean/std, CHW float32."""
    import numpy as np
    from PIL import Image

    size = model.input_shape[-1]
    with Image.open(image_path) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = round(min(w, h) * 224 / 256)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        hwc = np.asarray(img, dtype=np.float32)
    return _normalise(hwc, model)


PRESETS: dict[str, Callable[[Path, "ModelSpec"], "np.ndarray"]] = {"modelzoo": modelzoo, "reference": reference}
