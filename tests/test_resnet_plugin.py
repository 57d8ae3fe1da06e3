"""The third-party ResNet plugin (examples/zoo-resnet): a second model family through the entry point, unchanged core.

It is installed by the README's test command (``pip install -e ./examples/zoo-resnet``); torchvision is not
installed, so torchvision's ResNet-50 is written out below from its documented architecture.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_resnet
from onnx_agreement import assert_onnx_matches_module
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.preprocessing import apply
from zoo_core.specs import ModelSpec, RunOptions
from zoo_core.weights import WeightsRef
from zoo_resnet.config import MODELS
from zoo_resnet.model import build_resnet

RESNET50 = MODELS[0]
RANDOM = WeightsRef(kind="random", path=None, sha256=None, source="random", seed=0)
TINY = ModelSpec(
    name="resnet-tiny",
    family="resnet",
    factory="zoo_resnet.model:build_resnet",
    factory_kwargs={"layers": (1, 1, 1, 1), "planes": (8, 16, 32, 64), "stem": 8, "num_classes": 10},
    input_names=("actual_input_1",),
    input_shape=(3, 64, 64),
    output_names=("output1",),
    num_classes=10,
)


def torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision's ``resnet50()`` state_dict, key -> shape, in its order: a 7x7 stem of 64, stages of
    [3, 4, 6, 3] bottlenecks of 64/128/256/512 planes widened 4x, the stride on conv2 of each stage's first
    block (v1.5), a projection ``downsample`` (1x1 conv, BN) on each stage's first block, a 2048 -> 1000 head."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    in_channels = 64
    for stage, (depth, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for index in range(depth):
            block = f"layer{stage}.{index}"
            shapes[f"{block}.conv1.weight"] = (planes, in_channels, 1, 1)
            bn(f"{block}.bn1", planes)
            shapes[f"{block}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{block}.bn2", planes)
            shapes[f"{block}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{block}.bn3", planes * 4)
            if index == 0:
                shapes[f"{block}.downsample.0.weight"] = (planes * 4, in_channels, 1, 1)
                bn(f"{block}.downsample.1", planes * 4)
            in_channels = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


# ----------------------------------------------------------------------------------------------------------------
# Registration and configuration


def test_resnet50_comes_through_the_entry_point(zoo_cli) -> None:
    result = zoo_cli("list", "--json")
    assert result.code == 0, result
    rows = {r["name"]: r for r in result.json()}
    assert rows["resnet50"] == {
        "name": "resnet50", "family": "resnet", "input_shape": [3, 224, 224],
        "weights_known": True, "weights_kind": "url", "weights_cached": False, "plugin": "resnet",
    }
    assert "resnest50" in rows  # the in-tree family is still there beside it
    pm = get_plugin_manager()
    assert pm.sources["resnet"] == "zoo-resnet (entry point)" and not pm.problems


def test_resnet50_config() -> None:
    registry = Registry(get_plugin_manager(autoload=False, plugins=[zoo_resnet]))
    r50 = registry.models["resnet50"]
    assert r50.family == "resnet" and r50.factory == "zoo_resnet.model:build_resnet"
    assert r50.factory_kwargs == {"layers": (3, 4, 6, 3)}
    assert r50.input_names == ("actual_input_1",) and r50.output_names == ("output1",)
    assert r50.input_shape == (3, 224, 224) and r50.opset == 11
    assert r50.preset == "modelzoo" and r50.preset_names == ("modelzoo", "aipp")
    assert r50.weights.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert r50.weights.sha256_prefix == "0676ba61" and r50.weights.file_name == "resnet50-0676ba61.pth"
    assert r50.license == "BSD-3-Clause" and r50.reference_accuracy.top1 == 0.7613
    # On Ascend the compiled model takes the aipp preset's uint8 images; everywhere else the float input.
    assert r50.input_for("ascend") == ((256, 256, 3), "uint8", "NHWC")
    assert r50.input_for("onnxruntime") == ((3, 224, 224), "float32", "NCHW")
    assert r50.preset_for("ascend", "modelzoo") == "aipp" and r50.preset_for("onnxruntime", "modelzoo") == "modelzoo"


def test_info_json_shows_the_backend_inputs(zoo_cli) -> None:
    result = zoo_cli("info", "resnet50", "--json")
    assert result.code == 0, result
    data = result.json()
    assert data["backend_inputs"] == {"ascend": {"shape": [256, 256, 3], "dtype": "uint8", "format": "NHWC",
                                                 "preset": "aipp"}}
    assert Path(data["backend_args"]["ascend"]["insert_op_conf"]).is_file()


def aipp_config(path: Path) -> dict[str, str]:
    """The ``key : value`` lines inside ``aipp_op { ... }`` of an ATC AIPP config."""
    text = path.read_text()
    body = re.search(r"aipp_op\s*\{(.*?)\}", text, re.S)
    assert body, f"no aipp_op section in {path}"
    pairs = [line.split(":", 1) for line in body.group(1).splitlines() if ":" in line]
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_aipp_config_is_the_modelzoo_crop_and_normalisation() -> None:
    cfg_path = Path(RESNET50.backend_args["ascend"]["insert_op_conf"])
    assert cfg_path.is_absolute() and cfg_path.parent == Path(zoo_resnet.__file__).resolve().parent
    cfg = aipp_config(cfg_path)
    assert cfg["aipp_mode"] == "static" and cfg["input_format"] == "RGB888_U8" and cfg["crop"] == "true"
    height, width, _ = RESNET50.backend_inputs["ascend"]["shape"]
    assert (int(cfg["src_image_size_h"]), int(cfg["src_image_size_w"])) == (height, width) == (256, 256)
    assert (int(cfg["load_start_pos_h"]), int(cfg["load_start_pos_w"])) == (16, 16)
    assert (3, int(cfg["crop_size_h"]), int(cfg["crop_size_w"])) == RESNET50.input_shape
    for c in range(3):
        assert float(cfg[f"min_chn_{c}"]) == pytest.approx(255 * RESNET50.mean[c], abs=1e-9)
        assert float(cfg[f"var_reci_chn_{c}"]) == pytest.approx(1 / (255 * RESNET50.std[c]), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# The model


def test_state_dict_is_torchvision_resnet50() -> None:
    expected = torchvision_resnet50_shapes()
    assert len(expected) == 320
    state = build_resnet(layers=(3, 4, 6, 3)).state_dict()
    assert list(state) == list(expected)  # same keys, in the same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    # torchvision documents 25,557,032 parameters for resnet50.
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(v.numel() for k, v in state.items() if not k.endswith(buffers)) == 25_557_032


def test_initialisation_is_torchvisions() -> None:
    import torch

    torch.manual_seed(0)
    model = build_resnet(layers=(3, 4, 6, 3)).requires_grad_(False)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    weight = model.layer4[0].conv2.weight  # kaiming normal, fan_out, relu: std sqrt(2 / (512 * 3 * 3))
    assert float(weight.mean()) == pytest.approx(0.0, abs=1e-3)
    assert float(weight.std()) == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)


def test_tiny_variant_exports_and_matches_onnxruntime(tmp_path) -> None:
    """The plugin has no stage hook: the core's generic export of the declared factory does the work."""
    import onnx

    from zoo_core.export import build_module, export_onnx

    pm = get_plugin_manager(autoload=False, plugins=[zoo_resnet])
    assert not [impl for impl in pm.hook.zoo_export.get_hookimpls() if impl.plugin is zoo_resnet]
    path = tmp_path / "tiny.onnx"
    export_onnx(TINY, RANDOM, path, opset=RunOptions(model=TINY.name).opset, atol=1e-4)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["actual_input_1"] and [o.name for o in graph.output] == ["output1"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch axis stays dynamic
    assert_onnx_matches_module(path, build_module(TINY, RANDOM), "actual_input_1", (3, 64, 64), classes=10)


@pytest.mark.slow
def test_zoo_run_resnet50_on_onnxruntime(zoo_cli, tmp_path) -> None:
    result = zoo_cli("run", "resnet50", "--bs", "8", "--weights", "random", "--warmup", "0", "--iterations", "2",
                     "--json", "--out", str(tmp_path / "out"))
    assert result.code == 0, result
    data = result.json()
    assert data["model"] == "resnet50" and data["backend"] == "onnxruntime" and data["weights"] == "random"
    assert data["export"]["opset"] == 11
    [row] = data["results"]
    assert row["batch_size"] == 8 and row["throughput"] > 0
    assert (tmp_path / "out" / "results.json").is_file()


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing (the core executing the declarations): the host's float preset is the chip's AIPP applied to the
# aipp preset's pixels


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """A photo-sized RGB JPEG, a grayscale PNG, an RGBA PNG and a palette GIF, of random content."""
    rng = np.random.default_rng(7)
    paths = []
    for name, mode, size in [("rgb.jpg", "RGB", (500, 375)), ("gray.png", "L", (300, 411)),
                             ("rgba.png", "RGBA", (256, 256)), ("palette.gif", "P", (123, 97))]:
        channels = {"RGB": 3, "L": 1, "RGBA": 4, "P": 1}[mode]
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        img = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        if mode == "P":
            img = img.convert("P")
        assert img.mode == mode
        img.save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_aipp_preset_is_the_uint8_image_the_chip_takes(images) -> None:
    shape, dtype, _ = RESNET50.input_for("ascend")
    for path in images:
        sample = apply(RESNET50, "aipp", path)
        assert sample.dtype == np.uint8 == np.dtype(dtype) and sample.shape == shape == (256, 256, 3)
        assert sample.flags.c_contiguous
        with Image.open(path) as img:
            squashed = np.asarray(img.convert("RGB").resize((256, 256), Image.BILINEAR))
        np.testing.assert_array_equal(sample, squashed)


def test_modelzoo_preset_is_aipp_done_on_the_host(images) -> None:
    """crop [16:240] of the aipp preset's pixels, (x - min_chn) * var_reci_chn with the shipped config's numbers."""
    cfg = aipp_config(Path(RESNET50.backend_args["ascend"]["insert_op_conf"]))
    top, left = int(cfg["load_start_pos_h"]), int(cfg["load_start_pos_w"])
    height, width = int(cfg["crop_size_h"]), int(cfg["crop_size_w"])
    minimum = np.array([float(cfg[f"min_chn_{c}"]) for c in range(3)])
    reciprocal = np.array([float(cfg[f"var_reci_chn_{c}"]) for c in range(3)])
    for path in images:
        pixels = apply(RESNET50, "aipp", path)
        on_chip = (pixels[top : top + height, left : left + width].astype(np.float64) - minimum) * reciprocal
        on_chip = on_chip.transpose(2, 0, 1)
        sample = apply(RESNET50, "modelzoo", path)
        assert sample.dtype == np.float32 and sample.shape == RESNET50.input_shape and sample.flags.c_contiguous
        np.testing.assert_allclose(sample, on_chip, rtol=0, atol=1e-6)
