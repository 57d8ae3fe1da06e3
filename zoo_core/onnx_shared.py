"""ONNX files whose large tensors lie beside them, one file per tensor named by its content's sha256, so that the
cache stores identical weights once (the export, every simplified batch size and every compiled copy)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

TENSOR_SUFFIX = ".tensor"
SHARED_MIN_BYTES = 4096  # smaller tensors stay inside the ONNX file: a file each would cost more than it saves


def save_shared(proto: Any, path: Path) -> None:
    """Save the ONNX ``proto`` as ``path``, each initializer of at least ``SHARED_MIN_BYTES`` of raw data as a
    ``SHA256.tensor`` file in the same folder (ONNX external data: a file name relative to the model)."""
    from onnx import TensorProto, save_model

    folder = Path(path).parent
    for tensor in _initializers(proto.graph):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.raw_data) < SHARED_MIN_BYTES:
            continue
        data = tensor.raw_data
        name = hashlib.sha256(data).hexdigest() + TENSOR_SUFFIX
        target = folder / name
        if not target.exists():
            tmp = folder / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        del tensor.external_data[:]
        for key, value in (("location", name), ("offset", "0"), ("length", str(len(data)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.data_location = TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
    save_model(proto, str(path))


def load_shared(path: Path) -> Any:
    """The ONNX file ``path`` with every external tensor read into it. zoo's own loader: ``onnx.load`` refuses a
    tensor file with several hard links (the cache's way of storing it once); a location must name a file
    inside the model's folder."""
    import onnx
    from onnx import TensorProto

    proto = onnx.load(str(path), load_external_data=False)
    folder = Path(path).parent
    for tensor in _initializers(proto.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise ValueError(f"{path}: tensor {tensor.name!r} lies outside its folder ({location!r})")
        with open(folder / location, "rb") as fh:
            fh.seek(int(info.get("offset", 0)))
            data = fh.read(int(info["length"])) if "length" in info else fh.read()
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
        tensor.raw_data = data
    return proto


def reshare(path: Path) -> None:
    """Rewrite the ONNX file ``path`` (its tensors inside it or beside it) with :func:`save_shared`."""
    save_shared(load_shared(path), path)


def save_whole(src: Path, dst: Path) -> None:
    """``src`` (external tensors read from beside it) as one self-contained ONNX file ``dst``."""
    import onnx

    onnx.save_model(load_shared(src), str(dst))


def _initializers(graph: Any) -> Any:
    """Every initializer of ``graph`` and of its subgraphs (If/Loop bodies)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from _initializers(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _initializers(sub)
