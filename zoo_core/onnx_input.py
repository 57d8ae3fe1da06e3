"""``--onnx FILE``: a user's ONNX file checked (readable, within what the installed onnx and onnxruntime read, the
model's declared inputs) and copied into the cache with the external data files it references."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterator

from .environment import package_version
from .errors import UsageError, ZooError, first_line

if TYPE_CHECKING:
    from .specs import ModelSpec

REEXPORT = "export it again (`zoo export MODEL -o FILE.onnx`), or pass the .onnx file that your export wrote"


@dataclass(frozen=True)
class GivenOnnx:
    """A user's ONNX file that passed the cheap checks, and the external data files it references (relative
    names, each inside the file's folder)."""

    path: Path
    external: tuple[str, ...]
    batch: int | None = None  # the batch size the graph's inputs fix; None: a dynamic batch axis

    def check_batch_sizes(self, batch_sizes: tuple[int, ...], dynamic: bool) -> None:
        """A graph that fixes its batch serves that batch size only (a reshape may bake it in), and no dynamic
        batch: one line before anything is simplified at another size."""
        if self.batch is None:
            return
        asked = ("--dynamic-batch" if dynamic else
                 f"--bs {','.join(map(str, batch_sizes))}" if set(batch_sizes) != {self.batch} else None)
        if asked:
            raise UsageError(f"{self.path} fixes the batch at {self.batch}, so it cannot serve {asked}",
                             note=f"pass an export with a dynamic batch axis (`zoo export MODEL -o FILE`), or run it "
                             f"at --bs {self.batch}")

    def external_hashes(self) -> dict[str, str]:
        """Each external data file's sha256, for the cache key: changed weights are another export."""
        from .files import sha256_file

        return {name: sha256_file(self.path.parent / name) for name in self.external}

    def check_loadable(self) -> None:
        """What a parse does not show: the onnx checker, then an onnxruntime session (once, before the copy)."""
        import onnx
        import onnx.checker

        try:
            onnx.checker.check_model(str(self.path))
        except Exception as exc:  # noqa: BLE001  # the checker raises several kinds
            raise ZooError(f"{self.path} is not a valid ONNX model for onnx {package_version('onnx')}: "
                           f"{first_line(exc)}", note=REEXPORT) from None
        try:
            import onnxruntime as ort
        except ImportError:
            return
        settings = ort.SessionOptions()
        settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only whether it loads
        try:
            ort.InferenceSession(str(self.path), settings, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  # onnxruntime raises its own Fail, InvalidGraph, ...
            raise ZooError(f"onnxruntime {package_version('onnxruntime')} cannot load {self.path}: "
                           f"{first_line(exc)}",
                           note="export it with an opset this onnxruntime runs, or upgrade onnxruntime") from None

    def copy_into(self, folder: Path, name: str) -> None:
        """The model as ``folder/name``, its external data files beside it under their own relative names."""
        shutil.copyfile(self.path, folder / name)
        for relative in self.external:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.path.parent / relative, target)


def read_given_onnx(model: ModelSpec, path: Path) -> GivenOnnx:
    """``path`` parsed and checked against ``model``'s declared inputs, or a one-line error (exit 3)."""
    import onnx

    if not path.is_file():
        raise ZooError(f"ONNX file not found: {path}", note="pass an existing .onnx file with --onnx")
    if path.stat().st_size == 0:
        raise ZooError(f"ONNX file {path} is empty (0 bytes)", note=REEXPORT)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  # protobuf's DecodeError, or an OSError
        raise ZooError(f"cannot read {path} as ONNX (truncated, or not an ONNX file): {first_line(exc)}",
                       note=REEXPORT) from None
    if proto.ir_version < 1 or not proto.graph.node:  # protobuf reads many a text file as an empty message
        raise ZooError(f"{path} is not an ONNX model: it holds no graph", note=REEXPORT)
    _check_versions(proto, path)
    _check_inputs(proto, model, path)
    _check_outputs(proto, model, path)
    batches = {dims[0] for dims in (_described(i)[1] for i in proto.graph.input if i.name in model.input_names)
               if dims and isinstance(dims[0], int) and dims[0] > 0}
    return GivenOnnx(path, tuple(sorted({_external_file(t, path) for t in _tensors(proto.graph) if _is_external(t)})),
                     batch=min(batches) if batches else None)


def _check_versions(proto: Any, path: Path) -> None:
    import onnx
    import onnx.defs

    version = package_version("onnx")
    if proto.ir_version > onnx.IR_VERSION:
        raise ZooError(f"{path} has ONNX IR version {proto.ir_version}; the installed onnx {version} reads up to "
                       f"{onnx.IR_VERSION}", note="export it with the onnx release zoo uses, or upgrade onnx")
    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ZooError(f"{path} uses opset {opset.version}; the installed onnx {version} knows up to opset "
                           f"{newest}", note=f"export it with an opset up to {newest}, or upgrade onnx")


def _check_inputs(proto: Any, model: ModelSpec, path: Path) -> None:
    """The graph's inputs are the model's: names, rank, dtype, and every fixed size but the batch axis."""
    constants = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in constants]
    names = [i.name for i in inputs]
    if sorted(names) != sorted(model.input_names):
        raise ZooError(f"{path} takes the inputs {names}; model {model.name!r} takes {list(model.input_names)}",
                       note="pass the ONNX of this model, exported with its input names (`zoo info MODEL`)")
    expected_dims = ["N", *model.input_shape]
    for graph_input in inputs:
        dtype, dims = _described(graph_input)
        same_shape = len(dims) == len(expected_dims) and all(  # a named (dynamic) axis takes any size
            not isinstance(got, int) or got == want for got, want in zip(dims[1:], model.input_shape, strict=True))
        if dtype != model.input_dtype or not same_shape:
            shown = "[" + ", ".join(map(str, dims)) + "]"
            raise ZooError(f"{path}: input {graph_input.name!r} is {dtype}{shown}; model {model.name!r} takes "
                           f"{model.input_dtype}[{', '.join(map(str, expected_dims))}]",
                           note="pass the ONNX of this model, exported with its input shape and dtype "
                           "(`zoo info MODEL` shows them)")


def _check_outputs(proto: Any, model: ModelSpec, path: Path) -> None:
    """The first output holds the scores: ``[N, num_classes]`` where the graph fixes its sizes."""
    if not proto.graph.output:
        raise ZooError(f"{path} has no output", note=REEXPORT)
    dtype, dims = _described(proto.graph.output[0])
    if dims and (len(dims) != 2 or (isinstance(dims[1], int) and dims[1] != model.num_classes)):
        raise ZooError(f"{path}: output {proto.graph.output[0].name!r} is {dtype}[{', '.join(map(str, dims))}]; "
                       f"model {model.name!r} gives [N, {model.num_classes}] (one score per class)",
                       note="pass the ONNX of this model, whose first output is the class scores")


def _described(value_info: Any) -> tuple[str, list[int | str]]:
    """An input's dtype name and its dims (a size, or the name of a dynamic axis)."""
    from onnx import helper

    tensor = value_info.type.tensor_type
    try:
        dtype = str(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    except Exception:  # noqa: BLE001  # undefined, or a type numpy lacks (bfloat16)
        dtype = f"elem_type {tensor.elem_type}"
    dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return dtype, dims


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph``: initializers, and constants in node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _is_external(tensor: Any) -> bool:
    from onnx import TensorProto

    return tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL


def _external_file(tensor: Any, path: Path) -> str:
    """The relative name of the file holding ``tensor``'s data: a regular file inside ``path``'s folder, long
    enough for the bytes the tensor says it takes; else a one-line error."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    parts = PurePosixPath(location).parts
    escapes = not location or PurePosixPath(location).is_absolute() or ".." in parts
    folder = path.parent.resolve()
    source = (folder / location).resolve()
    if escapes or not source.is_relative_to(folder):
        raise ZooError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, outside the model's folder",
                       note="save the model with its external data beside it (onnx.save_model(..., "
                       "save_as_external_data=True, location='NAME.data'))")
    if not source.is_file():
        raise ZooError(f"{path}: the external data file {location!r} of tensor {tensor.name!r} is missing",
                       note="keep the data files the model was saved with beside the .onnx file")
    try:
        end = int(info.get("offset", 0)) + int(info["length"])
    except KeyError:
        end = 0
    except ValueError:
        raise ZooError(f"{path}: tensor {tensor.name!r} has a malformed external data entry {info}",
                       note=REEXPORT) from None
    if end > source.stat().st_size:
        raise ZooError(f"{path}: the external data file {location!r} is {source.stat().st_size} bytes; tensor "
                       f"{tensor.name!r} needs {end} (truncated?)",
                       note="copy the data file again, whole, beside the .onnx file")
    return PurePosixPath(*parts).as_posix()
