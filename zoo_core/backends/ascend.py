"""The Ascend backend: ATC compiles the simplified ONNX to an .om, ais_bench's InferSession runs it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .. import hookimpl
from ..errors import ZooError
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..specs import BackendSpec, ModelSpec, RunOptions

NAME = "ascend"
OM_FILE = "model.om"
LOG_FILE = "atc.log"
SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
ATC_SUCCESS = "ATC run success"

# What each ATC error code means for a zoo user, and what to do about it.
ATC_HINTS = {
    "E10007": "ATC got a wrong --framework: zoo passes 5 (ONNX); remove any --atc-arg framework=...",
    "E10054": "a required ATC parameter is missing or empty (--model, --output, --framework, --soc_version); "
    "check --soc and any --atc-arg you gave",
    "E10010": "ATC got an invalid --log value; use one of debug, info, warning, error, null",
    "E10016": "an input name in --input_shape is not in the ONNX graph; check the model config's input_names",
    "E19010": "ATC has no parser for an operator at this opset: export with a lower opset, e.g. --opset 11",
    "EZ3003": "an operator has no kernel on this chip: check --soc matches the chip (npu-smi info), or try "
    "--atc-arg op_select_implmode=high_precision, or another opset",
}


@dataclass(frozen=True)
class Availability:
    """Which pieces of the Ascend stack are here."""

    atc: str | None
    npu_smi: str | None
    ais_bench_error: str | None

    @property
    def ok(self) -> bool:
        return bool(self.atc and self.npu_smi and not self.ais_bench_error)

    @property
    def reason(self) -> str:
        missing = []
        if not self.atc:
            missing.append(f"atc is not on PATH (source {SET_ENV})")
        if not self.npu_smi:
            missing.append("npu-smi is not on PATH (install the Ascend driver)")
        if self.ais_bench_error:
            missing.append(f"ais_bench.infer.interface does not import ({self.ais_bench_error}; "
                           "pip install the ais_bench and aclruntime wheels)")
        return "; ".join(missing)


def probe() -> Availability:
    """Look for ``atc``, ``npu-smi`` and an importable ``ais_bench.infer.interface``."""
    try:
        import ais_bench.infer.interface  # noqa: F401

        error = None
    except Exception as exc:  # ImportError, or a broken aclruntime underneath
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return Availability(shutil.which("atc"), shutil.which("npu-smi"), error)


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    from ..specs import BackendSpec

    found = probe()
    register(
        BackendSpec(
            name=NAME,
            description="Huawei Ascend NPU: ATC to .om, ais_bench InferSession",
            available=found.ok,
            unavailable_reason=found.reason,
            priority=100,  # the automatic choice wherever it can run
            device="npu",
        )
    )


# -------------------------------------------------------------------------
# npu-smi and the toolkit: chip, driver, CANN version
# -------------------------------------------------------------------------

_DEVICE_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|")


def parse_npu_smi(text: str) -> dict[str, Any]:
    """The devices (id, chip) and the driver version from ``npu-smi info``'s table."""
    devices = []
    driver = None
    for line in text.splitlines():
        if driver is None:
            found = re.search(r"Version:\s*(\S+)", line)
            if found:
                driver = found.group(1)
        row = _DEVICE_ROW.match(line.strip())
        if row and not row.group(2).isdigit():
            devices.append({"id": int(row.group(1)), "chip": row.group(2)})
    return {"devices": devices, "driver": driver}


def npu_info() -> dict[str, Any]:
    """``npu-smi info``, parsed; a ``ZooError`` when it cannot be run or shows no device."""
    try:
        proc = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ZooError(f"cannot run npu-smi: {exc}", note="install the Ascend driver, or pass --soc Ascend<chip>") from None
    info = parse_npu_smi(proc.stdout)
    if proc.returncode != 0 or not info["devices"]:
        raise ZooError("npu-smi info shows no NPU", note="check the driver with `npu-smi info`, or pass --soc Ascend<chip>")
    return info


def cann_version() -> str | None:
    """The CANN toolkit version from the files ``set_env.sh``'s ``ASCEND_TOOLKIT_HOME`` points at (uncertain
    layout: both known files are tried)."""
    home = os.environ.get("ASCEND_TOOLKIT_HOME")
    if not home:
        return None
    for name, pattern in (("ascend_toolkit_install.info", r"^version=(\S+)"), ("version.cfg", r"\[([^\]]+)\]")):
        try:
            text = (Path(home) / name).read_text()
        except OSError:
            continue
        found = re.search(pattern, text, re.MULTILINE)
        if found:
            return found.group(1)
    return None


@hookimpl
def zoo_environment() -> Mapping[str, Any] | None:
    if not shutil.which("npu-smi"):
        return None
    try:
        info = npu_info()
    except ZooError as exc:
        return {"ascend": {"error": exc.message}}
    return {
        "ascend": {
            "chip": info["devices"][0]["chip"],
            "devices": len(info["devices"]),
            "driver": info["driver"],
            "cann": cann_version(),
            "atc": shutil.which("atc"),
        }
    }


# -------------------------------------------------------------------------
# Compile: ATC
# -------------------------------------------------------------------------


def soc_version(options: RunOptions, *, placeholder: bool = False) -> str:
    """``--soc`` if given, else ``Ascend`` + the chip ``npu-smi info`` shows."""
    if options.soc:
        return options.soc if options.soc.startswith("Ascend") else f"Ascend{options.soc}"
    try:
        return "Ascend" + npu_info()["devices"][0]["chip"]
    except ZooError:
        if placeholder:
            return "Ascend${chip}"
        raise


def atc_arguments(
    model: ModelSpec, onnx_path: Path, output: Path, batch_size: int, soc: str, options: RunOptions
) -> list[str]:
    """The ``atc`` argument list: zoo's settings, then the model config's, then the command line's."""
    from ..specs import parse_backend_args

    shape = ";".join(f"{name}:{','.join(map(str, (batch_size, *model.input_shape)))}" for name in model.input_names)
    flags: dict[str, str] = {
        "framework": "5",
        "model": str(onnx_path),
        "output": str(output),
        "input_format": model.input_format,
        "input_shape": shape,
        "soc_version": soc,
        "log": "error",
    }
    if options.precision_mode:
        flags["precision_mode"] = options.precision_mode
    flags.update({k.replace("-", "_"): v for k, v in model.backend_args.get(NAME, {}).items()})
    flags.update(parse_backend_args(options.backend_args))
    return ["atc", *(f"--{key}={value}" for key, value in flags.items())]


def explain_atc_failure(returncode: int, output: str, log: Path | None) -> ZooError:
    """One ``ZooError`` for a failed ATC run: the error codes found, a hint for each, and the log's path."""
    where = f" (log: {log})" if log else ""
    if "libascend_hal.so" in output or "error while loading shared libraries" in output:
        return ZooError(f"atc cannot start: the CANN environment is not set{where}",
                        note=f"run `source {SET_ENV}` in this shell, then run zoo again")
    if returncode < 0 or returncode in (128 + signal.SIGSEGV, 128 + signal.SIGKILL, 128 + signal.SIGABRT):
        number = -returncode if returncode < 0 else returncode - 128
        return ZooError(f"atc died on signal {signal.Signals(number).name} with no message{where}",
                        note="often memory or a CANN/driver mismatch: retry with --atc-arg log=debug and read the log")
    codes = list(dict.fromkeys(re.findall(r"\b(E[0-9A-Z]\d{4})\b", output)))
    if not codes:
        return ZooError(f"atc failed with exit code {returncode}{where}", note="read the log for the reason")
    hints = [f"{code}: {ATC_HINTS[code]}" for code in codes if code in ATC_HINTS]
    note = "; ".join(hints) if hints else "look the code up in the CANN ATC error reference"
    return ZooError(f"atc failed with {', '.join(codes)}{where}", note=note)


def _failure_log_dir(options: RunOptions) -> Path:
    from ..artifacts import cache_root

    return Path(options.out) if options.out is not None else cache_root() / "logs"


@hookimpl
def zoo_compile(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, workdir: Path, options: RunOptions
) -> CompiledModel | None:
    if backend.name != NAME:
        return None
    soc = soc_version(options)
    # ATC leaves fusion_result.json and kernel_meta/ in its working directory: give it a scratch one.
    with tempfile.TemporaryDirectory(prefix="zoo-atc-") as scratch:
        stem = f"{model.name}_bs{batch_size}"
        args = atc_arguments(model, Path(onnx_path).resolve(), Path(scratch) / stem, batch_size, soc, options)
        try:
            proc = subprocess.run(args, cwd=scratch, capture_output=True, text=True)
        except FileNotFoundError:
            raise ZooError("atc is not on PATH", note=f"run `source {SET_ENV}`, then run zoo again") from None
        output = proc.stdout + proc.stderr
        produced = sorted(Path(scratch).glob(f"{stem}*.om"))  # <output>.om or <output>_linux_x86_64.om
        if proc.returncode != 0 or ATC_SUCCESS not in proc.stdout or not produced:
            log_dir = _failure_log_dir(options)
            log: Path | None = log_dir / f"atc-{stem}-{time.strftime('%Y%m%d-%H%M%S')}.log"
            try:
                log_dir.mkdir(parents=True, exist_ok=True)
                log.write_text(" ".join(args) + "\n\n" + output)
            except OSError:
                log = None
            if proc.returncode == 0 and not produced:
                return_code, output = 1, output + "\n(no .om file was written)"
            else:
                return_code = proc.returncode
            raise explain_atc_failure(return_code, output, log)
        shutil.move(str(produced[0]), workdir / OM_FILE)
    (workdir / LOG_FILE).write_text(" ".join(args) + "\n\n" + output)
    return CompiledModel(
        backend=NAME,
        model=model.name,
        batch_size=batch_size,
        path=workdir / OM_FILE,
        inputs=compiled_inputs(model, NAME, batch_size),
        output_names=model.output_names,
        device="npu",
        extra={"soc_version": soc, "atc": args[1:], "precision_mode": options.precision_mode or "ATC default"},
    )


@hookimpl
def zoo_commands(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, options: RunOptions
) -> list[list[str]] | None:
    if backend.name != NAME:
        return None
    stem = f"{model.name}_bs{batch_size}"
    soc = soc_version(options, placeholder=True)
    device = str(options.devices[0]) if len(options.devices) == 1 else ",".join(map(str, options.devices))
    return [
        atc_arguments(model, onnx_path, Path(stem), batch_size, soc, options),
        ["python3", "-m", "ais_bench", f"--model={stem}.om", "--loop=100", f"--batchsize={batch_size}",
         f"--device={device}"],
    ]


# -------------------------------------------------------------------------
# Infer: ais_bench's InferSession
# -------------------------------------------------------------------------


class AscendRunner(Runner):
    """One ``InferSession`` on one NPU; the device time of each call comes from its summary."""

    def __init__(self, compiled: CompiledModel, device_id: int) -> None:
        super().__init__(compiled)
        from ais_bench.infer.interface import InferSession

        try:
            self.session = InferSession(device_id, str(compiled.path))
        except Exception as exc:  # the real session raises RuntimeError on a bad device or file
            raise ZooError(f"cannot open {compiled.path} on NPU {device_id}: {exc}",
                           note="check the device id with `npu-smi info`, and that the .om was built for this chip") from None
        self._order = [i.name for i in compiled.inputs]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        outputs = self.session.infer([feed[name] for name in self._order], mode="static")
        times = self.session.sumary().exec_time_list  # (sic) the API's spelling
        self.last_device_ms = float(times[-1]) if times else None
        self.session.reset_sumaryinfo()  # keep the summary at one entry, however long the run
        return outputs

    def close(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.finalize()
            self.session = None


@hookimpl
def zoo_infer(compiled: CompiledModel, options: RunOptions) -> Runner | None:
    if compiled.backend != NAME:
        return None
    return AscendRunner(compiled, options.devices[0])
