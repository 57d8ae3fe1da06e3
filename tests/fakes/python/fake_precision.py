"""ATC's ``--precision_mode``, done numerically: the fake .om's ONNX graph rewritten to compute as the chip would.

The chip's ``force_fp16`` (ATC's default on inference chips) and ``allow_fp32_to_fp16`` keep weights and
activations in float16: the cube unit multiplies float16 operands and accumulates in float32, the vector unit
computes in float16, and every tensor that goes from one operator to the next is float16. The fake does the same
on ONNX Runtime's float32 kernels: every float32 initializer is rounded through float16 once, and every float32
tensor (the graph's inputs and each operator's outputs) passes through ``Cast(to=FLOAT16) -> Cast(to=FLOAT)``
before anything reads it. Each operator thus sees float16 values and its result is rounded to float16, as on the
chip; a value beyond float16's range (65504) becomes +-inf there, as on the chip. The one difference left is that
an fp16-only vector op rounds once per elementary step where the fake rounds once per operator (a smaller error,
never a larger one). Converting the whole graph to float16 instead would run on ONNX Runtime's few CPU float16
kernels (many ops have none) and accumulate convolutions in float16, which the chip does not do.

``allow_mix_precision`` is float16 except the operators the real tool keeps in float32 for range or precision:
approximated here (documented, not read from CANN's op lists) as the reductions, pooling averages, Softmax and its
kin, Exp/Log/Pow and the normalisations, whose outputs stay float32. ``must_keep_origin_dtype`` and ``force_fp32``
leave the float32 graph as it is. An INT8 model (AMCT's deploy model, QDQ in the fakes) computes the same way: its
int8 weights and activations pass through DequantizeLinear, whose float outputs are rounded to float16 like any
other tensor; only the quantization scales (the second input of QuantizeLinear/DequantizeLinear) stay float32,
as the chip keeps them in the quantization operators' own parameters, not as float16 tensors. What the .om returns
is its declared output type (float32 unless
``--output_type`` says FP16), converted from these values by the runtime.
"""

from __future__ import annotations

from typing import Any

FP16_MODES = ("force_fp16", "allow_fp32_to_fp16")
MIXED_MODE = "allow_mix_precision"
FP32_MODES = ("must_keep_origin_dtype", "force_fp32")
# allow_mix_precision: operators whose outputs stay float32 (an approximation of the tool's "black list").
KEEP_FP32_OPS = frozenset({
    "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "GlobalAveragePool", "AveragePool", "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LpNormalization",
})


def emulate(onnx_bytes: bytes, precision_mode: str) -> bytes:
    """The ONNX bytes that compute as an .om compiled with ``precision_mode`` would (unchanged in fp32 modes)."""
    if precision_mode in FP32_MODES:
        return onnx_bytes
    if precision_mode not in (*FP16_MODES, MIXED_MODE):
        raise ValueError(f"unknown precision mode {precision_mode!r}")
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    keep = KEEP_FP32_OPS if precision_mode == MIXED_MODE else frozenset()
    _round_initializers(model.graph)
    _round_activations(model, keep)
    return model.SerializeToString()


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _round_initializers(graph: Any) -> None:
    import numpy as np
    from onnx import TensorProto, numpy_helper

    scales = {node.input[1] for node in graph.node if node.op_type in QDQ_OPS and len(node.input) > 1}
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in scales:
            with np.errstate(over="ignore"):  # beyond 65504: inf, as the chip stores it
                rounded = numpy_helper.to_array(tensor).astype(np.float16).astype(np.float32)
            graph.initializer[index].CopyFrom(numpy_helper.from_array(rounded, tensor.name))


def _float_names(model: Any) -> set[str]:
    """The names of the float32 tensors of the graph (inputs, node outputs), from ONNX shape inference."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {v.name for v in [*graph.input, *graph.value_info, *graph.output]
            if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def _round_activations(model: Any, keep: frozenset[str]) -> None:
    """Every float32 tensor a node reads, and every float32 graph output, is its float16 rounding (except the
    outputs of ``keep`` op types). The node list stays in topological order: each pair of casts follows the node
    (or, for a graph input, comes first) that makes its tensor."""
    from onnx import TensorProto, helper

    graph = model.graph
    floats = _float_names(model)
    outputs = {o.name for o in graph.output}
    initializers = {t.name for t in graph.initializer}

    def casts(name: str, final: str) -> list[Any]:
        half = f"{name}__fp16"
        return [helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16, name=half),
                helper.make_node("Cast", [half], [final], to=TensorProto.FLOAT, name=f"{final}__cast")]

    rounded: dict[str, str] = {}  # a tensor -> the name of its float16 rounding
    ordered: list[Any] = []
    for value in graph.input:
        if value.name in floats and value.name not in initializers:
            rounded[value.name] = f"{value.name}__fp16_value"
            ordered += casts(value.name, rounded[value.name])
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rounded.get(name, name)
        ordered.append(node)
        if node.op_type in keep:
            continue
        for i, out in enumerate(node.output):
            if out not in floats:
                continue
            if out in outputs:  # the graph output keeps its name and carries the rounded value
                node.output[i] = f"{out}__fp32"
                ordered += casts(node.output[i], out)
            else:
                rounded[out] = f"{out}__fp16_value"
                ordered += casts(out, rounded[out])
    del graph.node[:]
    graph.node.extend(ordered)
