"""Declared preprocessing beyond the two ResNeSt presets: a DeiT-style declaration (short side, crop fraction,
bicubic, torchvision's centre crop) bit-exact with a literal torchvision-style implementation written here; BGR,
HWC and uint8 outputs; bad declarations refused with one clear line; a plugin's ``zoo_preprocess`` that takes
``declaration`` receives the preset's."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zoo_core import hookimpl
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.preprocessing import PRESETS, CenterCrop, DeclarationError, Preprocessing, Resize, apply, execute
from zoo_core.samples import preprocess_one
from zoo_core.specs import ModelSpec
from zoo_tiny import TINY_RESNEST

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm's IMAGENET_DEFAULT_MEAN / _STD
DEIT = Preprocessing(
    "deit",
    steps=(Resize("short_side", crop_fraction=0.875, rounding="floor", interpolation="bicubic"),
           CenterCrop(size=224, rounding="round")),
    description="timm's DeiT eval transform: resize short side to floor(224 / 0.875), bicubic, centre crop 224",
)
MODEL = ModelSpec(name="deit-like", family="test", factory="x:y", input_shape=(3, 224, 224), mean=MEAN, std=STD,
                  preset="deit", presets=(DEIT, "modelzoo"))


# ----------------------------------------------------------------------------------------------------------------
# The literal implementation: timm's create_transform(224, crop_pct=0.875, interpolation="bicubic") for eval, as
# torchvision does each step on a PIL image.


def literal_deit(path: Path, size: int = 224, crop_pct: float = 0.875, long_side: Any = int,
                 offset: Any = round) -> np.ndarray:
    """Resize(floor(size / crop_pct), BICUBIC), CenterCrop(size), ToTensor, Normalize(mean, std), in float32.

    ``long_side`` and ``offset`` are torchvision's rules (``int``, ``round``); the tests also pass others."""
    img = Image.open(path).convert("RGB")
    scale = math.floor(size / crop_pct)  # timm: scale_size = math.floor(img_size / crop_pct)
    w, h = img.size  # torchvision's _compute_resized_output_size for an int size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = scale, long_side(scale * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    w, h = img.size  # torchvision's center_crop: round half to even, as Python's round
    top, left = int(offset((h - size) / 2.0)), int(offset((w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    chw = np.array(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # ToTensor: float, div(255)
    for c in range(3):  # Normalize: sub_(mean).div_(std), float32
        chw[c] = (chw[c] - np.float32(MEAN[c])) / np.float32(STD[c])
    return np.ascontiguousarray(chw)


# (width, height). 343x256 puts the crop's left edge at 59.5 (round half to even: 60; floor would say 59);
# 300x211 makes the long side 256 * 300 / 211 = 363.98, which torchvision truncates to 363 (rounding: 364).
SIZES = [(500, 375), (375, 500), (343, 256), (300, 211), (256, 256), (1024, 683), (100, 80), (37, 23), (600, 40)]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("declared")
    rng = np.random.default_rng(5)
    paths = []
    for width, height in SIZES:  # pixel-scale noise: a crop one pixel off changes the result
        path = folder / f"noise_{width}x{height}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(path)
        paths.append(path)
    gray = folder / "gray_300x211.jpg"
    Image.fromarray(rng.integers(0, 256, (211, 300), dtype=np.uint8), "L").save(gray, quality=90)
    return [*paths, gray]


def test_deit_declaration_is_timm_and_torchvision_bit_for_bit(images: list[Path]) -> None:
    for path in images:
        got = apply(MODEL, "deit", path)
        want = literal_deit(path)
        assert got.dtype == np.float32 and got.shape == want.shape == (3, 224, 224), path.name
        assert got.flags.c_contiguous and got.flags.writeable
        assert got.tobytes() == want.tobytes(), f"{path.name}: max |diff| {np.abs(got - want).max()}"


def test_the_images_tell_the_rounding_rules_apart(images: list[Path]) -> None:
    """The bit-exact test above would catch floored crop offsets (343x256) or a rounded long side (300x211)."""
    by_name = {p.name: p for p in images}
    assert literal_deit(by_name["noise_343x256.png"]).tobytes() != \
        literal_deit(by_name["noise_343x256.png"], offset=math.floor).tobytes()
    assert literal_deit(by_name["noise_300x211.png"]).tobytes() != \
        literal_deit(by_name["noise_300x211.png"], long_side=round).tobytes()


def test_core_presets_are_declarations() -> None:
    assert set(PRESETS) == {"modelzoo", "reference"}
    assert MODEL.preprocessing("deit") is DEIT and MODEL.preprocessing("modelzoo") is PRESETS["modelzoo"]
    assert MODEL.preset_names == ("deit", "modelzoo")
    data = json.loads(json.dumps(MODEL.to_dict()))  # zoo info --json: a declaration is a dict
    assert data["presets"][1] == "modelzoo"
    assert data["presets"][0]["name"] == "deit" and data["presets"][0]["steps"][0] == {
        "step": "Resize", "mode": "short_side", "size": None, "crop_fraction": 0.875, "rounding": "floor",
        "interpolation": "bicubic"}


# ----------------------------------------------------------------------------------------------------------------
# Channel order, layout, dtype


def test_bgr_reverses_the_channels_and_takes_mean_std_in_its_order(images: list[Path]) -> None:
    bgr = replace(DEIT, name="deit-bgr", channels="BGR", mean=MEAN[::-1], std=STD[::-1])
    for path in images[:3]:
        rgb = apply(MODEL, "deit", path)
        got = execute(bgr, MODEL, path)
        assert got.flags.c_contiguous and got.tobytes() == np.ascontiguousarray(rgb[::-1]).tobytes()


def test_hwc_float_is_the_chw_transposed(images: list[Path]) -> None:
    hwc = replace(DEIT, name="deit-hwc", layout="HWC")
    for path in images[:3]:
        got = execute(hwc, MODEL, path)
        assert got.shape == (224, 224, 3) and got.flags.c_contiguous
        assert got.tobytes() == np.ascontiguousarray(apply(MODEL, "deit", path).transpose(1, 2, 0)).tobytes()


@pytest.mark.parametrize(("layout", "channels"), [("HWC", "RGB"), ("CHW", "RGB"), ("HWC", "BGR"), ("CHW", "BGR")])
def test_uint8_output_is_the_cropped_pixels(images: list[Path], layout: str, channels: str) -> None:
    declared = replace(DEIT, name="deit-u8", dtype="uint8", scale=None, normalize=False, layout=layout,
                       channels=channels)
    for path in images[:4]:
        got = execute(declared, MODEL, path)
        img = Image.open(path).convert("RGB")  # the literal steps again, kept in uint8
        w, h = img.size
        short, long = min(w, h), max(w, h)
        new = (256, int(256 * long / short)) if w <= h else (int(256 * long / short), 256)
        img = img.resize(new, Image.BICUBIC) if new != (w, h) else img
        top, left = int(round((img.size[1] - 224) / 2.0)), int(round((img.size[0] - 224) / 2.0))
        want = np.asarray(img.crop((left, top, left + 224, top + 224)))
        want = want[:, :, ::-1] if channels == "BGR" else want
        want = want.transpose(2, 0, 1) if layout == "CHW" else want
        assert got.dtype == np.uint8 and got.flags.c_contiguous and got.flags.writeable
        assert got.shape == want.shape and np.array_equal(got, want), path.name


def test_no_normalisation_and_another_scale(images: list[Path]) -> None:
    """``scale=None, normalize=False``: the 8-bit values as float32; ``scale=1`` with mean/std in 0..255 units."""
    raw = replace(DEIT, name="raw", scale=None, normalize=False)
    pixels = execute(replace(DEIT, name="u8", dtype="uint8", scale=None, normalize=False), MODEL, images[0])
    assert np.array_equal(execute(raw, MODEL, images[0]), pixels.astype(np.float32))
    caffe = replace(DEIT, name="caffe", scale=1.0, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    want = pixels.astype(np.float32) / np.float32(1.0)
    for c, (m, s) in enumerate(zip(caffe.mean, caffe.std, strict=True)):
        want[c] = (want[c] - np.float32(m)) / np.float32(s)
    assert execute(caffe, MODEL, images[0]).tobytes() == want.tobytes()


def test_a_crop_larger_than_the_image_pads_as_torchvision(tmp_path: Path) -> None:
    """torchvision's CenterCrop pads with zeros, ``(size - h) // 2`` rows before and the rest after."""
    path = tmp_path / "small.png"
    pixels = np.random.default_rng(1).integers(1, 256, (5, 9, 3), dtype=np.uint8)  # no zero of its own
    Image.fromarray(pixels, "RGB").save(path)
    declared = Preprocessing("pad", steps=(CenterCrop(size=8, rounding="round"),), dtype="uint8", layout="HWC",
                             scale=None, normalize=False)
    got = execute(declared, replace(MODEL, input_shape=(3, 8, 8)), path)
    want = np.zeros((8, 8, 3), np.uint8)
    want[1:6] = pixels[:, 0:8]  # rows: pad 1 before, 2 after; columns: int(round(0.5)) = 0 (half to even)
    assert np.array_equal(got, want)


# ----------------------------------------------------------------------------------------------------------------
# Bad declarations: one clear line, at declaration time


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Resize("squish"), "Resize: mode='squish' is not one of squash, short_side"),
    (lambda: Resize(size=0), "Resize: size=0 must be a whole number of at least 1"),
    (lambda: Resize(size=256, crop_fraction=0.875), "give at most one of size, crop_fraction"),
    (lambda: Resize(crop_fraction=1.5), "crop_fraction=1.5 must be a number in (0, 1]"),
    (lambda: Resize(crop_fraction=float("nan")), "crop_fraction=nan must be a number in (0, 1]"),
    (lambda: Resize(interpolation="cubic"), "interpolation='cubic' is not one of nearest, bilinear, bicubic"),
    (lambda: CenterCrop(margin=-1), "CenterCrop: margin=-1 must be a whole number of at least 0"),
    (lambda: CenterCrop(size=224, fraction=0.5), "give at most one of size, margin, fraction"),
    (lambda: CenterCrop(rounding="ceil"), "rounding='ceil' is not one of floor, round"),
    (lambda: Preprocessing("", ()), "Preprocessing: name='' must be a non-empty word"),
    (lambda: Preprocessing("x", steps=("resize",)), "'x': steps must be a tuple of Resize and CenterCrop"),
    (lambda: Preprocessing("x", mean=(0.5, 0.5)), "preprocessing 'x': mean=(0.5, 0.5) must be 3 finite numbers"),
    (lambda: Preprocessing("x", std=(0.2, 0, 0.2)), "preprocessing 'x': std=(0.2, 0, 0.2) has a zero"),
    (lambda: Preprocessing("x", scale=0), "preprocessing 'x': scale=0 must be a positive number"),
    (lambda: Preprocessing("x", dtype="float16"), "dtype='float16' is not one of float32, uint8"),
    (lambda: Preprocessing("x", layout="NCHW"), "layout='NCHW' is not one of CHW, HWC"),
    (lambda: Preprocessing("x", channels="RGBA"), "channels='RGBA' is not one of RGB, BGR"),
    (lambda: Preprocessing("x", dtype="uint8"), "dtype='uint8' keeps the 8-bit pixels as they are; set scale=None"),
    (lambda: Preprocessing("x", normalize=False, mean=MEAN), "mean/std are given but normalize=False"),
    (lambda: replace(MODEL, presets=(DEIT, "deit")), "model 'deit-like': preset 'deit' is declared twice"),
    (lambda: replace(MODEL, preset="nope"), "model 'deit-like': the default preset 'nope' is not one of its presets"),
    (lambda: replace(MODEL, presets=(DEIT, 7)), "must be a non-empty tuple of preset names and Preprocessing"),
])
def test_a_bad_declaration_is_one_clear_error(make: Any, words: str) -> None:
    with pytest.raises(DeclarationError) as info:
        make()
    message = str(info.value)
    assert words in message and "\n" not in message
    assert isinstance(info.value, ValueError)  # what plugin loading reports as the plugin's problem


BAD_PLUGIN = '''
from dataclasses import replace

from zoo_core import hookimpl
from zoo_core.preprocessing import Preprocessing, Resize
from zoo_tiny import TINY_RESNEST

SQUISH = Preprocessing("squish", steps=(Resize("squish"),))

@hookimpl
def zoo_register_models(register):
    register(replace(TINY_RESNEST, name="tiny-squish", preset="squish", presets=(SQUISH,)))
'''


def test_a_plugins_bad_declaration_is_its_problem_not_a_traceback(zoo_cli, tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "zoo_squish.py"
    plugin.parent.mkdir()
    plugin.write_text(BAD_PLUGIN)
    env = {"ZOO_PLUGINS": "zoo_core.testing,zoo_squish",
           "PYTHONPATH": os.pathsep.join([str(plugin.parent), os.environ.get("PYTHONPATH", "")])}
    listed = zoo_cli("plugins", "--json", env=env)
    assert listed.code == 0, listed
    [row] = [p for p in listed.json()["plugins"] if p["name"] == "zoo_squish"]
    assert row["error"] == "DeclarationError: Resize: mode='squish' is not one of squash, short_side"
    models = zoo_cli("list", "--json", env=env)
    assert models.code == 0 and "Traceback" not in models.stderr, models
    assert "tiny-cnn" in {m["name"] for m in models.json()}


# ----------------------------------------------------------------------------------------------------------------
# Through the core's dispatch: the model's plugin answers, else its declaration


class _Declared:
    """A model plugin whose model is a declaration only."""

    plugin_name = "declared"

    @hookimpl
    def zoo_register_models(self, register: Any) -> None:
        register(replace(TINY_RESNEST, name="tiny-declared", preset="deit-64", presets=(
            replace(DEIT, name="deit-64", steps=(Resize("short_side", crop_fraction=0.875, interpolation="bicubic"),
                                                 CenterCrop(rounding="round"))), "reference")))



class _DeclaredWithHook(_Declared):
    """The same, with a ``zoo_preprocess`` that reads the declaration and adds its own twist (BGR)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def zoo_preprocess(self, model: ModelSpec, preset: str, image_path: Path, declaration: Preprocessing) -> Any:
        self.seen.append(declaration)
        bgr = replace(declaration, channels="BGR", mean=tuple(model.mean[::-1]), std=tuple(model.std[::-1]))
        return execute(bgr, model, image_path)


def _model(plugin: _Declared) -> tuple[Any, ModelSpec]:
    pm = get_plugin_manager(autoload=False, plugins=[plugin])
    return pm, Registry(pm).model("tiny-declared")


def test_a_model_without_a_preprocess_hook_gets_its_declaration(images: list[Path]) -> None:
    pm, model = _model(_Declared())
    array, error = preprocess_one(pm, model, "deit-64", images[0])
    assert error is None and array.shape == (3, 64, 64)
    assert array.tobytes() == execute(model.preprocessing("deit-64"), model, images[0]).tobytes()
    array, error = preprocess_one(pm, model, "reference", images[0])
    assert error is None and array.tobytes() == execute(PRESETS["reference"], model, images[0]).tobytes()


def test_a_preprocess_hook_that_takes_declaration_receives_it(images: list[Path]) -> None:
    plugin = _DeclaredWithHook()
    pm, model = _model(plugin)
    array, error = preprocess_one(pm, model, "deit-64", images[0])
    assert error is None
    assert plugin.seen == [model.preprocessing("deit-64")] and plugin.seen[0].name == "deit-64"
    plain = execute(model.preprocessing("deit-64"), model, images[0])
    assert array.tobytes() == np.ascontiguousarray(plain[::-1]).tobytes()  # the hook's answer, not the default
    preprocess_one(pm, model, "reference", images[0])
    assert plugin.seen[1] is PRESETS["reference"]


def test_a_listed_name_without_declaration_or_hook_is_the_plugins_bug(images: list[Path]) -> None:
    from zoo_core.errors import EXIT_BUG, ZooError

    model = replace(TINY_RESNEST, preset="resize", presets=("resize",), plugin="someone")
    assert model.preprocessing("resize") is None
    with pytest.raises(ZooError) as info:
        apply(model, "resize", images[0])
    assert info.value.exit_code == EXIT_BUG and "'resize', which is no core preset" in str(info.value)
    assert "'someone'" in info.value.note
