"""Our ResNeSt matches the official implementation key for key and output for output, and exports batch-dynamic."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import onnxsim
import pytest
import resnest.torch as official  # a declared test dependency: missing, it must fail, not skip
import torch
from onnx import numpy_helper
from torch import nn

from zoo_resnest import model as ours

INPUT, OUTPUT = "actual_input_1", "output1"
ATOL = 1e-5

# The exporter this project uses (opset 11, TorchScript-based) is deprecated in favour of the dynamo one.
pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning",
    "ignore:The feature will be removed:DeprecationWarning",
)


def _images(batch: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomize_norms(model: nn.Module, seed: int) -> nn.Module:
    """Give every BN non-trivial affine parameters and running statistics near identity (logits stay O(1-10))."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) * 0.2 + 0.9)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.05)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.05)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.2 + 0.9)
    return model


@pytest.fixture(scope="module", params=["resnest50", "resnest101"])
def pair(request: pytest.FixtureRequest) -> tuple[nn.Module, nn.Module]:
    """(official, ours) for one variant; the official one with seeded random weights, both in eval mode."""
    name = request.param
    torch.manual_seed(0)
    reference = _randomize_norms(getattr(official, name)(), seed=1).eval()
    mine: Callable[[], ours.ResNeSt] = getattr(ours, name)
    return reference, mine().eval()


def test_state_dict_keys_order_and_shapes_match_official(pair: tuple[nn.Module, nn.Module]) -> None:
    reference, mine = pair
    expected = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    actual = {key: tuple(value.shape) for key, value in mine.state_dict().items()}
    assert list(actual) == list(expected)
    assert actual == expected


def test_outputs_match_official_with_its_weights(pair: tuple[nn.Module, nn.Module]) -> None:
    reference, mine = pair
    mine.load_state_dict(reference.state_dict(), strict=True)
    x = _images(2)
    with torch.no_grad():
        want, got = reference(x), mine(x)
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def tiny() -> tuple[ours.ResNeSt, onnx.ModelProto]:
    """A tiny ResNeSt from the same code, and its ONNX export (opset 11, dynamic batch) as the recipe makes it."""
    torch.manual_seed(0)
    model = ours.build_resnest([1, 1, 1, 1], stem_width=8, planes=(8, 16, 32, 64), num_classes=10)
    model = _randomize_norms(model, seed=2).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (_images(2),),
        buffer,
        opset_version=11,
        dynamo=False,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
    )
    return model, onnx.load_from_string(buffer.getvalue())


def _run_onnx(proto: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT], {INPUT: x.numpy()})
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_export_is_batch_dynamic_and_matches_torch(
    tiny: tuple[ours.ResNeSt, onnx.ModelProto], batch: int
) -> None:
    model, proto = tiny
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 11
    x = _images(batch, seed=batch)
    with torch.no_grad():
        want = model(x).numpy()
    got = _run_onnx(proto, x)
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_onnxsim_with_fixed_batch_keeps_the_graph_correct(tiny: tuple[ours.ResNeSt, onnx.ModelProto]) -> None:
    model, proto = tiny
    simplified, ok = onnxsim.simplify(proto, overwrite_input_shapes={INPUT: [4, 3, 224, 224]})
    assert ok
    # The radix softmax's reshapes keep -1 for the batch; the official `view(batch, ...)` form fails here,
    # as onnxsim folds the fixed batch into it (the export caveat of the recipe).
    constants = {init.name: numpy_helper.to_array(init) for init in simplified.graph.initializer}
    targets = [constants[node.input[1]] for node in simplified.graph.node if node.op_type == "Reshape"]
    assert targets and all(target[0] == -1 for target in targets)
    x = _images(4, seed=4)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_run_onnx(simplified, x), want, rtol=0, atol=ATOL)
