"""Backends return intermediate tensors (#16): a compile with ``RunOptions.extra_outputs`` gives a model whose outputs
are the model's own, then the marked tensors of the simplified ONNX graph in the order asked, with ONNX Runtime's
values for them: ONNX Runtime (graph outputs added before the session), OpenVINO (``add_outputs``) and Ascend on the
fakes (ATC ``--out_nodes`` naming the original outputs and then the marked ones, by node name and output index).

Each case compiles resnest-tiny at batch 2. The reference is an unoptimized ONNX Runtime session of the simplified
graph with the same tensors added as outputs, made here, apart from any backend's code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from zoo_core.app import Zoo
from zoo_core.backends import ascend
from zoo_core.errors import UsageError
from zoo_core.export import sample_input
from zoo_core.onnx_shared import load_shared
from zoo_core.runner import SIMPLIFIED_FILE, Prepared, prepare
from zoo_core.specs import resolve_options

MODEL, BATCH, INPUT, OUTPUT = "resnest-tiny", 2, "actual_input_1", "output1"
# Three tensors, not in graph order: the second output of a Split (index 1), a Conv whose Relu ONNX Runtime and
# OpenVINO fuse into it when nothing else reads it, and a block's output (a Relu after an Add).
MARKS = ("/layer2/layer2.0/conv2/fc1/Conv_output_0", "/layer1/layer1.0/conv2/Split_output_1",
         "/layer1/layer1.0/Relu_1_output_0")
FP32 = {"precision_mode": "force_fp32"}


def options_for(zoo: Zoo, backend: str, marks: tuple[str, ...], backend_options: Mapping[str, str] = {}) -> Any:
    values = {"weights": "random", "warmup": 0, "iterations": 1, "batch_sizes": (BATCH,), "backend": backend,
              "backend_options": backend_options, "extra_outputs": marks}
    return resolve_options(zoo.registry.model(MODEL), values)


def compiled_for(backend: str, marks: tuple[str, ...], backend_options: Mapping[str, str] = {}) -> Prepared:
    zoo = Zoo.create()
    return prepare(zoo, options_for(zoo, backend, marks, backend_options))


def run(prepared: Prepared, backend: str, marks: tuple[str, ...], batch: np.ndarray,
        backend_options: Mapping[str, str] = {}) -> list[np.ndarray]:
    zoo = Zoo.create()
    options = options_for(zoo, backend, marks, backend_options)
    with zoo.open_runner(prepared.compiled[BATCH], prepared.model, options) as runner:
        return list(runner.infer({INPUT: batch}))


def simplified(prepared: Prepared) -> Path:
    (artifact,) = [a for a in prepared.artifacts if a.stage == "simplify"]
    return artifact.file(SIMPLIFIED_FILE)


def reference(prepared: Prepared, names: tuple[str, ...], batch: np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime's values of ``names`` in the simplified graph, no graph optimization."""
    proto = load_shared(simplified(prepared))
    present = {o.name for o in proto.graph.output}
    proto.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in dict.fromkeys(names) if n not in present)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(list(names), {INPUT: batch})


def batch() -> np.ndarray:
    return sample_input(Zoo.create().registry.model(MODEL), BATCH, seed=5)


def assert_marked_outputs(backend: str, marks: tuple[str, ...], atol: float,
                          backend_options: Mapping[str, str] = {}) -> list[np.ndarray]:
    """The compiled model says and returns (output1, *marks), each within ``atol`` of ONNX Runtime's value
    (relative to the tensor's largest magnitude, at least 1)."""
    prepared = compiled_for(backend, marks, backend_options)
    assert prepared.compiled[BATCH].output_names == (OUTPUT, *marks)
    feed = batch()
    got = run(prepared, backend, marks, feed, backend_options)
    expected = reference(prepared, (OUTPUT, *marks), feed)
    assert len(got) == 1 + len(marks)
    for name, value, want in zip((OUTPUT, *marks), got, expected, strict=True):
        assert value.shape == want.shape, name
        assert np.isfinite(value).all(), name
        error = float(np.abs(value.astype(np.float64) - want).max()) / max(1.0, float(np.abs(want).max()))
        assert error <= atol, f"{backend}: {name}: error {error:.3g} > {atol:g}"
    return got


# -------------------------------------------------------------------------
# Each backend that exposes tensors returns them
# -------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "exposes"), [("onnxruntime", True), ("openvino", True), ("ascend", True),
                                                  ("torch", False)])
def test_the_backends_that_return_marked_tensors_say_so(backend, exposes):
    assert Zoo.create().registry.backend(backend, require_available=False).exposes_tensors is exposes


def test_onnxruntime_returns_the_marked_tensors_after_the_output():
    assert_marked_outputs("onnxruntime", MARKS, 1e-6)


def test_openvino_returns_the_marked_tensors_after_the_output():
    pytest.importorskip("openvino", reason="openvino does not import: pip install 'zoo[openvino]'")
    assert_marked_outputs("openvino", MARKS, 1e-4)


def test_ascend_returns_the_marked_tensors_after_the_output(ascend_env):
    assert_marked_outputs("ascend", MARKS, 1e-5, FP32)


def test_ascend_returns_the_marked_tensors_in_float16(ascend_env):
    """ATC's default precision mode: every marked tensor is a float16 value (the fake computes as the chip does),
    within float16's error of ONNX Runtime's float32 one."""
    got = assert_marked_outputs("ascend", MARKS, 5e-3)  # measured 1e-4 .. 8e-4 on these tensors
    for value in got:
        assert np.array_equal(value, value.astype(np.float16).astype(np.float32))


def test_a_marked_model_output_or_a_tensor_marked_twice_comes_back_where_asked(ascend_env):
    marks = (MARKS[1], OUTPUT, MARKS[1])
    for backend, options in (("onnxruntime", {}), ("ascend", FP32)):
        assert_marked_outputs(backend, marks, 1e-5, options)


# -------------------------------------------------------------------------
# The cache, unknown names, the dry run
# -------------------------------------------------------------------------


def test_the_compile_cache_key_differs_with_marks_and_with_their_order():
    plain = compiled_for("onnxruntime", ())
    marked = compiled_for("onnxruntime", MARKS)
    reordered = compiled_for("onnxruntime", MARKS[::-1])
    paths = {p.compiled[BATCH].path for p in (plain, marked, reordered)}
    assert len(paths) == 3
    assert plain.compiled[BATCH].output_names == (OUTPUT,)
    assert len(run(plain, "onnxruntime", (), batch())) == 1
    assert reordered.compiled[BATCH].output_names == (OUTPUT, *MARKS[::-1])
    again = compiled_for("onnxruntime", MARKS)  # the same marks: the same cached compile
    assert again.compiled[BATCH].path == marked.compiled[BATCH].path


@pytest.mark.parametrize("name", ["/layer1/nope_output_0", "actual_input_1", ""])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "ascend"])
def test_an_unknown_tensor_is_one_line_naming_it(request, backend, name):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino does not import: pip install 'zoo[openvino]'")
    if backend == "ascend":
        request.getfixturevalue("fake_ascend")
    with pytest.raises(UsageError) as raised:
        compiled_for(backend, (MARKS[0], name), FP32 if backend == "ascend" else {})
    message = str(raised.value)
    assert "\n" not in message and "\n" not in (raised.value.note or "")
    assert f"{name!r}" in message and MODEL in message


@pytest.fixture
def fake_ascend(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake Ascend tools, newer ais_bench only (what the test checks happens before any session opens)."""
    from fakes.env import PYTHON, fake_ascend_env

    for key, value in fake_ascend_env(os.environ).items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(PYTHON))
    yield
    for module in [m for m in sys.modules if m == "fake_om" or m.split(".")[0] == "ais_bench"]:
        del sys.modules[module]


def test_ascend_dry_run_lists_the_original_outputs_then_the_marked_ones(ascend_env):
    prepared = compiled_for("ascend", (), FP32)
    zoo = Zoo.create()
    options = options_for(zoo, "ascend", MARKS, {"soc": "Ascend310P3"})

    def atc_command(onnx_path: Path) -> list[str]:
        commands = ascend.zoo_commands(backend=prepared.backend, model=prepared.model, onnx_path=onnx_path,
                                       batch_size=BATCH, options=options, precision="fp16", calibration_dir=None,
                                       inputs=None, batch_sizes=())
        (atc,) = [c for c in commands if c[0] == "atc"]
        return atc

    proto = onnx.load(str(simplified(prepared)), load_external_data=False)
    node_of = {t: (n.name, i) for n in proto.graph.node for i, t in enumerate(n.output)}
    expected = ";".join(f"{node_of[t][0]}:{node_of[t][1]}" for t in (OUTPUT, *MARKS))
    assert f"--out_nodes={expected}" in atc_command(simplified(prepared))
    assert node_of[MARKS[1]][1] == 1  # the Split's second output
    # Before the export exists (a dry run runs nothing): ATC's other spelling, the ONNX tensor names.
    assert f"--out_nodes={';'.join((OUTPUT, *MARKS))}" in atc_command(Path("resnest-tiny_bs2_sim.onnx"))
    plain = options_for(zoo, "ascend", (), {"soc": "Ascend310P3"})
    commands = ascend.zoo_commands(backend=prepared.backend, model=prepared.model, onnx_path=Path("x.onnx"),
                                   batch_size=BATCH, options=plain, precision="fp16", calibration_dir=None,
                                   inputs=None, batch_sizes=())
    assert not any(a.startswith("--out_nodes") for c in commands for a in c)


def test_openvino_names_a_tensor_its_model_lacks_in_one_line(tmp_path):
    """An int8 compile starts from NNCF's IR, with no ONNX to check names against: OpenVINO's own lookup is the
    check, and its multi-line message becomes one line."""
    ov = pytest.importorskip("openvino", reason="openvino does not import: pip install 'zoo[openvino]'")
    from zoo_core.backends import openvino

    prepared = compiled_for("onnxruntime", ())
    ir = ov.Core().read_model(str(simplified(prepared)))
    ov.save_model(ir, str(tmp_path / "model.xml"))
    with pytest.raises(UsageError) as raised:
        openvino._add_marked_outputs(ov.Core().read_model(str(tmp_path / "model.xml")), prepared.model,
                                     tmp_path / "model.xml", BATCH, (MARKS[0], "/nope"))
    assert "\n" not in str(raised.value)
    assert "tensor '/nope'" in str(raised.value) and "was not found" in str(raised.value)


def test_ascend_refuses_out_nodes_of_its_own_beside_marked_tensors(ascend_env):
    with pytest.raises(UsageError, match=r"out_nodes=/fc/Gemm:0 \(from the model's backend_args or --atc-arg\) and "
                                         r"marked tensors both set ATC's outputs"):
        compiled_for("ascend", MARKS, {**FP32, "atc_arg": ("out_nodes=/fc/Gemm:0",)})


def test_ascend_refuses_a_node_name_that_out_nodes_cannot_spell(tmp_path):
    """';' separates --out_nodes items: a node named with one cannot be listed."""
    from onnx import TensorProto

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="a;b"),
                               helper.make_node("Neg", ["y"], ["output1"], name="neg")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("output1", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    model = Zoo.create().registry.model(MODEL)
    assert ascend.out_nodes(model, tmp_path / "m.onnx", BATCH, ("output1",)) == "neg:0"
    with pytest.raises(UsageError, match=r"^ATC's --out_nodes cannot name 'a;b:0' of resnest-tiny"):
        ascend.out_nodes(model, tmp_path / "m.onnx", BATCH, ("y",))


def test_onnxruntime_lowers_its_optimization_when_a_fusion_drops_a_marked_tensor(monkeypatch):
    """A fusion that removed a marked tensor from the saved graph (simulated: the extended level's file loses its last
    output) makes the compile try the next level down; the tensor still comes back, and the runner loads the file at
    the level that kept it."""
    real = ort.InferenceSession
    levels: list[str] = []

    def session(*args: Any, **kwargs: Any) -> Any:
        made = real(*args, **kwargs)
        options = kwargs.get("sess_options", args[1] if len(args) > 1 else None)
        saved = getattr(options, "optimized_model_filepath", "")
        if saved:
            levels.append(str(options.graph_optimization_level))
        if saved and options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
            proto = onnx.load(saved)
            proto.graph.output.pop()
            onnx.save(proto, saved)
        return made

    monkeypatch.setattr(ort, "InferenceSession", session)
    marks = (MARKS[0], "/layer3/layer3.0/Relu_1_output_0")  # a tensor of its own: another compile than the others'
    prepared = compiled_for("onnxruntime", marks)
    assert levels == ["GraphOptimizationLevel.ORT_ENABLE_EXTENDED", "GraphOptimizationLevel.ORT_ENABLE_BASIC"]
    assert prepared.compiled[BATCH].extra["optimization"] == "basic"
    monkeypatch.setattr(ort, "InferenceSession", real)
    feed = batch()
    for got, want in zip(run(prepared, "onnxruntime", marks, feed), reference(prepared, (OUTPUT, *marks), feed),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
