"""Every registered model against its declared config: build, forward, export, presets. Grows with the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from zoo_core.export import build_module, export_onnx, sample_input
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.samples import preprocess_one
from zoo_core.weights import resolve_weights

REGISTRY = Registry(get_plugin_manager())
MODELS = sorted(REGISTRY.models)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.JPEG"
    pixels = (np.random.default_rng(0).random((333, 500, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_the_registry_holds_both_families() -> None:
    families = {REGISTRY.models[m].family for m in MODELS}
    assert {"resnest", "resnet"} <= families


@pytest.mark.parametrize("name", MODELS)
def test_config_is_coherent(name: str) -> None:
    spec = REGISTRY.model(name)
    assert spec.input_names and spec.output_names and spec.num_classes > 0
    assert spec.preset in spec.preset_names
    assert len(spec.mean) == len(spec.std) == spec.input_shape[0]
    for backend, override in spec.backend_inputs.items():
        assert override.get("preset", spec.preset) in spec.preset_names, backend
    if spec.weights is not None:
        assert spec.weights.file_name.split("-")[-1].startswith(spec.weights.sha256_prefix)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_exports_with_the_declared_names_and_shapes(name: str, tmp_path: Path) -> None:
    spec = REGISTRY.model(name)
    weights = resolve_weights(spec, "random")
    module = build_module(spec, weights)
    with torch.no_grad():
        out = module(torch.from_numpy(sample_input(spec, 1)))
    assert tuple(out.shape) == (1, spec.num_classes)
    path = tmp_path / "m.onnx"
    check = export_onnx(spec, weights, path, opset=spec.opset, atol=1e-4)
    assert check.max_abs_diff <= check.tolerance
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == list(spec.input_names)
    assert [o.name for o in graph.output] == list(spec.output_names)
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == list(spec.input_shape)


@pytest.mark.parametrize("name", MODELS)
def test_every_preset_gives_the_declared_input(name: str, image: Path) -> None:
    spec = REGISTRY.model(name)
    pm = REGISTRY.pm
    expected = {p: (tuple(spec.input_shape), spec.input_dtype) for p in spec.preset_names}
    for backend in spec.backend_inputs:
        shape, dtype, _ = spec.input_for(backend)
        expected[spec.preset_for(backend, spec.preset)] = (shape, dtype)
    for preset, (shape, dtype) in expected.items():
        array, error = preprocess_one(pm, spec, preset, image)  # the model's plugin, else its declaration
        assert error is None and array is not None, f"{name} with {preset}: {error}"
        assert array.shape == shape and array.dtype == np.dtype(dtype) and array.flags.c_contiguous, preset
