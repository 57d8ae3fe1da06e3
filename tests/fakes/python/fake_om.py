"""The private .om file format shared by the fake ``atc`` (writer) and the fake ``ais_bench`` (reader)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

# Layout: MAGIC (8 bytes) | header length (uint32, little-endian) | header (UTF-8 JSON) | ONNX model bytes.
# The header holds everything ATC resolved at compile time (see ``atc``'s ``build_header``) plus the ONNX
# bytes' sha256, so a truncated or edited file is rejected as a real runtime rejects a corrupt model.
MAGIC = b"FAKEOM\x00\x01"
FORMAT_VERSION = 1
_LENGTH = struct.Struct("<I")


class OmFormatError(ValueError):
    """The file is not a fake .om, or it is damaged."""


def write_om(path: str | Path, header: dict[str, Any], onnx_bytes: bytes) -> None:
    """Write ``header`` and the ONNX model as one fake .om file."""
    header = {**header, "format_version": FORMAT_VERSION, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest()}
    blob = json.dumps(header, sort_keys=True).encode()
    Path(path).write_bytes(MAGIC + _LENGTH.pack(len(blob)) + blob + onnx_bytes)


def read_om(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The header and the ONNX bytes of a fake .om; ``OmFormatError`` for anything else."""
    data = Path(path).read_bytes()
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        raise OmFormatError(f"{path}: not an offline model (bad magic)")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start:start + length])
    except ValueError:
        raise OmFormatError(f"{path}: damaged model header") from None
    onnx_bytes = data[start + length:]
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        raise OmFormatError(f"{path}: unsupported model format version")
    if hashlib.sha256(onnx_bytes).hexdigest() != header.get("onnx_sha256"):
        raise OmFormatError(f"{path}: model data is damaged (checksum mismatch)")
    return header, onnx_bytes
