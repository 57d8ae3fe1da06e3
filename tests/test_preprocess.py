"""The core's preprocessing presets, executed from their declarations (``zoo_core.preprocessing.apply``), are
bit-exact with a literal implementation of their documented steps.

The reference side of every comparison is written here, step by step, as the documents state it
(``/work/shared/ascend-tools.md`` section 1): nothing of the core's implementation is imported for it. Equality
is exact: same dtype (float32), same shape, C-contiguous, the same bits.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from zoo_core.preprocessing import apply
from zoo_resnest.config import MODELS

ROOT = Path(__file__).resolve().parents[1]
RESNEST50 = MODELS[0]
BYTES_224 = 3 * 224 * 224 * 4  # 602,112


def modelzoo(path: Path, model) -> np.ndarray:
    return apply(model, "modelzoo", path)


def reference(path: Path, model) -> np.ndarray:
    return apply(model, "reference", path)


PRESETS = {"modelzoo": modelzoo, "reference": reference}  # the core's declared presets, as the models list them


# ----------------------------------------------------------------------------------------------------------------
# The literal implementations (the documented steps, in the documented order, in float32).


def literal_modelzoo(path: Path, mean, std, size: int = 224) -> np.ndarray:
    """The seed script: convert('RGB'), squash (a tuple: the aspect ratio is not kept) BILINEAR, float32 HWC,
    crop, /255, -mean, /std per channel, CHW.

    The seed squashes to 256x256 and keeps ``[16:240]``. For other input sizes the plugin keeps the proportions:
    squash to ``round(size * 256 / 224)`` and keep the centre ``size`` from ``(squash - size) // 2``.
    """
    squash = round(size * 256 / 224)
    top = (squash - size) // 2
    img = Image.open(path).convert("RGB")
    img = img.resize((squash, squash), Image.BILINEAR)
    img = np.array(img, dtype=np.float32)
    img = img[top : top + size, top : top + size]
    img = img / 255.0
    img[..., 0] -= mean[0]
    img[..., 1] -= mean[1]
    img[..., 2] -= mean[2]
    img[..., 0] /= std[0]
    img[..., 1] /= std[1]
    img[..., 2] /= std[2]
    return img.transpose(2, 0, 1)


def literal_reference(path: Path, mean, std, size: int = 224) -> np.ndarray:
    """The upstream evaluation (``resnest.transforms.ECenterCrop``): a centre crop of ``size / (size + 32)`` of
    the short side, BICUBIC to the input size, /255, -mean, /std per channel, CHW.

    Rounding as upstream's code: the crop side stays a float, ``top = int(round((h - crop) / 2))``,
    ``left = int(round((w - crop) / 2))``, and the far corners ``left + crop``, ``top + crop`` are rounded (as
    Pillow rounds a float box). tests/test_trust_precision.py checks the plugin against upstream's code itself.
    """
    img = Image.open(path).convert("RGB")
    w, h = img.size
    crop = float(size) / (size + 32) * min(w, h)
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    img = img.crop((left, top, int(round(left + crop)), int(round(top + crop))))
    img = img.resize((size, size), Image.BICUBIC)
    img = np.array(img, dtype=np.float32)
    img = img / 255.0
    for c in range(3):
        img[..., c] -= mean[c]
    for c in range(3):
        img[..., c] /= std[c]
    return img.transpose(2, 0, 1)


LITERAL = {"modelzoo": literal_modelzoo, "reference": literal_reference}


def assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32 and want.dtype == np.float32
    assert got.shape == want.shape
    assert got.flags.c_contiguous
    assert np.array_equal(got, want)
    assert got.tobytes() == want.tobytes()  # the bits, -0.0 and all, in C order


# ----------------------------------------------------------------------------------------------------------------
# Real image files, written once per module.


def _texture(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients plus blurred noise: something a JPEG encoder and a resize filter have to work on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), ((x + 2 * y) * 7) % 256], -1)
    noisy = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(noisy, "RGB").filter(ImageFilter.GaussianBlur(1)))


# name -> (size, mode, format); every one is a real file on disk
IMAGES = {
    "landscape_500x375.jpg": ((500, 375), "RGB", "JPEG"),
    "portrait_375x500.jpg": ((375, 500), "RGB", "JPEG"),
    "wide_500x333.jpg": ((500, 333), "RGB", "JPEG"),
    "square_256x256.jpg": ((256, 256), "RGB", "JPEG"),
    "square_224x224.jpg": ((224, 224), "RGB", "JPEG"),
    "near_square_255x257.jpg": ((255, 257), "RGB", "JPEG"),
    "near_square_230x245.jpg": ((230, 245), "RGB", "JPEG"),
    "small_100x80.jpg": ((100, 80), "RGB", "JPEG"),
    "small_200x150.jpg": ((200, 150), "RGB", "JPEG"),
    "tiny_7x5.jpg": ((7, 5), "RGB", "JPEG"),
    "strip_600x40.jpg": ((600, 40), "RGB", "JPEG"),
    "large_1024x683.jpg": ((1024, 683), "RGB", "JPEG"),
    "large_2000x1500.jpg": ((2000, 1500), "RGB", "JPEG"),
    "gray_300x200.jpg": ((300, 200), "L", "JPEG"),
    "rgba_320x240.png": ((320, 240), "RGBA", "PNG"),
    "palette_260x300.png": ((260, 300), "P", "PNG"),
    "cmyk_400x300.jpg": ((400, 300), "CMYK", "JPEG"),
}


def _write(path: Path, size: tuple[int, int], mode: str, fmt: str, seed: int) -> None:
    rgb = Image.fromarray(_texture(*size, seed), "RGB")
    if mode == "L":
        img = rgb.convert("L")
    elif mode == "RGBA":
        alpha = Image.fromarray(_texture(*size, seed + 100)[..., 0], "L")
        img = rgb.copy()
        img.putalpha(alpha)
    elif mode == "P":
        img = rgb.quantize(64)
    elif mode == "CMYK":
        img = rgb.convert("CMYK")
    else:
        img = rgb
    img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed, (name, (size, mode, fmt)) in enumerate(IMAGES.items()):
        try:
            _write(folder / name, size, mode, fmt, seed)
        except (OSError, KeyError, ValueError):  # a Pillow build that cannot write this mode (CMYK JPEG)
            assert mode == "CMYK", f"could not write {name}"
    return folder


def _file(image_dir: Path, name: str) -> Path:
    path = image_dir / name
    if not path.exists():
        pytest.skip(f"this Pillow cannot write {name}")
    with Image.open(path) as img:  # the file really is what its name says
        assert img.size == IMAGES[name][0] and img.mode == IMAGES[name][1]
    return path


# ----------------------------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("preset", ["modelzoo", "reference"])
def test_preset_is_bit_exact_with_the_documented_steps(image_dir: Path, name: str, preset: str) -> None:
    path = _file(image_dir, name)
    got = PRESETS[preset](path, RESNEST50)
    assert got.shape == (3, 224, 224)
    assert_bit_exact(got, LITERAL[preset](path, RESNEST50.mean, RESNEST50.std))


@pytest.mark.parametrize("model", MODELS[2:], ids=lambda m: f"{m.name}-{m.input_shape[-1]}")
@pytest.mark.parametrize("preset", ["modelzoo", "reference"])
def test_larger_inputs_keep_the_proportions(image_dir: Path, model, preset: str) -> None:
    size = model.input_shape[-1]
    assert size in (320, 416)
    for name in ("landscape_500x375.jpg", "portrait_375x500.jpg", "small_100x80.jpg", "gray_300x200.jpg"):
        path = _file(image_dir, name)
        got = PRESETS[preset](path, model)
        assert got.shape == (3, size, size)
        assert_bit_exact(got, LITERAL[preset](path, model.mean, model.std, size))


def test_320_input_is_the_proportional_squash_then_centre_crop(image_dir: Path) -> None:
    """input_shape (3, 320, 320): squash to round(320 * 256 / 224) = 366, keep [23:343]."""
    model = dataclasses.replace(RESNEST50, input_shape=(3, 320, 320))
    path = _file(image_dir, "landscape_500x375.jpg")
    got = modelzoo(path, model)
    assert got.shape == (3, 320, 320)
    img = Image.open(path).convert("RGB").resize((366, 366), Image.BILINEAR)
    hwc = np.array(img, dtype=np.float32)[23:343, 23:343] / 255.0
    for c in range(3):
        hwc[..., c] -= model.mean[c]
        hwc[..., c] /= model.std[c]
    assert_bit_exact(got, hwc.transpose(2, 0, 1))


@pytest.mark.parametrize("name", ["small_100x80.jpg", "small_200x150.jpg", "tiny_7x5.jpg", "square_224x224.jpg"])
def test_images_smaller_than_256_work(image_dir: Path, name: str) -> None:
    path = _file(image_dir, name)
    for preset in ("modelzoo", "reference"):
        got = PRESETS[preset](path, RESNEST50)
        assert got.shape == (3, 224, 224) and got.dtype == np.float32
        assert np.isfinite(got).all()
        assert_bit_exact(got, LITERAL[preset](path, RESNEST50.mean, RESNEST50.std))


def test_every_8bit_value_of_every_channel(tmp_path: Path) -> None:
    """A lossless 256x256 image (the squash keeps it as it is) whose centre holds all 256 values in each channel,
    and a model with another mean and std: the normalisation matches the float32 arithmetic value for value."""
    i, j = np.mgrid[0:256, 0:256]
    pixels = np.stack([(i * 224 + j) % 256, (i * 224 + j + 85) % 256, (i * 7 + j * 3) % 256], -1).astype(np.uint8)
    for c in range(3):
        assert len(np.unique(pixels[16:240, 16:240, c])) == 256
    path = tmp_path / "all_values.png"
    Image.fromarray(pixels, "RGB").save(path)
    for model in (RESNEST50, dataclasses.replace(RESNEST50, mean=(0.5, 0.25, 0.0), std=(0.5, 1 / 3, 0.1))):
        got = modelzoo(path, model)
        assert_bit_exact(got, literal_modelzoo(path, model.mean, model.std))
        want = (pixels[16:240, 16:240].astype(np.float32) / np.float32(255)).transpose(2, 0, 1)  # also by hand
        for c in range(3):
            assert np.array_equal(got[c], (want[c] - np.float32(model.mean[c])) / np.float32(model.std[c]))


def test_outputs_are_fresh_arrays(image_dir: Path) -> None:
    path = _file(image_dir, "landscape_500x375.jpg")
    first, second = modelzoo(path, RESNEST50), modelzoo(path, RESNEST50)
    assert first is not second and not np.shares_memory(first, second)
    first[:] = 0  # writable, and writing one changes nothing else
    assert_bit_exact(second, literal_modelzoo(path, RESNEST50.mean, RESNEST50.std))
    assert_bit_exact(reference(path, RESNEST50), literal_reference(path, RESNEST50.mean, RESNEST50.std))


# ----------------------------------------------------------------------------------------------------------------
# The .bin files


def test_modelzoo_bin_is_602112_bytes_and_the_seed_bytes(image_dir: Path, tmp_path: Path) -> None:
    path = _file(image_dir, "landscape_500x375.jpg")
    out = modelzoo(path, RESNEST50)
    mine, seeds = tmp_path / "mine.bin", tmp_path / "seed.bin"
    out.tofile(mine)
    literal_modelzoo(path, RESNEST50.mean, RESNEST50.std).tofile(seeds)  # the seed writes its transposed view
    assert BYTES_224 == 602_112
    assert mine.stat().st_size == BYTES_224
    assert mine.read_bytes() == seeds.read_bytes()
    assert np.array_equal(np.fromfile(mine, dtype=np.float32).reshape(3, 224, 224), out)


def _seed_script():
    spec = importlib.util.spec_from_file_location("seed_preprocess", ROOT / "benchmarks" / "seed_preprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_seed_script_writes_what_modelzoo_gives(image_dir: Path, tmp_path: Path) -> None:
    """The baseline of the preprocessing benchmark does the same work, to the byte, one <stem>.bin per entry."""
    seed = _seed_script()
    dst = tmp_path / "prep"
    count = seed.seed_preprocess(image_dir, dst)
    names = sorted(os.listdir(image_dir))
    assert count == len(names)
    assert sorted(p.name for p in dst.iterdir()) == sorted(n.split(".")[0] + ".bin" for n in names)
    for name in names:
        written = (dst / (name.split(".")[0] + ".bin")).read_bytes()
        assert len(written) == BYTES_224
        assert written == modelzoo(image_dir / name, RESNEST50).tobytes()
    assert seed.main([str(image_dir), str(tmp_path / "cli"), "--json"]) == 0
    assert len(list((tmp_path / "cli").iterdir())) == len(names)
