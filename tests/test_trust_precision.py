"""Numbers that can be trusted: the ``reference`` preset is upstream's own transform, bit for bit, and the Ascend
fakes compute in the precision the .om was compiled for, so an fp16 effect shows up in tests as on the chip.

The upstream side of the preset comparison is the installed ``resnest`` package's ``ECenterCrop`` (its crop
arithmetic and rounding run as upstream wrote them), with torchvision's ToTensor and Normalize semantics done
in torch. torchvision is not a dependency: ``ECenterCrop.__init__`` imports ``torchvision.transforms.Resize``,
so a stand-in that does what torchvision's ``Resize`` does on a PIL image is put in ``sys.modules`` for the
construction only.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.preprocessing import apply

PM = get_plugin_manager()
REGISTRY = Registry(PM)
RESNEST = sorted(name for name, spec in REGISTRY.models.items()
                 if spec.family == "resnest" and "reference" in spec.preset_names)


# ----------------------------------------------------------------------------------------------------------------
# The reference preset against upstream's ECenterCrop


class _Resize:
    """torchvision.transforms.Resize((h, w), interpolation) on a PIL image: ``img.resize((w, h), interpolation)``
    (torchvision's ``F_pil.resize`` with a two-element size; Pillow's resampling always antialiases)."""

    def __init__(self, size: tuple[int, int], interpolation: int) -> None:
        self.size, self.interpolation = tuple(size), interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        height, width = self.size
        return img.resize((width, height), self.interpolation)


def upstream_center_crop(size: int):
    """``resnest.transforms.ECenterCrop(size)``, built with the stand-in ``torchvision.transforms``."""
    from resnest.transforms import ECenterCrop

    torchvision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Resize = _Resize
    torchvision.transforms = transforms
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.transforms")}
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms})
    try:
        crop = ECenterCrop(size)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    assert isinstance(crop.resize_method, _Resize) and crop.resize_method.interpolation == Image.BICUBIC
    return crop


def upstream_reference(path: Path, size: int, mean, std) -> np.ndarray:
    """Upstream's evaluation transform: ``Compose([ECenterCrop(size), ToTensor(), Normalize(mean, std)])`` on
    ``Image.open(path).convert('RGB')``, with torchvision's ToTensor (uint8 HWC -> float32 CHW, ``.div(255)``) and
    Normalize (``tensor.sub_(mean).div_(std)``, mean and std as float32 tensors) written out in torch."""
    import torch

    img = upstream_center_crop(size)(Image.open(path).convert("RGB"))
    tensor = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).contiguous()
    tensor = tensor.to(dtype=torch.float32).div(255)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return tensor.sub_(mean_t).div_(std_t).numpy()


# (width, height), format. Pixel-scale noise, so that a crop one pixel off changes the result.
UPSTREAM_IMAGES = {
    "landscape_500x375.png": ((500, 375), "PNG"),
    "portrait_375x500.jpg": ((375, 500), "JPEG"),
    "wide_500x333.png": ((500, 333), "PNG"),
    "odd_501x335.png": ((501, 335), "PNG"),
    "odd_255x257.png": ((255, 257), "PNG"),
    "tiny_37x23.png": ((37, 23), "PNG"),
    "tiny_23x37.png": ((23, 37), "PNG"),
    "tiny_3x2.png": ((3, 2), "PNG"),
    # upstream's crop is not square here (17 wide, 18 tall at 224: the two far corners round differently)
    "nonsquare_20x34.png": ((20, 34), "PNG"),
    # the earlier rule, round(short * 224 / 256) with floor-halved offsets, cropped elsewhere at 224
    "offset_24x375.png": ((24, 375), "PNG"),
    "square_224x224.png": ((224, 224), "PNG"),
    "square_352x352.png": ((352, 352), "PNG"),
    "large_1024x683.jpg": ((1024, 683), "JPEG"),
    "gray_300x211.png": ((300, 211), "PNG"),
}


@pytest.fixture(scope="module")
def upstream_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("upstream-images")
    rng = np.random.default_rng(11)
    for name, ((width, height), fmt) in UPSTREAM_IMAGES.items():
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
        if name.startswith("gray"):
            img = img.convert("L")
        img.save(folder / name, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return folder


def test_the_registry_has_the_resnest_variants() -> None:
    assert {"resnest50", "resnest101", "resnest200", "resnest269"} <= set(RESNEST)


@pytest.mark.parametrize("name", RESNEST)
def test_reference_preset_is_upstream_ecentercrop_bit_for_bit(upstream_images: Path, name: str) -> None:
    spec = REGISTRY.model(name)
    size = spec.input_shape[-1]
    for image in UPSTREAM_IMAGES:
        path = upstream_images / image
        got = apply(spec, "reference", path)  # the core's declared preset
        want = upstream_reference(path, size, spec.mean, spec.std)
        assert got.dtype == np.float32 and got.shape == want.shape == (3, size, size), image
        assert got.flags.c_contiguous
        assert got.tobytes() == want.tobytes(), f"{name} on {image}: max |diff| {np.abs(got - want).max()}"


def test_upstream_crop_is_not_always_square(upstream_images: Path) -> None:
    """What a square-crop rule gets wrong: upstream's box on a 20x34 image at 224 is 17 wide and 18 tall (its
    float corners 18.5 and 25.5 round half to even), and the resize then squashes it to a square."""
    crop = upstream_center_crop(224)
    seen = []
    crop.resize_method = lambda img: seen.append(img.size) or img
    crop(Image.open(upstream_images / "nonsquare_20x34.png").convert("RGB"))
    assert seen == [(17, 18)]


# ----------------------------------------------------------------------------------------------------------------
# The Ascend fakes compute in the compiled precision mode


def _om(env: dict[str, str], tmp_path: Path, name: str, *flags: str) -> Path:
    """The fake ATC's .om of test_fakes' tiny Conv-Relu-Pool-Softmax graph at batch 4, with ``flags``."""
    from test_fakes import base_flags, tiny_onnx

    models = tmp_path / "models"
    if not (models / "tiny.onnx").exists():
        models.mkdir(exist_ok=True)
        tiny_onnx(models / "tiny.onnx")
    proc = subprocess.run(["atc", *base_flags(models, output=f"out/{name}"), *flags], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / "out" / f"{name}.om"


def _fp16_exact(array: np.ndarray) -> bool:
    """Every value is a float16 value (what a tensor that went through float16 holds)."""
    with np.errstate(over="ignore"):
        return bool(np.array_equal(array.astype(np.float16).astype(array.dtype), array, equal_nan=True))


@pytest.mark.parametrize(("mode", "fp16"), [
    (None, True),  # ATC's default on inference chips: force_fp16
    ("force_fp16", True), ("allow_fp32_to_fp16", True), ("allow_mix_precision", "mixed"),
    ("must_keep_origin_dtype", False), ("force_fp32", False),
])
def test_the_fake_chip_computes_in_the_compiled_precision(ascend_env, tmp_path: Path, mode, fp16) -> None:
    from ais_bench.infer.interface import InferSession
    from test_fakes import reference

    om = _om(ascend_env, tmp_path, "tiny", *([f"--precision_mode={mode}"] if mode else []))
    batch = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    (got,) = InferSession(0, str(om)).infer([batch])
    want = reference(tmp_path / "models" / "tiny.onnx", batch)
    assert got.dtype == np.float32 and got.shape == want.shape
    diff = float(np.abs(got - want).max())
    if fp16:
        # More than float32 rounding (~1e-7 here), within what float16 weights and activations cost (2^-11 of
        # the values, a few times over): a wrong weight or a dropped op would be far beyond it.
        assert 1e-5 < diff < 4e-3, diff
        np.testing.assert_allclose(got, want, rtol=4e-3, atol=1e-3)
        # force_fp16 rounds the Softmax output to float16 too; allow_mix_precision keeps Softmax in float32.
        assert _fp16_exact(got) == (fp16 is True)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert not _fp16_exact(got)


def test_an_input_beyond_float16_range_overflows_only_under_fp16(ascend_env, tmp_path: Path) -> None:
    from ais_bench.infer.interface import InferSession
    from test_fakes import reference

    batch = np.random.default_rng(5).standard_normal((4, 3, 8, 8)).astype(np.float32)
    big = batch * np.float32(1e5)  # |x| up to ~4e5: beyond float16's 65504
    assert np.abs(big).max() > 65504 and np.isfinite(big).all()
    (fp16,) = InferSession(0, str(_om(ascend_env, tmp_path, "fp16"))).infer([big])
    (fp32,) = InferSession(0, str(_om(ascend_env, tmp_path, "fp32", "--precision_mode=force_fp32"))).infer([big])
    assert not np.isfinite(fp16).all()  # inf in the conv, then NaN out of the Softmax, as on the chip
    assert np.isfinite(fp32).all()
    np.testing.assert_allclose(fp32, reference(tmp_path / "models" / "tiny.onnx", big), rtol=0, atol=1e-6)
    (small,) = InferSession(0, str(_om(ascend_env, tmp_path, "fp16"))).infer([batch])
    assert np.isfinite(small).all()  # the same model, in range


def test_output_type_fp16_returns_float16(ascend_env, tmp_path: Path) -> None:
    from ais_bench.infer.interface import InferSession

    om = _om(ascend_env, tmp_path, "half_out", "--output_type=FP16", "--precision_mode=force_fp32")
    session = InferSession(0, str(om))
    assert str(session.get_outputs()[0].datatype) == "dtype.float16"
    (got,) = session.infer([np.ones((4, 3, 8, 8), np.float32)])
    assert got.dtype == np.float16


def test_zoo_on_the_fakes_shows_fp16_by_default_and_fp32_when_asked(ascend_env, tmp_path: Path) -> None:
    """Through zoo's own Ascend backend: the same inputs as ONNX Runtime, ATC's default against force_fp32."""
    from test_ascend import make_zoo, options_for

    from zoo_core.export import sample_input
    from zoo_core.runner import prepare
    from zoo_core.runtime import infer_batches

    zoo = make_zoo(tmp_path)
    samples = sample_input(zoo.registry.model("resnest-tiny"), 4, seed=9)
    outputs = {}
    for label, backend, flags in (("ort", "onnxruntime", {}), ("default", "ascend", {}),
                                  ("fp32", "ascend", {"backend_options": {"precision_mode": "force_fp32"}})):
        options = options_for(zoo, backend=backend, batch_sizes=(4,), **flags)
        prepared = prepare(zoo, options)
        with zoo.open_runner(prepared.compiled[4], prepared.model, options) as runner:
            outputs[label] = infer_batches(runner, {"actual_input_1": samples})[0]
    scale = float(np.abs(outputs["ort"]).max())
    np.testing.assert_allclose(outputs["fp32"], outputs["ort"], rtol=0, atol=1e-6 * scale)
    fp16_error = float(np.abs(outputs["default"] - outputs["ort"]).max())
    assert 1e-4 * scale < fp16_error < 1e-2 * scale, (fp16_error, scale)
    assert _fp16_exact(outputs["default"]) and not _fp16_exact(outputs["fp32"])
