"""Declarative preprocessing: a model's input preparation as data (resize, crop, value scale, mean/std, dtype,
layout, channel order), the core's named presets, and the one implementation that executes a declaration.

In the spirit of timm's pretrained configs (``crop_pct``, ``interpolation``, ``mean``/``std``) and Open Model
Zoo's accuracy-checker preprocessing lists: a model plugin declares what its input is, the core prepares it.

The implementation is bit-exact with a literal float32 implementation of the declared steps (see
``tests/test_preprocess.py`` and ``tests/test_preprocessing_declared.py``) and, for ``reference``, with upstream
ResNeSt's own ``ECenterCrop`` plus ToTensor and Normalize (``tests/test_trust_precision.py``). The speed-ups
below change no output bit:

- The normalisation ``(x / scale - mean) / std`` in float32 depends only on the channel and the 8-bit value
  ``x``, so it is a 3 x 256 lookup table computed once per (scale, mean, std) with exactly those float32
  operations, in that order. Applying it to the uint8 pixels gives the same bits as the per-pixel arithmetic,
  writes the output layout directly and never builds a float32 HWC copy.
- Crops that no resize follows are taken from the uint8 pixels (a view), before anything becomes float.
- A resize is done on the whole image. Resizing only the cropped region (``resize(..., box=...)``) is NOT
  exact: recent Pillow picks the order of its two passes (horizontal or vertical first) from the geometry, the
  region resize can pick the other order, and the rounding between the passes then differs (e.g. 375x500).
- An image that is already RGB is not copied by ``convert('RGB')``.

Neither numpy nor Pillow is imported until an image is prepared (``zoo list`` stays fast); torch never is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

from .errors import EXIT_BUG, ZooError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .specs import ModelSpec

__all__ = ["CenterCrop", "DeclarationError", "PRESETS", "Preprocessing", "Resize", "apply", "declaration",
           "execute"]

RESIZE_MODES = ("squash", "short_side")
ROUNDINGS = ("floor", "round")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")  # Pillow's resampling filters
DTYPES = ("float32", "uint8")
LAYOUTS = ("CHW", "HWC")
CHANNEL_ORDERS = ("RGB", "BGR")


class DeclarationError(ValueError):
    """A preprocessing declaration that cannot be executed: one line saying which field and why.

    Raised when the declaration is made (a plugin's module or its registration), where zoo reports it as that
    plugin's problem (``zoo plugins``) and every other model still works.
    """


def _choice(owner: str, field_name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DeclarationError(f"{owner}: {field_name}={value!r} is not one of {', '.join(allowed)}")


def _positive_int(owner: str, field_name: str, value: Any, minimum: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise DeclarationError(f"{owner}: {field_name}={value!r} must be a whole number of at least {minimum}")


def _fraction(owner: str, field_name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value <= 1):  # NaN fails the comparison too
        raise DeclarationError(f"{owner}: {field_name}={value!r} must be a number in (0, 1], e.g. 0.875")


def _at_most_one(owner: str, **given: Any) -> None:
    named = [name for name, value in given.items() if value is not None]
    if len(named) > 1:
        raise DeclarationError(f"{owner}: give at most one of {', '.join(given)} (got {', '.join(named)})")


def check_mean_std(declared: Any, owner: str) -> None:
    """``declared.mean`` and ``declared.std`` (a Preprocessing's or a ModelSpec's, frozen; lists become tuples):
    ``None`` or 3 finite numbers, one a channel, no std of zero."""
    for field_name in ("mean", "std"):
        value = getattr(declared, field_name)
        if value is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(declared, field_name, value)
        if not isinstance(value, tuple) or len(value) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            raise DeclarationError(f"{owner}: {field_name}={value!r} must be 3 finite numbers, one a channel")
    if declared.std is not None and 0 in declared.std:
        raise DeclarationError(f"{owner}: std={declared.std!r} has a zero (values are divided by it)")


def _round(value: float, rounding: str) -> int:
    return math.floor(value) if rounding == "floor" else int(round(value))


# -------------------------------------------------------------------------
# The steps
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """Resize the image to a target side.

    The target side is ``size``, else ``rounding(input_side / crop_fraction)`` (timm's
    ``floor(img_size / crop_pct)``; the ModelZoo seed's 256 for 224 is ``round(224 / 0.875)``), else the
    model's input side. ``mode="squash"`` resizes both sides to the target (the aspect ratio is not kept; a
    non-square model input gives a non-square target); ``mode="short_side"`` is torchvision's ``Resize(int)``:
    the short side becomes the target and the long side ``int(target * long / short)`` (the model's shorter
    input side is the one divided by ``crop_fraction``).
    """

    mode: str = "squash"
    size: int | None = None
    crop_fraction: float | None = None
    rounding: str = "floor"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        _choice("Resize", "mode", self.mode, RESIZE_MODES)
        _positive_int("Resize", "size", self.size)
        _fraction("Resize", "crop_fraction", self.crop_fraction)
        _at_most_one("Resize", size=self.size, crop_fraction=self.crop_fraction)
        _choice("Resize", "rounding", self.rounding, ROUNDINGS)
        _choice("Resize", "interpolation", self.interpolation, INTERPOLATIONS)

    def target(self, side: int) -> int:
        """The target side for a model input side ``side``."""
        if self.size is not None:
            return self.size
        if self.crop_fraction is not None:
            return _round(side / self.crop_fraction, self.rounding)
        return side


@dataclass(frozen=True)
class CenterCrop:
    """Keep the centre of the image.

    - ``size`` (or nothing: the model's input height x width): a box of that size, from
      ``(h - size) // 2`` (``rounding="floor"``, the ModelZoo seed) or ``int(round((h - size) / 2))``
      (``"round"``, torchvision's ``CenterCrop``), the same for the width. An image smaller than the box is
      padded with zeros first, as torchvision does: ``(size - h) // 2`` rows before, the rest after.
    - ``margin`` or ``fraction``: a square whose side is a fraction of the image's short side, ``input /
      (input + margin)`` (upstream ResNeSt's ``ECenterCrop``: margin 32) or ``fraction``. With ``"round"`` the side
      stays a float ``c``, as upstream's code keeps it: ``top = int(round((h - c) / 2))``, the far corner
      ``int(round(top + c))`` (how Pillow rounds a float box), so the box can be one pixel wider than tall or
      the reverse. With ``"floor"`` the side is ``max(1, floor(c))`` and the offsets are floored as above.
    """

    size: int | None = None
    margin: int | None = None
    fraction: float | None = None
    rounding: str = "floor"

    def __post_init__(self) -> None:
        _positive_int("CenterCrop", "size", self.size)
        _positive_int("CenterCrop", "margin", self.margin, minimum=0)
        _fraction("CenterCrop", "fraction", self.fraction)
        _at_most_one("CenterCrop", size=self.size, margin=self.margin, fraction=self.fraction)
        _choice("CenterCrop", "rounding", self.rounding, ROUNDINGS)

    def box(self, width: int, height: int, model_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in the image's pixels; may reach outside it (padding)."""
        if self.margin is None and self.fraction is None:
            crop_h, crop_w = (self.size, self.size) if self.size is not None else model_size
            if self.rounding == "floor":
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
            else:
                top, left = int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
            return left, top, left + crop_w, top + crop_h
        side = min(model_size)
        if self.fraction is not None:
            share = self.fraction
        else:
            assert self.margin is not None  # margin=None with fraction=None returned above
            share = float(side) / (side + self.margin)
        crop = share * min(width, height)
        if self.rounding == "floor":
            whole = max(1, math.floor(crop))
            top, left = (height - whole) // 2, (width - whole) // 2
            return left, top, left + whole, top + whole
        top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
        return left, top, int(round(left + crop)), int(round(top + crop))


Step = Union[Resize, CenterCrop]


# -------------------------------------------------------------------------
# The declaration
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """A named preprocessing: the geometric ``steps`` on the decoded RGB image, in order, then the values.

    Values: float32 output is ``(x / scale - mean) / std`` per channel in float32 (``scale=None``: no division;
    ``normalize=False``: no mean/std); ``mean`` and ``std`` default to the model's and are in the order of
    ``channels``. uint8 output is the 8-bit pixels as they are (``scale=None, normalize=False``), e.g. for a chip
    that normalises them itself (Ascend AIPP). ``layout`` is the sample's axis order, without the batch axis;
    ``channels="BGR"`` reverses the channel order.
    """

    name: str
    steps: tuple[Step, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = 255.0
    normalize: bool = True
    dtype: str = "float32"
    layout: str = "CHW"
    channels: str = "RGB"
    description: str = ""

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name or any(c.isspace() or not c.isprintable() for c in name):
            raise DeclarationError(f"Preprocessing: name={self.name!r} must be a non-empty word (no spaces)")
        owner = f"preprocessing {self.name!r}"
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", tuple(self.steps))
        if not isinstance(self.steps, tuple) or not all(isinstance(s, (Resize, CenterCrop)) for s in self.steps):
            raise DeclarationError(f"{owner}: steps must be a tuple of Resize and CenterCrop, got {self.steps!r}")
        check_mean_std(self, owner)
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, (int, float))
                                       or not 0 < self.scale < math.inf):
            raise DeclarationError(f"{owner}: scale={self.scale!r} must be a positive number (or None)")
        if not isinstance(self.normalize, bool):
            raise DeclarationError(f"{owner}: normalize={self.normalize!r} must be True or False")
        if not self.normalize and (self.mean is not None or self.std is not None):
            raise DeclarationError(f"{owner}: mean/std are given but normalize=False would not use them")
        _choice(owner, "dtype", self.dtype, DTYPES)
        _choice(owner, "layout", self.layout, LAYOUTS)
        _choice(owner, "channels", self.channels, CHANNEL_ORDERS)
        if self.dtype == "uint8" and (self.scale is not None or self.normalize):
            raise DeclarationError(f"{owner}: dtype='uint8' keeps the 8-bit pixels as they are; "
                                   "set scale=None and normalize=False")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: each step a dict with its ``step`` kind first."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "steps":
                value = [{"step": type(s).__name__, **{g.name: getattr(s, g.name) for g in fields(s)}}
                         for s in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


#: The core's named presets. A model lists them by name in ``ModelSpec.presets``.
PRESETS: dict[str, Preprocessing] = {
    "modelzoo": Preprocessing(
        "modelzoo",
        steps=(Resize("squash", crop_fraction=0.875, rounding="round", interpolation="bilinear"),
               CenterCrop(rounding="floor")),
        description="the Ascend ModelZoo seed script: squash to 256x256 bilinear (input / 0.875), centre crop "
                    "[16:240], /255, mean/std, CHW float32"),
    "reference": Preprocessing(
        "reference",
        steps=(CenterCrop(margin=32, rounding="round"), Resize("squash", interpolation="bicubic")),
        description="upstream ResNeSt's evaluation (ECenterCrop): centre crop input/(input+32) of the short "
                    "side, bicubic to the input size, /255, mean/std, CHW float32"),
}


def declaration(model: ModelSpec, preset: str) -> Preprocessing | None:
    """The declaration ``model`` runs for ``preset``: its own, else the core preset of that name; ``None`` when
    the model lists the name without declaring it (its plugin's ``zoo_preprocess`` prepares it). A usage error
    when the model has no such preset."""
    return model.preprocessing(preset)


def apply(model: ModelSpec, preset: str, image_path: Path) -> np.ndarray:
    """Prepare the image at ``image_path`` for ``model`` with its preset ``preset``: the core's default
    ``zoo_preprocess``. A fresh, C-contiguous, writable array.

    A ZooError (the plugin's bug, exit 1) when the preset has no declaration: the model lists a name that is no
    core preset, and its plugin does not prepare it.
    """
    declared = declaration(model, preset)
    if declared is None:
        raise ZooError(f"model {model.name!r} lists preprocessing preset {preset!r}, which is no core preset and "
                       "has no declaration", exit_code=EXIT_BUG,
                       note=f"its plugin {model.plugin!r} must declare it (a Preprocessing in the model's presets) "
                            "or prepare it in its zoo_preprocess; report it to the plugin's author")
    return execute(declared, model, image_path)


# -------------------------------------------------------------------------
# The implementation
# -------------------------------------------------------------------------


def _model_size(model: ModelSpec) -> tuple[int, int]:
    """The model's input (height, width), from its per-sample shape and format."""
    shape = tuple(model.input_shape)
    if len(shape) < 2:
        raise ZooError(f"model {model.name!r} has input shape {list(shape)}, not an image", exit_code=EXIT_BUG,
                       note="image preprocessing needs an (H, W) in the model's input; report it to its plugin")
    height, width = shape[-3:-1] if str(model.input_format).upper() == "NHWC" and len(shape) >= 3 else shape[-2:]
    return int(height), int(width)


def _resample(name: str) -> int:
    from PIL import Image

    return getattr(getattr(Image, "Resampling", Image), name.upper())


def beyond_8_bits(img: Image.Image) -> str:
    """Why ``img``'s pixels do not fit 8 bits (a 16-bit or float image with values outside 0..255, which
    ``convert('RGB')`` would clip), or ``""``."""
    if img.mode not in ("I", "F") and not img.mode.startswith("I;16"):
        return ""
    low, high = cast("tuple[float, float]", img.getextrema())  # modes I, F and I;16 have one band
    if 0 <= low and high <= 255:
        return ""
    return f"its pixels (mode {img.mode}) range {low:g}..{high:g}: zoo reads images of 8 bits a channel"


def _rgb(img: Image.Image) -> Image.Image:
    """``img.convert('RGB')``, without the copy that convert makes of an image already RGB."""
    deep = beyond_8_bits(img)
    if deep:  # clipped to 255, the image would become another one, silently
        raise ValueError(deep)
    if img.mode == "RGB":
        img.load()
        return img
    return img.convert("RGB")


def _resize(img: Image.Image, step: Resize, model_size: tuple[int, int]) -> Image.Image:
    width, height = img.size
    if step.mode == "squash":
        size = (step.target(model_size[1]), step.target(model_size[0]))
    else:  # torchvision's _compute_resized_output_size for an int size
        target = step.target(min(model_size))
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(target * long / short)
        size = (target, new_long) if width <= height else (new_long, target)
    return img.resize(size, _resample(step.interpolation))


def _crop_array(hwc: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``hwc[top:bottom, left:right]`` (a view); outside the image, zeros, placed as torchvision pads."""
    import numpy as np

    left, top, right, bottom = box
    height, width = hwc.shape[:2]
    if left >= 0 and top >= 0 and right <= width and bottom <= height:
        return hwc[top:bottom, left:right]
    out = np.zeros((bottom - top, right - left, hwc.shape[2]), dtype=hwc.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(bottom, height), min(right, width)
    if src_bottom > src_top and src_right > src_left:
        out[src_top - top : src_bottom - top, src_left - left : src_right - left] = \
            hwc[src_top:src_bottom, src_left:src_right]
    return out


def _padded_box(step: CenterCrop, width: int, height: int, model_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The crop box, shifted as torchvision's pad-then-crop places it when the box is larger than the image."""
    left, top, right, bottom = step.box(width, height, model_size)
    crop_w, crop_h = right - left, bottom - top
    if crop_h > height:
        top = -((crop_h - height) // 2)
    if crop_w > width:
        left = -((crop_w - width) // 2)
    return left, top, left + crop_w, top + crop_h


def _pixels(image_path: Path, steps: tuple[Step, ...], model_size: tuple[int, int]) -> np.ndarray:
    """Decode, RGB, run the steps: uint8 HWC (possibly a view of the last resized image)."""
    import numpy as np
    from PIL import Image

    last_resize = max((i for i, s in enumerate(steps) if isinstance(s, Resize)), default=-1)
    with Image.open(image_path) as opened:
        img = _rgb(opened)
        for step in steps[: last_resize + 1]:  # on the image: a crop before a resize stays in Pillow
            if isinstance(step, Resize):
                img = _resize(img, step, model_size)
            else:
                width, height = img.size
                box = _padded_box(step, width, height, model_size)
                img = Image.fromarray(_crop_array(np.asarray(img), box)) if min(box[:2]) < 0 else img.crop(box)
        hwc = np.asarray(img)
    for step in steps[last_resize + 1 :]:  # crops after the last resize: views of the uint8 pixels
        assert isinstance(step, CenterCrop)  # every step after the last Resize is a crop
        hwc = _crop_array(hwc, _padded_box(step, hwc.shape[1], hwc.shape[0], model_size))
    return hwc


@lru_cache(maxsize=32)
def _table(scale: float | None, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> np.ndarray:
    """``table[c, v] == (float32(v) / scale - mean[c]) / std[c]``, each step in float32, in that order."""
    import numpy as np

    table = np.repeat(np.arange(256, dtype=np.float32)[None, :], 3, axis=0)
    if scale is not None:
        table = table / np.float32(scale)
    if mean is not None:
        table = table - np.asarray(mean, dtype=np.float32)[:, None]
    if std is not None:
        table = table / np.asarray(std, dtype=np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


def execute(declared: Preprocessing, model: ModelSpec, image_path: Path) -> np.ndarray:
    """Run ``declared`` on the image at ``image_path`` for ``model`` (whose input size and mean/std fill what
    the declaration leaves to the model). A fresh, C-contiguous, writable array."""
    import numpy as np

    hwc = _pixels(image_path, declared.steps, _model_size(model))
    order = (2, 1, 0) if declared.channels == "BGR" else (0, 1, 2)
    if declared.dtype == "uint8":
        pixels = hwc[:, :, list(order)] if declared.channels == "BGR" else hwc
        return np.array(pixels if declared.layout == "HWC" else pixels.transpose(2, 0, 1), dtype=np.uint8, order="C")
    mean = std = None
    if declared.normalize:
        mean = tuple(float(v) for v in (declared.mean if declared.mean is not None else model.mean))
        std = tuple(float(v) for v in (declared.std if declared.std is not None else model.std))
    table = _table(None if declared.scale is None else float(declared.scale), mean, std)
    height, width = hwc.shape[:2]
    if declared.layout == "CHW":
        out = np.empty((3, height, width), dtype=np.float32)
        for c, source in enumerate(order):
            # uint8 indices never leave [0, 256): "wrap" is a no-op that skips take's buffered bounds check.
            np.take(table[c], hwc[:, :, source], out=out[c], mode="wrap")
        return out
    out = np.empty((height, width, 3), dtype=np.float32)
    for c, source in enumerate(order):
        out[:, :, c] = table[c][hwc[:, :, source]]
    return out
