"""A fake ``InferSession`` that runs a fake .om with ONNX Runtime on the CPU (contract: ascend-tools.md §4), in the
precision mode it was compiled with (``fake_precision``: float16 under ATC's default).

Two API generations, chosen by ``FAKE_AIS_BENCH_GENERATION`` (unset: ``newer``; any other value fails the import):
- ``older`` (Ascend/tools, to mid-2023): ``sumary()`` / ``reset_sumaryinfo()``, ``exec_time_list`` of floats (ms),
  ``finalize()`` releases this session only, no ``free_resource``; ``infer`` ignores its mode, so a dynamic-batch
  model needs ``set_dynamic_batchsize(n)`` first and then takes batches of exactly n.
- ``newer`` (ait/msit, late 2023 on): ``summary()`` / ``reset_summaryinfo()``, ``exec_time_list`` of ``(start, end)``
  pairs (ms), ``free_resource()`` releases this session, and ``InferSession.finalize()`` is a staticmethod that
  releases every ACL resource of the process: every session opened before it is dead for good (a session created
  afterwards works); ``infer(..., mode="dymbatch")`` takes the batch from the array.
"""

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

GENERATIONS = ("older", "newer")
GENERATION = os.environ.get("FAKE_AIS_BENCH_GENERATION", "newer")
if GENERATION not in GENERATIONS:
    raise RuntimeError(f"FAKE_AIS_BENCH_GENERATION={GENERATION!r}: expected one of {', '.join(GENERATIONS)}")

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
    """What ``get_inputs()`` / ``get_outputs()`` describe. A dynamic-batch model keeps -1 in the batch axis of
    ``shape``; ``size`` (and ``realsize``) are bytes at the largest batch, as ``aclmdlGetInputSizeByIndex`` says."""

    name: str
    shape: list[int]
    datatype: dtype
    format: int
    size: int
    realsize: int


@dataclass
class InferSumaryInfo:
    """The summary's result: one entry per inference, a float (older) or a ``(start, end)`` pair (newer), in ms."""

    exec_time_list: list[Any]


_ACL = {"finalized": 0}  # the process's ACL state: how many times the newer ``InferSession.finalize()`` ran


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



class _Session:
    """What both generations share: one model loaded on one (fake) NPU."""

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
        self._times: list[Any] = []
        self._acl_epoch = _ACL["finalized"]  # a session opened after a finalize() re-initialises ACL
        self._dym_batch: int | None = None
        self.device_id = device_id
        self.model_path = str(model_path)
        self._batches: list[int] | None = header["dynamic_batch_sizes"]

    def _check_alive(self) -> None:
        if self._acl_epoch != _ACL["finalized"]:
            raise RuntimeError("[ERROR] ACL resources were released by InferSession.finalize() after this session "
                               "was created: its model and device memory are gone")
        if self._session is None:
            raise RuntimeError("[ERROR] the session's resources have been released")

    # ---- description --------------------------------------------------

    def _descs(self, entries: list[dict[str, Any]]) -> list[TensorDesc]:
        fmt = _FORMATS.get(self._header.get("input_format") or "ND", 2)
        descs = []
        for entry in entries:
            largest = [self._batches[-1] if d == -1 else d for d in entry["shape"]] if self._batches else entry["shape"]
            kind = dtype.of(entry["dtype"])
            size = int(np.prod(largest, dtype=np.int64)) * kind.numpy.itemsize
            descs.append(TensorDesc(entry["name"], list(entry["shape"]), kind, fmt, size, size))
        return descs

    def get_inputs(self) -> list[TensorDesc]:
        self._check_alive()
        return self._descs(self._header["inputs"])

    def get_outputs(self) -> list[TensorDesc]:
        self._check_alive()
        return self._descs(self._header["outputs"])

    # ---- inference ----------------------------------------------------

    def set_dynamic_batchsize(self, dym_batch: int) -> None:
        """The batch of the next inferences of a dynamic-batch model (one of its listed sizes)."""
        self._check_alive()
        if isinstance(dym_batch, bool) or not isinstance(dym_batch, int):
            raise TypeError(f"set_dynamic_batchsize(): incompatible argument {dym_batch!r}, expected an int")
        if not self._batches:
            raise RuntimeError("[ERROR] set_dynamic_batchsize: the model has a static batch")
        if dym_batch not in self._batches:
            raise RuntimeError(f"[ERROR] set_dynamic_batchsize({dym_batch}): not one of the model's dynamic batch "
                               f"sizes {self._batches}")
        self._dym_batch = dym_batch

    def _batch_for(self, feeds: Sequence[np.ndarray], mode: str) -> int | None:
        """The batch this inference runs at (None: a static model). Each generation decides differently."""
        raise NotImplementedError

    def _record(self, start: float, end: float) -> None:
        raise NotImplementedError

    def _check_arrays(self, feeds: Sequence[Any]) -> None:
        inputs = self._header["inputs"]
        if not isinstance(feeds, (list, tuple)):
            raise RuntimeError(f"[ERROR] feeds must be a list with one array per input, got {type(feeds).__name__}")
        if len(feeds) != len(inputs):
            raise RuntimeError(f"[ERROR] the model has {len(inputs)} input(s), {len(feeds)} given")
        for entry, feed in zip(inputs, feeds, strict=True):
            if not isinstance(feed, np.ndarray):
                raise RuntimeError(f"[ERROR] input {entry['name']}: expected a numpy array, got {type(feed).__name__}")
            if feed.dtype != np.dtype(entry["dtype"]):
                raise RuntimeError(f"[ERROR] input {entry['name']}: dtype {feed.dtype} does not match the model's "
                                   f"{entry['dtype']}")

    def _check_shapes(self, feeds: Sequence[np.ndarray], batch: int | None) -> None:
        for entry, feed in zip(self._header["inputs"], feeds, strict=True):
            shape = [batch if d == -1 else d for d in entry["shape"]]
            if list(feed.shape) != shape:
                raise RuntimeError(f"[ERROR] input {entry['name']}: shape {list(feed.shape)} does not match the "
                                   f"model's {shape} (size {feed.nbytes} vs "
                                   f"{int(np.prod(shape, dtype=np.int64)) * feed.itemsize} bytes)")

    def infer(self, feeds: Sequence[np.ndarray], mode: str = "static", custom_sizes: int | list[int] = 100000,
              out_array: bool = True) -> list[np.ndarray]:
        """One inference; the time of each ONNX Runtime call is recorded as the device time."""
        self._check_alive()
        if not out_array:
            raise RuntimeError("[ERROR] this fake returns numpy arrays only (out_array=True)")
        self._check_arrays(feeds)
        self._check_shapes(feeds, self._batch_for(feeds, mode))
        ort_feeds = {entry["name"]: np.ascontiguousarray(feed).astype(entry["model_dtype"], copy=False)
                     for entry, feed in zip(self._header["inputs"], feeds, strict=True)}
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
        assert self._session is not None
        for _ in range(self._loop):
            start = time.perf_counter() * 1000.0
            outputs = self._session.run(None, ort_feeds)
            self._record(start, time.perf_counter() * 1000.0)
        return [np.ascontiguousarray(out.astype(entry["dtype"], copy=False))
                for entry, out in zip(self._header["outputs"], outputs, strict=True)]


if GENERATION == "older":

    class InferSession(_Session):
        """Ascend/tools' ais_bench (to mid-2023)."""

        def _batch_for(self, feeds: Sequence[np.ndarray], mode: str) -> int | None:
            # The mode is ignored: a dynamic-batch model runs at the batch set_dynamic_batchsize chose.
            if not self._batches:
                return None
            if self._dym_batch is None:
                raise RuntimeError(f"[ERROR] the model has dynamic batch sizes {self._batches}: call "
                                   "set_dynamic_batchsize(n) before infer")
            return self._dym_batch

        def _record(self, start: float, end: float) -> None:
            self._times.append(end - start)

        def sumary(self) -> InferSumaryInfo:  # (sic) the real API's spelling
            return InferSumaryInfo(list(self._times))

        def reset_sumaryinfo(self) -> None:
            self._times.clear()

        def finalize(self) -> None:
            """Releases this session (only)."""
            self._session = None

else:

    class InferSession(_Session):  # type: ignore[no-redef]
        """ait/msit's ais_bench (late 2023 on)."""

        def _batch_for(self, feeds: Sequence[np.ndarray], mode: str) -> int | None:
            if mode not in MODES:
                raise RuntimeError(f"[ERROR] wrong infer mode {mode!r}, expected one of {', '.join(MODES)}")
            wanted = "dymbatch" if self._batches else "static"
            if mode != wanted:
                kind = f"a dynamic batch {self._batches}" if self._batches else "static shapes"
                raise RuntimeError(f"[ERROR] infer mode {mode!r} does not fit this model ({kind}): use mode={wanted!r}")
            if not self._batches:
                return None
            # dymbatch: the batch comes from the array of the first dynamic input
            entry, feed = next((e, f) for e, f in zip(self._header["inputs"], feeds, strict=True)
                               if e["shape"][:1] == [-1])
            given = feed.shape[0] if feed.ndim else None
            if given not in self._batches:
                raise RuntimeError(f"[ERROR] input {entry['name']}: batch {given} is not one of the model's "
                                   f"dynamic batch sizes {self._batches}")
            return given

        def _record(self, start: float, end: float) -> None:
            self._times.append((start, end))

        def summary(self) -> InferSumaryInfo:
            return InferSumaryInfo(list(self._times))

        def reset_summaryinfo(self) -> None:
            self._times.clear()

        def free_resource(self) -> None:
            """Releases this session (only): a later call on it raises RuntimeError."""
            self._session = None

        @staticmethod
        def finalize() -> None:
            """Releases every ACL resource of the process: every session opened so far is dead for good."""
            _ACL["finalized"] += 1
