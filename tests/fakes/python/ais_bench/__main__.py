"""``python -m ais_bench``: the fake inference and benchmark command line (contract: ascend-tools.md §4)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

INPUT_SUFFIXES = (".bin", ".npy")
PURE_STEM = "pure_infer_data"


class BenchError(RuntimeError):
    """A user error: printed as ``[ERROR] ...``, exit code 1."""


# -------------------------------------------------------------------------
# Arguments
# -------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "t", "y"):
        return True
    if text.lower() in ("0", "false", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"{text} is not a boolean")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ais_bench", allow_abbrev=False,
                                     description="Fake ais_bench: runs a fake .om with ONNX Runtime.")

    def add(name: str, **kwargs: Any) -> None:
        spellings = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"])
        parser.add_argument(*spellings, dest=name, **kwargs)

    add("model", required=True, help="the .om file")
    add("input", default=None, help="input folder(s) or file(s), one per model input, comma-separated")
    add("output", default=None, help="folder for the outputs and the summary")
    add("output_dirname", default=None, help="subfolder of --output (default: a timestamp)")
    add("outfmt", default="BIN", choices=("BIN", "NPY", "TXT"))
    add("loop", type=positive, default=1)
    add("batchsize", type=positive, default=None)
    add("device", default="0", help="device id, or 0,1,2")
    add("warmup_count", type=non_negative, default=1)
    add("pure_data_type", default="zero", choices=("zero", "random"))
    add("display_all_summary", type=str2bool, default=False)
    add("dymBatch", type=non_negative, default=0, help="the batch of a dynamic-batch model")
    add("debug", type=str2bool, default=False)
    add("profiler", type=str2bool, default=False, help="profile with msprof: real hardware only, refused here")
    return parser


# -------------------------------------------------------------------------
# Inputs
# -------------------------------------------------------------------------


def natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_inputs(entry: str) -> list[Path]:
    path = Path(entry)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix in INPUT_SUFFIXES), key=natural_key)
        if not files:
            raise BenchError(f"no .bin or .npy file in {entry}")
        return files
    if path.is_file():
        return [path]
    raise BenchError(f"input path {entry} does not exist")


def file_size(path: Path, dtype: np.dtype) -> int:
    if path.suffix != ".npy":
        return path.stat().st_size
    array = np.load(path, mmap_mode="r")
    if array.dtype != dtype:
        raise BenchError(f"{path}: dtype {array.dtype} does not match the model input's {dtype}")
    return array.nbytes


def read_bytes(path: Path) -> bytes:
    return np.load(path).tobytes() if path.suffix == ".npy" else path.read_bytes()


# -------------------------------------------------------------------------
# Outputs
# -------------------------------------------------------------------------


def output_stem(path: Path) -> str:
    """The name output files start with: the input file's name cut at its FIRST dot (``a.b.bin`` -> ``a``)."""
    return path.name.split(".", 1)[0]


def save(array: np.ndarray, stem: str, index: int, folder: Path, fmt: str) -> Path:
    path = folder / f"{stem}_{index}.{fmt.lower()}"
    if fmt == "BIN":
        array.tofile(path)
    elif fmt == "NPY":
        np.save(path, array)
    else:  # one row per line, each value followed by a space; %d for integer outputs, %f for the others
        rows = array.reshape(1, -1) if array.ndim < 2 else array.reshape(-1, array.shape[-1])
        form = "%d" if array.dtype.kind in "iub" else "%f"
        path.write_text("".join("".join(form % value + " " for value in row) + "\n" for row in rows))
    return path


def stats(values: list[float]) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    return {"min": float(data.min()), "max": float(data.max()), "mean": float(data.mean()),
            "median": float(np.median(data)), "percentile(99%)": float(np.percentile(data, 99)),
            "count": len(values)}


def stats_line(name: str, values: dict[str, float]) -> str:
    shown = ", ".join(f"{key} = {values[key]}" for key in ("min", "max", "mean", "median", "percentile(99%)"))
    return f"[INFO] {name} (ms): {shown}"


# -------------------------------------------------------------------------
# The run
# -------------------------------------------------------------------------


class Bench:
    """One model on one device: batches in, timings and output files out."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ais_bench.infer.interface import InferSession

        self.args = args
        devices = args.device.split(",")
        if not all(d.strip().isdigit() for d in devices):
            raise BenchError(f"--device {args.device}: expected an id or a comma-separated list of ids")
        if len(devices) > 1:
            raise BenchError("this fake runs one device at a time: run one process per device")
        self.session = InferSession(int(devices[0]), args.model)
        print(f"[INFO] open device {devices[0]} success")
        print(f"[INFO] load model {args.model} success")
        self.inputs = self.session.get_inputs()
        batches = self.session._batches  # the fake's own record of the .om's dynamic batch sizes
        if batches:
            if args.dymBatch not in batches:
                raise BenchError(f"the model has dynamic batch sizes {batches}: give one with --dymBatch")
            self.mode, self.batch = "dymbatch", args.dymBatch
            self.session.set_dynamic_batchsize(args.dymBatch)  # the older generation ignores the mode
            self.shapes = [[args.dymBatch, *i.shape[1:]] for i in self.inputs]
        else:
            if args.dymBatch:
                raise BenchError("--dymBatch given but the model has a static batch")
            self.mode = "static"
            self.shapes = [list(i.shape) for i in self.inputs]
            self.batch = self.shapes[0][0] if self.shapes and self.shapes[0] else 1
        # --batchsize is not checked against the model: it only feeds the throughput formula
        self.throughput_batch = args.batchsize if args.batchsize is not None else self.batch
        self.dtypes = [i.datatype.numpy for i in self.inputs]
        self.sizes = [int(np.prod(s, dtype=np.int64)) * d.itemsize
                      for s, d in zip(self.shapes, self.dtypes, strict=True)]
        self.h2d: list[float] = []
        self.d2h: list[float] = []
        self.outdir: Path | None = None
        if args.output_dirname is not None and args.output is None:
            raise BenchError("--output_dirname needs --output")
        if args.output is not None:
            self.outdir = Path(args.output) / (args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
            if not self.outdir.name:
                raise BenchError(f"--output_dirname {args.output_dirname!r} names no folder")
            self.outdir.mkdir(parents=True, exist_ok=True)

    def run_once(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        device_side = [a.copy() for a in arrays]
        self.h2d.append((time.perf_counter() - start) * 1000.0)
        outputs: list[np.ndarray] = []
        for _ in range(self.args.loop):
            outputs = self.session.infer(device_side, mode=self.mode)
        start = time.perf_counter()
        host_side = [o.copy() for o in outputs]
        self.d2h.append((time.perf_counter() - start) * 1000.0)
        return host_side

    def warm_up(self, arrays: list[np.ndarray]) -> None:
        for _ in range(self.args.warmup_count):
            self.session.infer(arrays, mode=self.mode)
        (getattr(self.session, "reset_summaryinfo", None) or self.session.reset_sumaryinfo)()

    def compute_times(self) -> list[float]:
        """The device time of each inference in ms, from either generation's summary (floats or (start, end))."""
        summary = getattr(self.session, "summary", None) or self.session.sumary
        return [t[1] - t[0] if isinstance(t, tuple) else t for t in summary().exec_time_list]

    def release(self) -> None:
        """This session, then (newer generation) the process's ACL resources."""
        if hasattr(self.session, "free_resource"):
            self.session.free_resource()
            type(self.session).finalize()
        else:
            self.session.finalize()

    def pure(self) -> dict[str, Any]:
        rng = np.random.default_rng()
        arrays = []
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            if self.args.pure_data_type == "zero":
                arrays.append(np.zeros(shape, dtype))
            elif dtype.kind == "f":
                arrays.append(rng.random(shape).astype(dtype))
            else:
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
        self.warm_up(arrays)
        outputs = self.run_once(arrays)
        if self.outdir is None:
            return {}
        outfiles = [str(save(o, PURE_STEM, i, self.outdir, self.args.outfmt)) for i, o in enumerate(outputs)]
        return {"0": {"infiles": [], "outfiles": outfiles}}

    def files(self) -> dict[str, Any]:
        entries = self.args.input.split(",")
        if len(entries) != len(self.inputs):
            raise BenchError(f"the model has {len(self.inputs)} input(s), --input gives {len(entries)}")
        lists = [list_inputs(e) for e in entries]
        if len({len(files) for files in lists}) != 1:
            raise BenchError("the input folders hold different numbers of files")
        per_batch = set()
        for files, size, dtype, desc in zip(lists, self.sizes, self.dtypes, self.inputs, strict=True):
            sizes = {file_size(f, dtype) for f in files}
            if len(sizes) != 1:
                raise BenchError(f"the files for input {desc.name} differ in size: {sorted(sizes)}")
            (one,) = sizes
            if one == 0 or size % one:
                raise BenchError(f"file size {one} does not divide the size {size} of model input {desc.name}")
            per_batch.add(size // one)
        if len(per_batch) != 1:
            raise BenchError("the inputs need different numbers of files per batch")
        (count,) = per_batch
        groups = [list(range(i, min(i + count, len(lists[0])))) for i in range(0, len(lists[0]), count)]
        infos: dict[str, Any] = {}
        for number, real in enumerate(groups):
            padded = real + [real[0]] * (count - len(real))  # its first file again; those outputs are not written
            arrays = [np.frombuffer(b"".join(read_bytes(files[i]) for i in padded), dtype).reshape(shape)
                      for files, dtype, shape in zip(lists, self.dtypes, self.shapes, strict=True)]
            if number == 0:
                self.warm_up(arrays)
            outputs = self.run_once(arrays)
            if self.outdir is None:
                continue
            for position, index in enumerate(real):
                stem = output_stem(lists[0][index])
                outfiles = []
                for k, output in enumerate(outputs):
                    piece = output
                    if count > 1:
                        if output.ndim == 0 or output.shape[0] % count:
                            raise BenchError(f"output {k} of shape {list(output.shape)} cannot be split over "
                                             f"{count} input files")
                        step = output.shape[0] // count
                        piece = output[position * step:(position + 1) * step]
                    outfiles.append(str(save(piece, stem, k, self.outdir, self.args.outfmt)))
                sample = number * count + position  # filesinfo is keyed per sample, not per batch
                infos[str(sample)] = {"infiles": [str(files[index]) for files in lists], "outfiles": outfiles}
        return infos

    def run(self) -> int:
        filesinfo = self.files() if self.args.input else self.pure()
        times = self.compute_times()
        compute = stats(times)
        h2d, d2h = stats(self.h2d), stats(self.d2h)
        throughput = 1000.0 * self.throughput_batch / compute["mean"]
        self.release()
        if self.outdir is not None:
            summary = {"args": vars(self.args), "filesinfo": filesinfo, "NPU_compute_time": compute,
                       "H2D_latency": h2d, "D2H_latency": d2h, "throughput": throughput,
                       "npu_compute_time_list": times, "pid": os.getpid()}
            path = self.outdir.with_name(self.outdir.name + "_summary.json")
            path.write_text(json.dumps(summary, indent=4) + "\n")
            print(f"[INFO] summary saved to {path}")
        print("[INFO] -----------------Performance Summary------------------")
        if self.args.display_all_summary:
            print(stats_line("H2D_latency", h2d))
            print(stats_line("D2H_latency", d2h))
        print(stats_line("NPU_compute_time", compute))
        print(f"[INFO] throughput 1000*batchsize.mean({self.throughput_batch})/NPU_compute_time.mean("
              f"{compute['mean']}): {throughput}")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.profiler:  # the real tool runs msprof on the NPU and writes a profiling folder under --output
        print("[ERROR] --profiler 1 needs msprof and a real Ascend NPU: this fake ais_bench has neither",
              file=sys.stderr)
        return 1
    try:
        return Bench(args).run()
    except (BenchError, RuntimeError, ImportError, OSError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
