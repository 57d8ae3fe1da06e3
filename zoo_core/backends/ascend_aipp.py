"""Static AIPP derived from a model's declared preprocessing: the chip crops and normalises, the host sends uint8.

Where a declaration ends in a fixed-size centre crop of an image resized to a fixed size (the crop box is then
the same for every image: the ``modelzoo`` preset squashes to 256x256 and crops [16:240]) and its values are
float32 ``(x / scale - mean) / std``, CHW, RGB, ATC's static AIPP (``--insert_op_conf``) can do the crop and the
normalisation on the chip: ``(x - min_chn) * var_reci_chn`` with ``min_chn = mean * scale`` and ``var_reci_chn =
1 / (std * scale)`` is the same arithmetic. The host then runs the declaration's steps without the crop and sends
the 8-bit pixels, HWC: a byte a value instead of four, of the uncropped image (``modelzoo`` at 224: 196,608 bytes
instead of 602,112, 3.06x fewer). Anything AIPP cannot express is refused in
one line, naming the model, the preset and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..preprocessing import CenterCrop, Preprocessing, Resize

if TYPE_CHECKING:
    from ..specs import ModelSpec, RunOptions

__all__ = ["AIPP_CONFIG", "Aipp", "aipp_model", "config_for_run", "derive", "parse_aipp_config"]

SUFFIX = "-aipp"  # the host-side preset's name: the run's preset's, plus this
AIPP_CONFIG = "aipp_config"  # the config's text in the run's model's backend_inputs (compiled from, and cache-keyed)


@dataclass(frozen=True)
class Aipp:
    """What a declaration becomes with AIPP: the chip's config and the host's part."""

    config: str  # the static AIPP config file's text (ATC --insert_op_conf)
    host: Preprocessing  # the steps without the final crop: uint8 HWC pixels
    image: tuple[int, int, int]  # the compiled model's per-sample input, (H, W, 3) uint8


class _RefusedError(Exception):
    """A preset static AIPP cannot express (``derive`` turns it into the one-line usage error)."""


def _refuse(model: ModelSpec, preset: str, why: str) -> _RefusedError:
    return _RefusedError(f"--aipp: model {model.name}'s preset {preset!r} {why}, which static AIPP cannot express")


def _another_preset(model: ModelSpec, preset: str) -> str:
    """The refusal's note: one of the model's other presets that AIPP expresses, or that none does."""
    for name in model.preset_names:
        try:
            _derive(model, name)
        except (_RefusedError, UsageError):
            continue
        if name != preset:
            return ("run it without --aipp (the host prepares float32 input), or choose a preset static AIPP can "
                    f"express: --preset {name}")
    return (f"run it without --aipp (the host prepares float32 input): no preset of model {model.name} resizes to "
            "a fixed size and then centre-crops a fixed size")


def _model_size(model: ModelSpec) -> tuple[int, int]:
    """The model's (height, width), from its NCHW-style per-sample input (channels first, 3 of them)."""
    shape = tuple(model.input_shape)
    if len(shape) != 3 or shape[0] != 3 or str(model.input_format).upper() != "NCHW":
        raise UsageError(f"--aipp: model {model.name} takes {model.input_format} {list(shape)}, not one 3-channel "
                         "NCHW image, which static AIPP cannot feed", note="run it without --aipp")
    return int(shape[1]), int(shape[2])


def derive(model: ModelSpec, preset: str) -> Aipp:
    """The static AIPP config and host-side preprocessing equivalent to ``model``'s declaration of ``preset``;
    a usage error (one line naming the model, the preset and why) when AIPP cannot express it."""
    try:
        return _derive(model, preset)
    except _RefusedError as refused:
        raise UsageError(str(refused), note=_another_preset(model, preset)) from None


def _derive(model: ModelSpec, preset: str) -> Aipp:
    declared = model.preprocessing(preset)  # a usage error when the model has no such preset
    if declared is None:
        raise _refuse(model, preset, "is prepared by its plugin's own code, not declared")
    if declared.dtype != "float32":
        raise _refuse(model, preset, f"gives {declared.dtype} values, not float32")
    if declared.layout != "CHW":
        raise _refuse(model, preset, f"lays samples out {declared.layout}, not CHW")
    if declared.channels != "RGB":
        raise _refuse(model, preset, f"orders channels {declared.channels}, not RGB")
    if not declared.normalize:
        raise _refuse(model, preset, "has no mean/std normalisation")
    height, width = _model_size(model)
    steps = declared.steps
    crop = steps[-1] if steps else None
    if not isinstance(crop, CenterCrop):
        raise _refuse(model, preset, "does not end in a centre crop")
    if crop.margin is not None or crop.fraction is not None:
        raise _refuse(model, preset, "crops a share of each image's short side (the box depends on the image)")
    resize = steps[-2] if len(steps) > 1 else None
    if not isinstance(resize, Resize):
        raise _refuse(model, preset, "crops an image it has not resized (the box depends on the image)")
    if resize.mode != "squash":
        raise _refuse(model, preset, f"resizes with mode {resize.mode!r} (the size depends on the image's aspect)")
    src_h, src_w = resize.target(height), resize.target(width)
    left, top, right, bottom = crop.box(src_w, src_h, (height, width))
    if (bottom - top, right - left) != (height, width):
        raise _refuse(model, preset, f"crops {bottom - top}x{right - left}, not the model's input {height}x{width}")
    if left < 0 or top < 0 or right > src_w or bottom > src_h:
        raise _refuse(model, preset, f"crops {height}x{width} out of a smaller {src_h}x{src_w} image (padding)")
    scale = float(declared.scale) if declared.scale is not None else 1.0
    mean = tuple(float(v) for v in (declared.mean if declared.mean is not None else model.mean))
    std = tuple(float(v) for v in (declared.std if declared.std is not None else model.std))
    lines = ["aipp_op {", "    aipp_mode : static", "    input_format : RGB888_U8",
             f"    src_image_size_w : {src_w}", f"    src_image_size_h : {src_h}", "    crop : true",
             f"    load_start_pos_h : {top}", f"    load_start_pos_w : {left}",
             f"    crop_size_w : {width}", f"    crop_size_h : {height}",
             *(f"    min_chn_{c} : {mean[c] * scale!r}" for c in range(3)),
             *(f"    var_reci_chn_{c} : {1.0 / (std[c] * scale)!r}" for c in range(3)), "}"]
    header = (f"# Static AIPP derived by zoo from model {model.name}'s preset {preset!r}: the chip takes "
              f"{src_h}x{src_w} RGB uint8 (NHWC),\n# crops rows [{top}:{bottom}] and columns [{left}:{right}] and "
              f"computes (x - min_chn) * var_reci_chn = (x / {scale:g} - mean) / std per channel.\n")
    host = Preprocessing(
        f"{preset}{SUFFIX}", steps=steps[:-1], scale=None, normalize=False, dtype="uint8", layout="HWC",
        description=f"the host side of {preset!r} with AIPP: its steps without the final crop, uint8 HWC "
                    f"{src_h}x{src_w}; the chip crops and normalises")
    return Aipp(header + "\n".join(lines) + "\n", host, (src_h, src_w, 3))


def aipp_model(model: ModelSpec, preset: str, backend: str, given_atc_args: dict[str, str]) -> ModelSpec:
    """``model`` as ``backend`` runs it with AIPP: the derived host-side preset added, and the compiled model's
    input (uint8 NHWC images of that preset, the config's text under ``AIPP_CONFIG``) in its ``backend_inputs``.
    A model that brings its own AIPP (or another input for ``backend``) is refused in one line."""
    own = model.backend_args.get(backend, {})
    if any(k.replace("-", "_") == "insert_op_conf" for k in own) or backend in model.backend_inputs:
        raise UsageError(f"--aipp: model {model.name} declares its own {backend} input (an AIPP config or a "
                         "backend input), which zoo would replace", note="run it without --aipp: its own AIPP applies")
    if "insert_op_conf" in given_atc_args:
        raise UsageError("--aipp and --atc-arg insert_op_conf both give ATC an AIPP config",
                         note="give one: --aipp derives it from the model's preprocessing")
    derived = derive(model, preset)
    if derived.host.name in model.preset_names:
        raise UsageError(f"--aipp: model {model.name} already has a preset {derived.host.name!r}, the name of the "
                         "derived one", note="run it without --aipp, or rename that preset in its plugin")
    inputs: dict[str, Any] = {"shape": derived.image, "dtype": "uint8", "format": "NHWC",
                              "preset": derived.host.name, AIPP_CONFIG: derived.config}
    return replace(model, presets=(*model.presets, derived.host),
                   backend_inputs={**model.backend_inputs, backend: inputs})


def config_for_run(model: ModelSpec, options: RunOptions) -> str | None:
    """The AIPP config a run compiles with (its text, for a dry-run to print as ``aipp.cfg``), or ``None`` without
    ``--aipp``."""
    return derive(model, options.preset).config if options.backend_options.get("aipp") else None


def parse_aipp_config(text: str) -> dict[str, str]:
    """The ``key : value`` lines of an AIPP config's ``aipp_op`` section (comments dropped), for tests and tools."""
    import re

    body = re.search(r"aipp_op\s*\{(.*?)\}", text, re.S)
    out: dict[str, str] = {}
    for line in (body.group(1) if body else "").splitlines():
        key, sep, value = line.split("#", 1)[0].partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out
