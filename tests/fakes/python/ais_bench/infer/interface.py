"""A fake ``InferSession`` that runs a fake .om with ONNX Runtime on the CPU (contract: ascend-tools.md §4), in the
precision mode it was compiled with (``fake_precision``: float16 under ATC's default)."""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# The real module imports aclruntime, which needs the CANN libraries that `source set_env.sh` puts in reach.
_home = os.environ.get("ASCEND_TOOLKIT_HOME")
if not _home or not Path(_home).is_dir():
    raise ImportError("libascendcl.so: cannot open shared object file: No such file or directory")

import onnxruntime as ort  # noqa: E402

from fake_om import OmFormatError, read_om  # noqa: E402
from fake_precision import emulate  # noqa: E402

MODES = ("static", "dymbatch", "dymhw", "dymdims", "dymshape")
_FORMATS = {"NCHW": 0, "NHWC": 1, "ND": 2}  # aclFormat values


class dtype(enum.Enum):  # noqa: N801 -- aclruntime's spelling: str() gives "dtype.float32"
    """aclruntime's tensor types, numbered as aclDataType."""

    float32 = 0
    float16 = 1
    int8 = 2
    int32 = 3
    uint8 = 4
    int16 = 6
    uint16 = 7
    uint32 = 8
    int64 = 9
    uint64 = 10
    double = 11
    bool = 12

    @classmethod
    def of(cls, name: str) -> dtype:
        return cls["double" if name == "float64" else name]

    @property
    def numpy(self) -> np.dtype:
        return np.dtype("float64" if self.name == "double" else self.name)


@dataclass
class TensorDesc:
    """What ``get_inputs()`` / ``get_outputs()`` describe: sizes in bytes."""

    name: str
    shape: list[int]
    datatype: dtype
    format: int
    size: int
    realsize: int


@dataclass
class InferSumaryInfo:
    """``sumary()``'s result (sic): device time of each inference, in ms."""

    exec_time_list: list[float]


def _device_count() -> int:
    """The NPUs this process sees. As in the ACL runtime, ``ASCEND_RT_VISIBLE_DEVICES=3,5`` leaves two,
    numbered 0 and 1 (a listed id the host does not have is dropped)."""
    try:
        host = int(os.environ.get("FAKE_NPU_COUNT", "1"))
    except ValueError:
        return 0
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if visible is None:
        return host
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    return sum(1 for i in ids if i.isdigit() and int(i) < host)


class InferSession:
    """One model loaded on one (fake) NPU."""

    def __init__(self, device_id: int, model_path: str, acl_json_path: str | None = None, debug: bool = False,
                 loop: int = 1) -> None:
        count = _device_count()
        if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id not in range(count):
            raise RuntimeError(f"[ERROR] aclrtSetDevice({device_id!r}) failed: invalid device id, "
                               f"this host has {count} NPU(s)")
        if isinstance(loop, bool) or not isinstance(loop, int) or loop < 1:
            raise RuntimeError(f"[ERROR] loop must be a positive integer, got {loop!r}")
        if acl_json_path is not None and not Path(acl_json_path).is_file():
            raise RuntimeError(f"[ERROR] acl json file {acl_json_path} does not exist")
        try:
            header, onnx_bytes = read_om(model_path)
        except (OSError, OmFormatError) as exc:
            raise RuntimeError(f"[ERROR] load model from file {model_path} failed: {exc}") from None
        chip = "Ascend" + os.environ.get("FAKE_NPU_CHIP", "310P3")
        if header["soc_version"] != chip:
            raise RuntimeError(f"[ERROR] load model from file {model_path} failed: the model was built for "
                               f"{header['soc_version']}, this device is {chip}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # The chip computes in the precision the model was compiled for (float16 under ATC's default).
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            emulate(onnx_bytes, header["precision_mode"]), options, providers=["CPUExecutionProvider"])
        self._header = header
        self._loop = loop
        self._times: list[float] = []
        self.device_id = device_id
        self.model_path = str(model_path)
        self._batches: list[int] | None = header["dynamic_batch_sizes"]

    # ---- description --------------------------------------------------

    def _descs(self, entries: list[dict[str, Any]]) -> list[TensorDesc]:
        fmt = _FORMATS.get(self._header.get("input_format") or "ND", 2)
        descs = []
        for entry in entries:
            shape = [self._batches[-1] if d == -1 else d for d in entry["shape"]] if self._batches else entry["shape"]
            kind = dtype.of(entry["dtype"])
            size = int(np.prod(shape, dtype=np.int64)) * kind.numpy.itemsize
            descs.append(TensorDesc(entry["name"], list(shape), kind, fmt, size, size))
        return descs

    def get_inputs(self) -> list[TensorDesc]:
        return self._descs(self._header["inputs"])

    def get_outputs(self) -> list[TensorDesc]:
        return self._descs(self._header["outputs"])

    # ---- inference ----------------------------------------------------

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise RuntimeError(f"[ERROR] wrong infer mode {mode!r}, expected one of {', '.join(MODES)}")
        wanted = "dymbatch" if self._batches else "static"
        if mode != wanted:
            kind = f"a dynamic batch {self._batches}" if self._batches else "static shapes"
            raise RuntimeError(f"[ERROR] infer mode {mode!r} does not fit this model ({kind}): use mode={wanted!r}")

    def _check_feeds(self, feeds: Sequence[Any]) -> None:
        inputs = self._header["inputs"]
        if not isinstance(feeds, (list, tuple)):
            raise RuntimeError(f"[ERROR] feeds must be a list with one array per input, got {type(feeds).__name__}")
        if len(feeds) != len(inputs):
            raise RuntimeError(f"[ERROR] the model has {len(inputs)} input(s), {len(feeds)} given")
        batch = None
        for entry, feed in zip(inputs, feeds):
            if not isinstance(feed, np.ndarray):
                raise RuntimeError(f"[ERROR] input {entry['name']}: expected a numpy array, got {type(feed).__name__}")
            if feed.dtype != np.dtype(entry["dtype"]):
                raise RuntimeError(f"[ERROR] input {entry['name']}: dtype {feed.dtype} does not match the model's "
                                   f"{entry['dtype']}")
            shape = list(entry["shape"])
            if self._batches and shape[:1] == [-1]:
                given = feed.shape[0] if feed.ndim else None
                if given not in self._batches or (batch is not None and given != batch):
                    raise RuntimeError(f"[ERROR] input {entry['name']}: batch {given} is not one of the model's "
                                       f"dynamic batch sizes {self._batches}")
                batch = shape[0] = given
            if list(feed.shape) != shape:
                raise RuntimeError(f"[ERROR] input {entry['name']}: shape {list(feed.shape)} does not match the "
                                   f"model's {shape} (size {feed.nbytes} vs "
                                   f"{int(np.prod(shape, dtype=np.int64)) * feed.itemsize} bytes)")

    def infer(self, feeds: Sequence[np.ndarray], mode: str = "static", custom_sizes: int | list[int] = 100000,
              out_array: bool = True) -> list[np.ndarray]:
        """One inference; the time of each ONNX Runtime call is recorded as the device time."""
        if self._session is None:
            raise RuntimeError("[ERROR] the session has been finalized")
        self._check_mode(mode)
        if not out_array:
            raise RuntimeError("[ERROR] this fake returns numpy arrays only (out_array=True)")
        self._check_feeds(feeds)
        ort_feeds = {entry["name"]: np.ascontiguousarray(feed).astype(entry["model_dtype"], copy=False)
                     for entry, feed in zip(self._header["inputs"], feeds)}
        aipp = self._header.get("aipp")
        if aipp:  # the chip's static AIPP: crop, per-channel (x - mean - min) * var_reci, NHWC -> NCHW
            entry = self._header["inputs"][0]
            image = feeds[0]
            if aipp["crop"]:
                h0, w0 = aipp["load_start_pos_h"], aipp["load_start_pos_w"]
                image = image[:, h0 : h0 + aipp["crop_size_h"], w0 : w0 + aipp["crop_size_w"], :]
            pixels = image.astype(np.float32)
            for c in range(3):
                pixels[..., c] = (pixels[..., c] - np.float32(aipp[f"mean_chn_{c}"] + aipp[f"min_chn_{c}"])) \
                    * np.float32(aipp[f"var_reci_chn_{c}"])
            ort_feeds[entry["name"]] = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(
                entry["onnx"]["model_dtype"], copy=False)
        for _ in range(self._loop):
            start = time.perf_counter()
            outputs = self._session.run(None, ort_feeds)
            self._times.append((time.perf_counter() - start) * 1000.0)
        return [np.ascontiguousarray(out.astype(entry["dtype"], copy=False))
                for entry, out in zip(self._header["outputs"], outputs)]

    # ---- bookkeeping --------------------------------------------------

    def sumary(self) -> InferSumaryInfo:  # (sic) the real API's spelling
        return InferSumaryInfo(list(self._times))

    def summary(self) -> InferSumaryInfo:
        return self.sumary()

    def reset_sumaryinfo(self) -> None:
        self._times.clear()

    def finalize(self) -> None:
        self._session = None

    def free_resource(self) -> None:
        self.finalize()
