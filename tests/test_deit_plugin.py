"""The DeiT-Tiny example plugin (examples/zoo-deit): a vision transformer declared as data, no stage hook.

It is installed by the README's test command (``pip install -e ./examples/zoo-deit``); timm is not installed, so
timm's ``deit_tiny_patch16_224`` state_dict layout is written out below from timm's ``vision_transformer.py``.
The core exports it from its factory and prepares its images from its declaration; these tests run it on ONNX
Runtime, torch and the Ascend fakes, and score a self-consistent set (labels = the model's own predictions).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_deit
from accuracy_data import write_images, write_labels
from onnx_agreement import assert_onnx_matches_module
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.specs import ModelSpec
from zoo_core.weights import WeightsRef
from zoo_deit.config import MODELS
from zoo_deit.model import build_deit

DEIT = MODELS[0]
NAME = "deit_tiny_patch16_224"
RANDOM = WeightsRef(kind="random", path=None, sha256=None, source="random", seed=0)
# The same code at toy size: 32x32 input, 8x8 patches (16 + 1 tokens), 2 blocks of width 24, 10 classes.
TINY = ModelSpec(
    name="deit-toy",
    family="deit",
    factory="zoo_deit.model:build_deit",
    factory_kwargs={"image_size": 32, "patch": 8, "dim": 24, "depth": 2, "heads": 3, "num_classes": 10},
    input_names=("input",),
    input_shape=(3, 32, 32),
    output_names=("output",),
    num_classes=10,
    opset=DEIT.opset,
)
# The Ascend fakes' ATC parses default-domain opsets up to 13 (tests/fakes/bin/atc, MAX_OPSET): DeiT's own
# opset (17, for LayerNormalization) is refused there with E19010, so the Ascend runs export at 13.
FAKE_ATC_OPSET = "13"


# ----------------------------------------------------------------------------------------------------------------
# Registration and configuration


def test_deit_comes_through_the_entry_point(zoo_cli) -> None:
    result = zoo_cli("list", "--json")
    assert result.code == 0, result
    rows = {r["name"]: r for r in result.json()}
    row = rows[NAME]
    assert {k: row[k] for k in ("family", "input_shape", "weights_known", "weights_cached", "plugin")} == {
        "family": "deit", "input_shape": [3, 224, 224], "weights_known": True, "weights_cached": False,
        "plugin": "deit",
    }
    assert {"resnest50", "resnet50"} <= set(rows)  # the other two families beside it
    pm = get_plugin_manager()
    assert pm.sources["deit"] == "zoo-deit (entry point)" and not pm.problems


def test_the_plugin_is_a_declaration_without_stage_hooks() -> None:
    pm = get_plugin_manager(autoload=False, plugins=[zoo_deit])
    assert [caller.name for caller in pm.get_hookcallers(zoo_deit)] == ["zoo_register_models"]


def test_deit_config() -> None:
    registry = Registry(get_plugin_manager(autoload=False, plugins=[zoo_deit]))
    spec = registry.models[NAME]
    assert spec.family == "deit" and spec.factory == "zoo_deit.model:build_deit" and not spec.factory_kwargs
    assert spec.input_shape == (3, 224, 224) and spec.input_dtype == "float32" and spec.num_classes == 1000
    assert spec.input_names == ("input",) and spec.output_names == ("output",)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)  # timm's IMAGENET_DEFAULT
    assert spec.opset == 17  # LayerNormalization is an ONNX operator from opset 17 on
    assert spec.weights.url == "https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth"
    assert spec.weights.sha256_prefix == "a1311bcf" and spec.weights.file_name == "deit_tiny_patch16_224-a1311bcf.pth"
    assert spec.reference_accuracy.top1 == 0.722 and spec.license == "Apache-2.0"
    assert spec.input_for("ascend") == spec.input_for("onnxruntime") == ((3, 224, 224), "float32", "NCHW")


def test_info_json_shows_the_preprocessing_declaration(zoo_cli) -> None:
    result = zoo_cli("info", NAME, "--json")
    assert result.code == 0, result
    data = result.json()
    assert data["name"] == NAME and data["opset"] == 17
    text = json.dumps(data["presets"])
    assert "bicubic" in text and "0.875" in text  # the declaration, as data


# ----------------------------------------------------------------------------------------------------------------
# The model


def timm_deit_tiny_shapes(depth: int = 12, dim: int = 192, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """timm's ``deit_tiny_patch16_224`` state_dict, key -> shape, in its order (timm's ``VisionTransformer``:
    the tokens and position embedding are the module's own parameters, so they come first; then ``patch_embed``,
    ``blocks`` (``Block``: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2; its q_norm/k_norm, ls1/ls2 and
    drop paths are Identity and hold nothing), ``norm`` and ``head``)."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 197, dim),  # 14 x 14 patches of 16 x 16 pixels, plus the class token
        "patch_embed.proj.weight": (dim, 3, 16, 16),
        "patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        shapes.update({
            f"blocks.{i}.norm1.weight": (dim,), f"blocks.{i}.norm1.bias": (dim,),
            f"blocks.{i}.attn.qkv.weight": (3 * dim, dim), f"blocks.{i}.attn.qkv.bias": (3 * dim,),
            f"blocks.{i}.attn.proj.weight": (dim, dim), f"blocks.{i}.attn.proj.bias": (dim,),
            f"blocks.{i}.norm2.weight": (dim,), f"blocks.{i}.norm2.bias": (dim,),
            f"blocks.{i}.mlp.fc1.weight": (4 * dim, dim), f"blocks.{i}.mlp.fc1.bias": (4 * dim,),
            f"blocks.{i}.mlp.fc2.weight": (dim, 4 * dim), f"blocks.{i}.mlp.fc2.bias": (dim,),
        })
    shapes.update({"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)})
    return shapes


def test_state_dict_is_timm_deit_tiny() -> None:
    expected = timm_deit_tiny_shapes()
    assert len(expected) == 4 + 12 * 12 + 4 == 152
    state = build_deit().state_dict()
    assert list(state) == list(expected)  # the same keys, in the same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    # DeiT-Ti: 5.7M parameters (the DeiT paper's table; timm lists 5.72M), no buffers.
    assert sum(v.numel() for v in state.values()) == 5_717_416


def test_a_checkpoint_in_the_releases_layout_loads_strictly(tmp_path) -> None:
    """The DeiT release saves ``{"model": state_dict}`` in timm's layout; the core unwraps it and loads it into
    the plugin's model with strict=True, every tensor in its place."""
    import torch

    from zoo_core.export import build_module
    from zoo_core.weights import resolve_weights

    generator = torch.Generator().manual_seed(1)
    release = {k: torch.randn(shape, generator=generator) for k, shape in timm_deit_tiny_shapes().items()}
    path = tmp_path / "deit_tiny_patch16_224-release.pth"
    torch.save({"model": release}, path)
    module = build_module(DEIT, resolve_weights(DEIT, str(path)))
    loaded = module.state_dict()
    assert all(torch.equal(loaded[k], release[k]) for k in release)


def test_random_weights_are_seeded_and_small() -> None:
    """timm's init: truncated normal of std .02 for the tokens, position embedding and Linear weights; zero
    biases; LayerNorm as identity (eps 1e-6). The same seed gives the same network."""
    import torch

    from zoo_core.export import build_module

    one, two = build_module(DEIT, RANDOM).state_dict(), build_module(DEIT, RANDOM).state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)
    for key in ("cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight", "head.weight"):
        assert float(one[key].std()) == pytest.approx(0.02, rel=0.1), key
    assert not one["blocks.5.attn.qkv.bias"].any() and not one["head.bias"].any()
    assert torch.all(one["blocks.3.norm2.weight"] == 1) and not one["norm.bias"].any()
    module = build_module(DEIT, RANDOM)
    assert module.norm.eps == module.blocks[0].norm1.eps == 1e-6


def test_toy_variant_exports_through_the_core_and_matches_onnxruntime(tmp_path) -> None:
    """No zoo_export hook: the core's exporter builds it from its factory; at opset 17 every LayerNorm is one
    LayerNormalization node, and the batch axis stays dynamic."""
    import onnx

    from zoo_core.export import build_module, export_onnx

    path = tmp_path / "toy.onnx"
    check = export_onnx(TINY, RANDOM, path, opset=TINY.opset)
    assert check.max_abs_diff <= check.tolerance
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    ops = [node.op_type for node in graph.node]
    assert ops.count("LayerNormalization") == 2 * 2 + 1 and ops.count("Softmax") == 2 and "Erf" in ops
    assert_onnx_matches_module(path, build_module(TINY, RANDOM), "input", (3, 32, 32), classes=10)


# ----------------------------------------------------------------------------------------------------------------
# zoo run with random weights, on each backend


def run_random(zoo_cli, tmp_path: Path, *extra: str, env=None) -> dict:
    result = zoo_cli("run", NAME, "--bs", "2", "--weights", "random", "--warmup", "0", "--iterations", "1",
                     "--json", "--out", str(tmp_path / "out"), *extra, env=env)
    assert result.code == 0, result
    data = result.json()
    assert data["model"] == NAME and data["weights"] == "random"
    [row] = data["results"]
    assert row["batch_size"] == 2 and row["throughput"] > 0
    return data


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_zoo_run_random_weights(zoo_cli, tmp_path, backend) -> None:
    data = run_random(zoo_cli, tmp_path, "--backend", backend)
    assert data["backend"] == backend and data["export"]["opset"] == 17


@pytest.mark.slow
def test_zoo_run_random_weights_on_the_ascend_fakes(zoo_cli, ascend_env, tmp_path) -> None:
    data = run_random(zoo_cli, tmp_path, "--backend", "ascend", "--opset", FAKE_ATC_OPSET, env=ascend_env)
    assert data["backend"] == "ascend" and data["export"]["opset"] == 13


def test_the_fake_atc_refuses_deits_own_opset_in_one_line(zoo_cli, ascend_env, tmp_path) -> None:
    from test_bad_inputs import one_error

    result = zoo_cli("run", NAME, "--bs", "2", "--weights", "random", "--warmup", "0", "--iterations", "1",
                     "--backend", "ascend", "--out", str(tmp_path / "out"), env=ascend_env)
    one_error(result, 3)
    assert "E19010" in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# Self-consistent accuracy: labels are the model's own predictions under DeiT's documented preprocessing


def deit_input(path: Path, size: int = 224, crop_fraction: float = 0.875) -> np.ndarray:
    """DeiT's evaluation transform (its datasets.py: Resize(int(224 / 0.875)) bicubic, CenterCrop(224),
    ToTensor, Normalize with ImageNet's mean/std), written out with Pillow and numpy, independently of the core:
    RGB; the short side to 256 and the long side to ``int(256 * long / short)``; the centre 224x224 with
    torchvision's ``int(round((side - 224) / 2))`` corners; /255, mean/std; CHW float32."""
    target = int(size / crop_fraction)
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        width, height = rgb.size
        if width <= height:
            new = (target, int(target * height / width))
        else:
            new = (int(target * width / height), target)
        rgb = rgb.resize(new, Image.BICUBIC)
    top, left = int(round((new[1] - size) / 2.0)), int(round((new[0] - size) / 2.0))
    hwc = np.asarray(rgb, dtype=np.float32)[top : top + size, left : left + size]
    hwc = (hwc / np.float32(255.0) - np.asarray(DEIT.mean, np.float32)) / np.asarray(DEIT.std, np.float32)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Odd sizes and modes: landscape and portrait JPEGs, a square PNG, one smaller than the crop (upscaled),
    greyscale, RGBA and a palette image."""
    rng = np.random.default_rng(3)
    paths = []
    for name, mode, size in [("wide.jpg", "RGB", (500, 375)), ("tall.jpg", "RGB", (333, 517)),
                             ("square.png", "RGB", (256, 256)), ("small.png", "RGB", (150, 97)),
                             ("gray.png", "L", (300, 411)), ("rgba.png", "RGBA", (301, 300)),
                             ("palette.gif", "P", (257, 259))]:
        channels = {"RGB": 3, "L": 1, "RGBA": 4, "P": 1}[mode]
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        img = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        img = img.convert("P") if mode == "P" else img
        img.save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_the_declared_preprocessing_is_deits_evaluation_transform(images) -> None:
    from zoo_core import preprocessing

    for path in images:
        sample = preprocessing.apply(DEIT, DEIT.preset, path)
        assert sample.dtype == np.float32 and sample.shape == (3, 224, 224) and sample.flags.c_contiguous
        np.testing.assert_array_equal(sample, deit_input(path), err_msg=path.name)


@dataclass(frozen=True)
class SelfConsistent:
    data: Path
    weights: Path
    labels: dict[str, int]  # file stem -> class
    raw_classes: int  # distinct top-1 of the random network before its head is standardised


COUNT = 128
# Measured on these images (seed 0): |force_fp16 - fp32| of a logit is at most 0.024, so a top-1 flip needs a
# margin under ~0.05; 0.08 keeps 74 of 128 images.
MIN_MARGIN = 0.08


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SelfConsistent:
    """JPEGs (tests/accuracy_data.py's generator), a seeded random DeiT-Tiny whose head is standardised (each
    class's logit has mean 0 and std 1 over the images, so the top-1 spreads over many classes), its weights, and
    a label file of its torch-eager predictions under :func:`deit_input`, keeping images whose top-1 leads by at
    least ``MIN_MARGIN``."""
    import torch

    from zoo_core.export import build_module

    root = tmp_path_factory.mktemp("deit-selfconsistent")
    data = root / "data"
    data.mkdir()
    paths = write_images(data, COUNT, seed=0)
    module = build_module(DEIT, RANDOM)
    inputs = torch.from_numpy(np.stack([deit_input(p) for p in paths]))
    with torch.no_grad():
        features = torch.cat([module.forward_features(batch)[:, 0] for batch in inputs.split(16)])
        raw = module.head(features)
        mean, std = raw.mean(0), raw.std(0).clamp_min(1e-6)
        module.head.weight.div_(std[:, None])
        module.head.bias.sub_(mean).div_(std)
        top = module.head(features).topk(2, dim=1)
    labels = {}
    for path, (first, second), label in zip(paths, top.values.tolist(), top.indices[:, 0].tolist(), strict=True):
        if first - second >= MIN_MARGIN:
            labels[path.stem] = int(label)
        else:
            path.unlink()
    write_labels(data / "val_label.txt", labels, seed=0)
    weights = root / "weights.pth"
    torch.save(module.state_dict(), weights)
    return SelfConsistent(data, weights, labels, len(set(raw.argmax(1).tolist())))


def test_the_dataset_is_a_discriminating_oracle(dataset) -> None:
    assert dataset.raw_classes >= 10  # the random network as built already predicts many classes (20 measured)
    counts = np.bincount(list(dataset.labels.values()))
    # Measured (seed 0): 74 images kept of 128, 54 classes, none with more than 5 images.
    assert len(dataset.labels) >= 64 and len(set(dataset.labels.values())) >= 32 and counts.max() <= 8


def run_accuracy(zoo_cli, dataset: SelfConsistent, out: Path, *extra: str, env=None) -> dict:
    result = zoo_cli("run", NAME, "--bs", "8", "--data", str(dataset.data), "--weights", str(dataset.weights),
                     "--warmup", "0", "--iterations", "1", "--json", "--out", str(out), *extra, env=env)
    assert result.code == 0, result
    data = result.json()
    accuracy = data["accuracy"]
    assert accuracy.get("resumed_images", 0) == 0 and accuracy["images"] == len(dataset.labels)
    with (out / "predictions.csv").open(newline="") as f:
        predicted = {row["id"]: (int(row["top1"]), int(row["label"])) for row in csv.DictReader(f)}
    assert predicted == {stem: (label, label) for stem, label in dataset.labels.items()}
    assert (accuracy["top1"], accuracy["top5"]) == (1.0, 1.0)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_top1_is_one_on_its_own_predictions(zoo_cli, dataset, tmp_path, backend) -> None:
    data = run_accuracy(zoo_cli, dataset, tmp_path / "out", "--backend", backend)
    assert data["backend"] == backend


@pytest.mark.slow
def test_the_ascend_fakes_agree(zoo_cli, ascend_env, dataset, tmp_path) -> None:
    """Under ATC's default force_fp16, which the fakes compute in (float16 weights and activations)."""
    data = run_accuracy(zoo_cli, dataset, tmp_path / "out", "--backend", "ascend", "--opset", FAKE_ATC_OPSET,
                        env=ascend_env)
    assert data["backend"] == "ascend"
