"""The Ascend backend: ATC compiles the simplified ONNX to an .om, ais_bench's InferSession runs it; AMCT's
``amct_onnx calibration`` quantizes it to INT8 first when ``--precision int8`` is asked."""

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
from ..errors import UsageError, ZooError, first_line
from ..options import OptionSpec, key_value
from ..runtime import CompiledModel, Runner, compiled_inputs
from .ascend_aipp import AIPP_CONFIG, aipp_model
from .ascend_session import installed_generation

if TYPE_CHECKING:
    from collections.abc import Callable


    from ..precision import Calibration
    from ..profiling import Profile
    from ..specs import BackendSpec, ModelSpec, RunOptions

NAME = "ascend"
OM_FILE = "model.om"
LOG_FILE = "atc.log"
AIPP_FILE = "aipp.cfg"  # --aipp: the derived static AIPP config, written into the compile folder for ATC
SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
ATC_SUCCESS = "ATC run success"
PLACEHOLDER_SOC = "Ascend${chip}"  # a dry run's --soc_version when the chip is unknown: its script sets ${chip}
# ATC's --input_format for an ONNX model (ascend-tools.md §2): NHWC is refused. An NHWC *image* fed to an AIPP is
# declared in the model's backend_inputs and the AIPP config, not here: ATC still sees the ONNX graph's layout.
ATC_INPUT_FORMATS = ("NCHW", "ND", "NCDHW")
DRIVER_LIB = "/usr/local/Ascend/driver/lib64"

# --precision -> ATC's --precision_mode (ascend-tools.md §2 and §6): the mode zoo passes when none is set (None:
# ATC's own default, force_fp16 on inference chips), and the modes that compute in that precision. An INT8 run
# compiles AMCT's deploy model, which ATC takes in neither force_fp32 nor must_keep_origin_dtype.
FP16_MODES = ("force_fp16", "allow_fp32_to_fp16", "allow_mix_precision")
PRECISION_MODES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "fp16": (None, FP16_MODES),
    "fp32": ("force_fp32", ("force_fp32", "must_keep_origin_dtype")),
    "int8": (None, FP16_MODES),
}
# AMCT (ascend-tools.md §6): `amct_onnx calibration --save_path <workdir>/amct/model` writes these files; zoo_quantize
# keeps them all in the quantize artifact. The fake-quant model simulates the INT8 numerics on ONNX Runtime, without
# a chip; zoo_compile records its path as the compiled model's extra["fake_quant_model"].
AMCT = "amct_onnx"
AMCT_PREFIX = "amct/model"
DEPLOY_FILE = f"{AMCT_PREFIX}_deploy_model.onnx"
FAKE_QUANT_FILE = f"{AMCT_PREFIX}_fake_quant_model.onnx"
QUANT_JSON = f"{AMCT_PREFIX}_quant.json"
AMCT_LOG_FILE = "amct.log"

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
    "EC0010": "a Python import failed inside ATC's own tooling (tbe, decorator, or NumPy 2 without np.float_): "
    "the toolkit does not match this Python environment; run atc with the Python the CANN version supports "
    "(often pip install 'numpy<2' there) and check its log",
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
    except Exception as exc:  # noqa: BLE001 -- ImportError, or a broken aclruntime underneath
        error = first_line(exc)
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
            ray_resource="NPU",  # Ray's resource for Ascend NPUs: one inference actor per NPU
            device_env="ASCEND_RT_VISIBLE_DEVICES",  # narrowed by Ray to the actor's NPU, which is then device 0
            precisions=("fp16", "fp32", "int8"),  # fp16: ATC's default precision_mode, force_fp16
            calib_methods=(),  # amct_onnx calibration takes no method flag
            exposes_tensors=True,  # RunOptions.extra_outputs: ATC --out_nodes, the original outputs listed first
            dynamic_batch=True,  # --dynamic-batch: ATC --dynamic_batch_size, one .om run with mode="dymbatch"
        )
    )


# -------------------------------------------------------------------------
# Options: --soc, --precision-mode, --atc-arg (options.backend_options["soc" | "precision_mode" | "atc_arg"])
# -------------------------------------------------------------------------


def parse_atc_args(pairs: Sequence[str]) -> dict[str, str]:
    """``("precision_mode=force_fp32", "log=info")`` -> a dict; names with ``-`` or ``_`` are the same."""
    return dict(key_value(pair, "--atc-arg", "op_select_implmode=high_precision") for pair in pairs)


def _atc_pair(text: str) -> str:
    """One ``--atc-arg``, checked when given: a malformed pair is a usage error before anything runs."""
    parse_atc_args([text])
    return text


@hookimpl
def zoo_add_options(register: Callable[[OptionSpec], None]) -> None:
    register(OptionSpec("soc", "ATC --soc_version, e.g. Ascend310P3 (default: the chip npu-smi shows).", backend=NAME))
    register(OptionSpec("precision-mode", "ATC --precision_mode, e.g. force_fp32 (default: ATC's).", backend=NAME))
    register(OptionSpec("atc-arg", "An extra ATC argument; repeatable.", backend=NAME, type=_atc_pair,
                        multiple=True, metavar="KEY=VALUE"))
    register(OptionSpec("aipp", "Derive a static AIPP from the model's preprocessing: the host sends uint8 images, "
                        "the chip crops and normalises them.", backend=NAME, type=bool))


# -------------------------------------------------------------------------
# npu-smi and the toolkit: chip, driver, CANN version
# -------------------------------------------------------------------------

_DEVICE_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|")


def parse_npu_smi(text: str) -> dict[str, Any]:
    """The devices (chip of each) and the driver version from ``npu-smi info``'s table.

    The first column of a device row is npu-smi's NPU number, not the ACL device id that ``InferSession`` and
    ``--device`` take (a row can read ``| 24      310P3``): devices are counted, and their ids are 0..count-1.
    """
    devices = []
    driver = None
    for line in text.splitlines():
        if driver is None:
            found = re.search(r"Version:\s*(\S+)", line)
            if found:
                driver = found.group(1)
        row = _DEVICE_ROW.match(line.strip())
        if row and not row.group(2).isdigit():
            devices.append({"chip": row.group(2)})
    return {"devices": devices, "driver": driver}


def acl_device_ids(info: Mapping[str, Any]) -> range:
    """The ACL device ids of the NPUs ``npu-smi info`` listed: 0..count-1, whatever its NPU column says."""
    return range(len(info["devices"]))


def npu_info() -> dict[str, Any]:
    """``npu-smi info``, parsed; a ``ZooError`` when it cannot be run or shows no device."""
    try:
        proc = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ZooError(f"cannot run npu-smi: {exc}",
                       note="install the Ascend driver, or pass --soc Ascend<chip>") from None
    info = parse_npu_smi(proc.stdout)
    if proc.returncode != 0 or not info["devices"]:
        raise ZooError("npu-smi info shows no NPU",
                       note="check the driver with `npu-smi info`, or pass --soc Ascend<chip>")
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
        found = installed_generation()  # ais_bench without a driver: still say which one
        return {"ascend": {"ais_bench": found}} if found else None
    try:
        info = npu_info()
    except ZooError as exc:
        return {"ascend": {"error": exc.message, "ais_bench": installed_generation()}}
    return {
        "ascend": {
            "chip": info["devices"][0]["chip"],
            "devices": len(info["devices"]),
            "driver": info["driver"],
            "cann": cann_version(),
            "atc": shutil.which("atc"),
            "ais_bench": installed_generation(),
        }
    }


@hookimpl
def zoo_device_name(env: Mapping[str, Any]) -> str | None:
    """The chip the run saw, as ATC's --soc_version spells it (``Ascend310P3``), from its env's ``ascend.chip``."""
    chip = (env.get("ascend") or {}).get("chip")
    if not chip:
        return None
    return str(chip) if str(chip).lower().startswith("ascend") else f"Ascend{chip}"


# -------------------------------------------------------------------------
# Compile: ATC
# -------------------------------------------------------------------------


def soc_version(options: RunOptions, *, placeholder: bool = False) -> str:
    """``--soc`` if given, else ``Ascend`` + the chip ``npu-smi info`` shows."""
    soc = options.backend_options.get("soc")
    if soc:
        return soc if soc.startswith("Ascend") else f"Ascend{soc}"
    try:
        return "Ascend" + npu_info()["devices"][0]["chip"]
    except ZooError:
        if placeholder:
            return PLACEHOLDER_SOC
        raise


def atc_arguments(
    model: ModelSpec, onnx_path: Path, output: Path, batch_size: int, soc: str, options: RunOptions,
    precision: str = "fp16", out_nodes: str | None = None, batch_sizes: Sequence[int] = (),
    aipp_file: Path | None = None,
) -> list[str]:
    """The ``atc`` argument list: zoo's settings, then the model config's, then the command line's, the
    ``--precision_mode`` that computes in ``precision``, ``--out_nodes`` when tensors are marked
    (:func:`out_nodes`), with ``batch_sizes`` a dynamic batch (-1 in N, ``--dynamic_batch_size``), and
    ``--insert_op_conf`` for ``--aipp``'s config written at ``aipp_file``."""
    batch = -1 if batch_sizes else batch_size
    shape = ";".join(f"{name}:{','.join(map(str, (batch, *model.input_shape)))}" for name in model.input_names)
    flags: dict[str, str] = {
        "framework": "5",
        "model": str(onnx_path),
        "output": str(output),
        "input_format": model.input_format,
        "input_shape": shape,
        "soc_version": soc,
        "log": "error",
        **({"dynamic_batch_size": ",".join(map(str, batch_sizes))} if batch_sizes else {}),
    }
    if aipp_file is not None:  # --aipp; a model's own insert_op_conf or --atc-arg one was refused (aipp_model)
        flags["insert_op_conf"] = str(aipp_file)
    if options.backend_options.get("precision_mode"):
        flags["precision_mode"] = options.backend_options["precision_mode"]
    declared = {k.replace("-", "_"): v for k, v in model.backend_args.get(NAME, {}).items()}
    given = parse_atc_args(options.backend_options.get("atc_arg", ()))
    flags.update(declared)
    flags.update(given)
    _check_input_format(model, flags["input_format"], "given" if "input_format" in given else
                        "backend_args" if "input_format" in declared else "input_format")
    origin = ("--atc-arg precision_mode" if "precision_mode" in given else
              f"model {model.name}'s backend_args['ascend']['precision_mode']" if "precision_mode" in declared else
              "--precision-mode")
    _set_precision_mode(flags, precision, bool(options.precisions), origin)
    if out_nodes is not None:
        if "out_nodes" in flags:  # either would replace the other's outputs: the compared ones must be zoo's
            raise UsageError(f"out_nodes={flags['out_nodes']} (from the model's backend_args or --atc-arg) and "
                             "marked tensors both set ATC's outputs",
                             note="leave out_nodes out when comparing layers: zoo lists the outputs and the marked "
                             "tensors itself")
        flags["out_nodes"] = out_nodes
    return ["atc", *(f"--{key}={value}" for key, value in flags.items())]


def out_nodes(model: ModelSpec, onnx_path: Path, batch_size: int, marks: tuple[str, ...]) -> str:
    """ATC's ``--out_nodes`` that keeps the model's outputs and adds the marked tensors after them, each once
    (ascend-tools.md §5: the list REPLACES the outputs). Each is ``node:index``, the ONNX node that makes it and
    its output index; a tensor of an unnamed node, and every one before ``onnx_path`` exists (a dry run), by its
    ONNX tensor name, ATC's other spelling. A name that is no node's output is one usage error."""
    from .marked import check_marked, unique

    if not Path(onnx_path).is_file():
        items = unique((*model.output_names, *marks))
    else:
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        made = check_marked(graph, marks, model.name, batch_size)
        tensors = unique((*(o.name for o in graph.output), *marks))
        items = [f"{made[t][0]}:{made[t][1]}" if t in made and made[t][0] else t for t in tensors]
    for item in items:
        if ";" in item:
            raise UsageError(f"ATC's --out_nodes cannot name {item!r} of {model.name}: ';' separates its items",
                             note="mark another tensor, or compare on onnxruntime")
    return ";".join(items)


def _set_precision_mode(flags: dict[str, str], precision: str, asked: bool, origin: str) -> None:
    """Put in ``flags`` the ``precision_mode`` that computes in ``precision``; a usage error when one set (by
    ``origin``) contradicts a ``--precision`` the run asked for. With no ``--precision``, a set mode is used as is."""
    if precision not in PRECISION_MODES:
        raise UsageError(f"--precision {precision}: the ascend backend computes in {', '.join(PRECISION_MODES)}",
                         note="choose one of those")
    default, allowed = PRECISION_MODES[precision]
    mode = flags.get("precision_mode")
    if mode is None:
        if default is not None:
            flags["precision_mode"] = default
    elif (asked or precision == "int8") and mode not in allowed:
        why = ("ATC does not compile AMCT's INT8 deploy model in it" if precision == "int8" else
               f"it does not compute in {precision}")
        raise UsageError(f"--precision {precision} contradicts {origin}={mode}: {why}",
                         note=f"leave the precision mode out (zoo passes what {precision} needs), or set one of "
                         f"{', '.join(allowed)}")
    if precision == "int8" and "dynamic_batch_size" in flags:
        raise UsageError(f"--precision int8 with dynamic_batch_size={flags['dynamic_batch_size']}: ATC compiles "
                         "AMCT's deploy model with static shapes only",
                         note="drop dynamic_batch_size (and -1 in input_shape): zoo compiles one model per batch size")


def _check_input_format(model: ModelSpec, value: str, origin: str) -> None:
    """ATC takes NCHW, ND or NCDHW as an ONNX model's ``--input_format``: anything else is one line before it runs."""
    if value in ATC_INPUT_FORMATS:
        return
    allowed = ", ".join(ATC_INPUT_FORMATS[:-1]) + f" or {ATC_INPUT_FORMATS[-1]}"
    if origin == "given":
        raise UsageError(f"--atc-arg input_format={value}: ATC takes {allowed} for an ONNX model",
                         note="leave input_format out: zoo passes the ONNX graph's layout (NCHW for images)")
    where = "input_format" if origin == "input_format" else "backend_args['ascend']['input_format']"
    raise ZooError(
        f"model {model.name} declares {where}={value!r}, but ATC takes {allowed} for an ONNX model",
        note="declare the ONNX graph's layout there (NCHW for images); an NHWC image for an AIPP goes in the "
        "model's backend_inputs (format) and its AIPP config (insert_op_conf)")


def explain_atc_failure(returncode: int, output: str, log: Path | None) -> ZooError:
    """One ``ZooError`` for a failed ATC run: the error codes found, a hint for each, and the log's path."""
    where = f" (log: {log})" if log else ""
    if "libascend_hal.so" in output:  # the driver's library: set_env.sh alone does not always put it in reach
        return ZooError(f"atc cannot start: libascend_hal.so is not found, the CANN environment is not set{where}",
                        note=f"put the driver's lib64 ({DRIVER_LIB}) or the toolkit's devlib "
                        "(ascend-toolkit/latest/<arch>-linux/devlib) on LD_LIBRARY_PATH, "
                        f"after `source {SET_ENV}`, then run zoo again")
    if "error while loading shared libraries" in output:
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
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, workdir: Path, options: RunOptions,
    precision: str, batch_sizes: tuple[int, ...],
) -> CompiledModel:
    soc = soc_version(options)
    # ATC leaves fusion_result.json and kernel_meta/ in its working directory: give it a scratch one.
    with tempfile.TemporaryDirectory(prefix="zoo-atc-") as scratch:
        stem = f"{model.name}_bs{'_'.join(map(str, batch_sizes)) if batch_sizes else batch_size}"
        marked = out_nodes(model, onnx_path, batch_size, options.extra_outputs) if options.extra_outputs else None
        aipp = model.backend_inputs.get(NAME, {}).get(AIPP_CONFIG)  # --aipp (zoo_run_model): its config's text
        aipp_file = workdir.resolve() / AIPP_FILE if aipp else None
        if aipp_file is not None:
            aipp_file.write_text(str(aipp))
        args = atc_arguments(model, Path(onnx_path).resolve(), Path(scratch) / stem, batch_size, soc, options,
                             precision, marked, batch_sizes, aipp_file)
        try:
            proc = subprocess.run(args, cwd=scratch, capture_output=True, text=True)
        except FileNotFoundError:
            raise ZooError("atc is not on PATH", note=f"run `source {SET_ENV}`, then run zoo again") from None
        output = proc.stdout + proc.stderr
        produced = sorted(Path(scratch).glob(f"{stem}*.om"))  # <output>.om or <output>_linux_x86_64.om
        # The success line is anywhere in stdout: warning lines (W11001, ...) can follow it.
        if proc.returncode != 0 or ATC_SUCCESS not in proc.stdout or not produced:
            log = _keep_failure_log(options, f"atc-{stem}", " ".join(args) + "\n\n" + output)
            if proc.returncode == 0 and not produced:
                return_code, output = 1, output + "\n(no .om file was written)"
            else:
                return_code = proc.returncode
            raise explain_atc_failure(return_code, output, log)
        shutil.move(str(produced[0]), workdir / OM_FILE)
    (workdir / LOG_FILE).write_text(" ".join(args) + "\n\n" + output)
    mode = next((a.split("=", 1)[1] for a in args if a.startswith("--precision_mode=")), "ATC default")
    # What the .om computes in: an fp32 precision mode set without --precision makes the native fp16 run fp32.
    computed = "fp32" if precision == "fp16" and mode in PRECISION_MODES["fp32"][1] else precision
    extra: dict[str, Any] = {"soc_version": soc, "atc": args[1:], "precision": computed, "precision_mode": mode,
                             **({"dynamic_batch_sizes": list(batch_sizes)} if batch_sizes else {})}
    fake_quant = Path(onnx_path).parent / Path(FAKE_QUANT_FILE).name
    if precision == "int8" and fake_quant.is_file():  # beside the deploy model, in the quantize artifact
        extra["fake_quant_model"] = str(fake_quant.resolve())
    return CompiledModel(
        backend=NAME,
        model=model.name,
        batch_size=batch_size,
        path=workdir / OM_FILE,
        inputs=compiled_inputs(model, NAME, batch_size),
        output_names=(*model.output_names, *options.extra_outputs),
        device="npu",
        extra=extra,
    )


@hookimpl
def zoo_run_model(model: ModelSpec, options: RunOptions) -> ModelSpec | None:
    """``--aipp``: the model with the static AIPP derived from its preprocessing (ascend_aipp.py); else None."""
    if not options.backend_options.get("aipp"):
        return None
    return aipp_model(model, options.preset, NAME, parse_atc_args(options.backend_options.get("atc_arg", ())))


@hookimpl
def zoo_check_run(model: ModelSpec, options: RunOptions, precisions: tuple[str, ...]) -> None:
    """A precision mode that contradicts the precisions asked (or int8 with a dynamic batch) is refused here, before
    the export, as zoo_compile would refuse it after: the same ATC arguments, made without running anything; and a
    model whose preprocessing ``--aipp`` cannot express."""
    zoo_run_model(model, options)
    dynamic = tuple(sorted(options.batch_sizes)) if "dynamic" in options.batch_modes else ()
    for precision in precisions:
        for batch_size in options.batch_sizes:
            atc_arguments(model, Path("model.onnx"), Path("model"), batch_size, PLACEHOLDER_SOC, options, precision)
        if dynamic:
            atc_arguments(model, Path("model.onnx"), Path("model"), dynamic[-1], PLACEHOLDER_SOC, options, precision,
                          batch_sizes=dynamic)


# The chip in a pasted script, read from `npu-smi info` exactly as parse_npu_smi reads it: the second word of the
# first cell of the first row that starts with `|`, whose first cell is a number then one word that is not a number
# (the device row, not its Chip/Device row), and that has a cell after it.
NPU_SMI_CHIP = ("chip=$(npu-smi info | awk -F'|' 'NF >= 3 && $1 ~ /^[[:space:]]*$/ && "
                "$2 ~ /^[[:space:]]*[0-9]+[[:space:]]+[^[:space:]]+[[:space:]]*$/ "
                "{ split($2, cell, \" \"); if (cell[2] !~ /^[0-9]+$/) { print cell[2]; exit } }')")
NO_CHIP = ('[ -n "$chip" ] || { echo "no chip in npu-smi info: check the driver (npu-smi info), or print this '
           'script again with --soc Ascend<chip>" >&2; exit 1; }')


def set_env_script() -> Path:
    """The toolkit's ``set_env.sh``: under ``$ASCEND_TOOLKIT_HOME`` (the fakes' layout), else beside it (CANN's:
    ``.../ascend-toolkit/latest`` is the home, ``.../ascend-toolkit/set_env.sh`` the script), else the default."""
    home = os.environ.get("ASCEND_TOOLKIT_HOME")
    if home:
        for candidate in (Path(home) / "set_env.sh", Path(home).parent / "set_env.sh"):
            if candidate.is_file():
                return candidate
    return Path(SET_ENV)


@hookimpl
def zoo_commands_setup(model: ModelSpec, options: RunOptions) -> list[str]:
    """``source set_env.sh`` first; then, when neither ``--soc`` nor ``npu-smi`` here names the chip, the line that
    reads it where the script runs (the atc lines' ``Ascend${chip}``), stopping the script when it finds none; with
    ``--aipp``, the derived config written to the ``aipp.cfg`` the atc lines name."""
    import shlex

    from .ascend_aipp import config_for_run

    lines = [f"source {shlex.quote(str(set_env_script()))}"]
    if soc_version(options, placeholder=True) == PLACEHOLDER_SOC:
        lines += [NPU_SMI_CHIP, NO_CHIP]
    config = config_for_run(model, options)
    if config is not None:
        lines.append(f"cat > {AIPP_FILE} <<'EOF'\n{config.rstrip(chr(10))}\nEOF")
    return lines


@hookimpl
def zoo_commands(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, options: RunOptions, precision: str,
    calibration_dir: Path | None, inputs: Path | None, batch_sizes: tuple[int, ...],
) -> list[list[str]] | None:
    if batch_sizes:  # --dynamic-batch: one .om, each size run on it with --dymBatch (ascend-tools.md §5)
        return dynamic_commands(model, onnx_path, batch_sizes, options, precision, inputs)
    stem = f"{model.name}_bs{batch_size}"
    soc = soc_version(options, placeholder=True)
    device = str(options.devices[0]) if len(options.devices) == 1 else ",".join(map(str, options.devices))
    quantize: list[list[str]] = []
    if precision == "int8":  # AMCT first; ATC then compiles its deploy model
        batches = max(1, options.calib_images // batch_size)
        data = calibration_dir if calibration_dir is not None else Path(f"calib_bs{batch_size}")
        save = Path("amct") / stem
        quantize = [amct_arguments(model, onnx_path, save, batch_size, data, batches)]
        onnx_path = Path(f"{save}_deploy_model.onnx")
    marked = out_nodes(model, onnx_path, batch_size, options.extra_outputs) if options.extra_outputs else None
    aipp = Path(AIPP_FILE) if options.backend_options.get("aipp") else None  # its text: derive(model, preset).config
    return [
        *quantize,
        atc_arguments(model, onnx_path, Path(stem), batch_size, soc, options, precision, marked, aipp_file=aipp),
        ["python3", "-m", "ais_bench", f"--model={stem}.om", "--loop=100", f"--batchsize={batch_size}",
         f"--device={device}"],
        *([profiler_command(Path(f"{stem}.om"), batch_size, options.devices[0], options.profile,
                            Path(f"profile_bs{batch_size}"))] if options.profile else []),
        *(accuracy_commands(model, Path(f"{stem}.om"), batch_size, options, precision, inputs) if inputs else []),
    ]


def dynamic_commands(model: ModelSpec, onnx_path: Path, batch_sizes: tuple[int, ...], options: RunOptions,
                     precision: str, inputs: Path | None) -> list[list[str]]:
    """``--dynamic-batch`` by hand: one ATC compile with -1 in N and ``--dynamic_batch_size``, then each batch size
    timed on that .om with ``--dymBatch``; the accuracy steps at the largest."""
    stem = f"{model.name}_bs{'_'.join(map(str, batch_sizes))}"
    device = ",".join(map(str, options.devices))
    om = Path(f"{stem}.om")
    return [
        atc_arguments(model, onnx_path, Path(stem), batch_sizes[-1], soc_version(options, placeholder=True), options,
                      precision, batch_sizes=batch_sizes,
                      aipp_file=Path(AIPP_FILE) if options.backend_options.get("aipp") else None),
        *(["python3", "-m", "ais_bench", f"--model={om}", "--loop=100", f"--batchsize={bs}", f"--dymBatch={bs}",
           f"--device={device}"] for bs in batch_sizes),
        *(accuracy_commands(model, om, batch_sizes[-1], options, precision, inputs, dynamic=True) if inputs else []),
    ]


def accuracy_commands(model: ModelSpec, om: Path, batch_size: int, options: RunOptions, precision: str,
                      inputs: Path, dynamic: bool = False) -> list[list[str]]:
    """The ModelZoo README's accuracy steps: ais_bench over the ``zoo preprocess`` inputs (NPY outputs), then
    ``zoo score`` on its output folder, as ``zoo run --data`` scores (on the first device, as it evaluates); a
    dynamic-batch .om at ``--dymBatch batch_size``."""
    output = Path(f"{model.name}_out")
    name = f"bs{batch_size}" + (f"_{precision}" if len(options.precisions) > 1 else "") + (
        "_dynamic" if dynamic else "")
    assert options.data is not None  # inputs come with --data
    return [
        ["python3", "-m", "ais_bench", f"--model={om}", f"--input={inputs}", f"--output={output}",
         f"--output_dirname={name}", "--outfmt", "NPY", f"--batchsize={batch_size}",
         *([f"--dymBatch={batch_size}"] if dynamic else []), f"--device={options.devices[0]}"],
        ["zoo", "score", str(output / name), "--model", model.name, "--data", str(options.data),
         *(["--labels", str(options.labels)] if options.labels is not None else []),
         *(["--limit", str(options.limit)] if options.limit is not None else []),
         *(["--preset", options.preset] if options.preset != model.preset else []),  # what made the inputs
         "--out", f"{model.name}_score_{name}"],
    ]


# -------------------------------------------------------------------------
# --profile: ais_bench --profiler 1 writes msprof's profiling folder under --output (real hardware only)
# -------------------------------------------------------------------------


def profiler_command(om: Path, batch_size: int, device: int, batches: int, output: Path,
                     python: str = "python3") -> list[str]:
    """``python -m ais_bench ... --profiler 1``: ``batches`` batches of generated input under msprof, its folder
    written under ``output`` (ascend-tools.md §5)."""
    return [python, "-m", "ais_bench", f"--model={om}",
            f"--loop={batches}", f"--batchsize={batch_size}", f"--device={device}", f"--output={output}",
            "--profiler=1"]


@hookimpl
def zoo_profile(compiled: CompiledModel, options: RunOptions, batches: int, workdir: Path) -> Profile:
    """ais_bench's own profile of ``batches`` batches: zoo reads no operator times from it, it names the folder."""
    import sys

    from ..profiling import Profile

    args = profiler_command(Path(compiled.path), compiled.batch_size, options.devices[0], batches, workdir.resolve(),
                            sys.executable)
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    log = workdir / "ais_bench-profiler.log"
    log.write_text(" ".join(args) + "\n\n" + output)
    folders = sorted(p for p in workdir.iterdir() if p.is_dir())
    if proc.returncode != 0 or not folders:
        raise ZooError(f"ais_bench --profiler 1 failed on {Path(compiled.path).name} (exit {proc.returncode}): "
                       f"{_tail(output, 1) or 'no output'}",
                       note=f"profiling needs msprof on a real Ascend NPU; its log: {log}")
    return Profile(source="ais_bench --profiler 1 (msprof)", folder=folders[-1])


# -------------------------------------------------------------------------
# Quantize: AMCT's amct_onnx calibration (INT8)
# -------------------------------------------------------------------------


def amct_arguments(model: ModelSpec, onnx_path: Path, save_path: Path, batch_size: int, data_dir: Path,
                   batch_num: int) -> list[str]:
    """``amct_onnx calibration ...`` (ascend-tools.md §6): ``data_dir`` holds ``batch_num`` or more whole-batch
    float32 ``.bin`` files of the model's one input; it writes ``<save_path>_deploy_model.onnx`` and its kin."""
    if len(model.input_names) != 1:
        raise ZooError(f"model {model.name} has {len(model.input_names)} inputs; zoo calibrates models of one input",
                       note="run it at fp16 or fp32, or quantize it with amct_onnx by hand")
    shape = f"{model.input_names[0]}:{','.join(map(str, (batch_size, *model.input_shape)))}"
    return [AMCT, "calibration", "--model", str(onnx_path), "--save_path", str(save_path), "--input_shape", shape,
            "--data_dir", str(data_dir), "--data_types", "float32", "--batch_num", str(batch_num)]


def _keep_failure_log(options: RunOptions, stem: str, text: str) -> Path | None:
    """A failed tool's command and output, kept in the run's output folder (else the cache's logs): the stage's
    folder is thrown away with its failure."""
    log_dir = _failure_log_dir(options)
    log_file = log_dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file.write_text(text)
    except OSError:
        return None
    return log_file


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


@hookimpl
def zoo_quantize(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, precision: str,
    calibration: Calibration, workdir: Path, options: RunOptions,
) -> Path | None:
    """INT8 through AMCT: the calibration set as whole-batch .bin files, ``amct_onnx calibration`` run in
    ``workdir`` (its ./amct_log lands there), the deploy model returned for ATC. ``workdir`` keeps the deploy and
    fake-quant models, the quant.json, AMCT's log and ``amct.log`` (the command and its output); the .bin files go."""
    if precision != "int8":
        return None
    calib_dir = workdir / "calib"
    try:
        bins = calibration.write_bins(calib_dir, batch_size)
        if not bins:
            raise ZooError(f"the calibration set has {calibration.images} image(s), fewer than one batch of "
                           f"{batch_size}", note="calibrate on more images (--calib-images) or a smaller --bs")
        args = amct_arguments(model, Path(onnx_path).resolve(), workdir / AMCT_PREFIX, batch_size, calib_dir,
                              len(bins))
        (workdir / AMCT_PREFIX).parent.mkdir(parents=True, exist_ok=True)
        try:
            # The CANN environment as ATC gets it: this process's, after `source set_env.sh`.
            proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True)
        except FileNotFoundError:
            raise ZooError(f"{AMCT} is not on PATH",
                           note=f"install AMCT (the amct_onnx wheel of the CANN toolkit) and run `source {SET_ENV}`, "
                           "then run zoo again") from None
    finally:
        shutil.rmtree(calib_dir, ignore_errors=True)  # written above: the calibration artifact keeps the set
    output = proc.stdout + proc.stderr
    (workdir / AMCT_LOG_FILE).write_text(" ".join(args) + "\n\n" + output)
    deploy, fake_quant = workdir / DEPLOY_FILE, workdir / FAKE_QUANT_FILE
    missing = [p.name for p in (deploy, fake_quant) if not p.is_file()]
    if proc.returncode != 0 or missing:
        why = f"exit code {proc.returncode}" if proc.returncode != 0 else f"no {' or '.join(missing)} written"
        log = _keep_failure_log(options, f"amct-{model.name}_bs{batch_size}", " ".join(args) + "\n\n" + output)
        where = f" (log: {log})" if log else ""
        raise ZooError(f"amct_onnx calibration failed with {why}: {_tail(output) or 'no output'}{where}",
                       note="check the calibration data and the ONNX model against the log; or run at fp16 or fp32")
    return deploy


# -------------------------------------------------------------------------
# Infer: ais_bench's InferSession (ascend_session.py), either API generation
# -------------------------------------------------------------------------


def _device_note() -> str:
    """What to check when a session does not open: the ACL ids this host's npu-smi implies."""
    try:
        ids = acl_device_ids(npu_info())
        known = f"npu-smi info lists {len(ids)} NPU(s), so --device takes " + (
            "0" if len(ids) == 1 else f"0..{len(ids) - 1}")
    except ZooError:
        known = "--device takes ACL ids 0..N-1 for the N NPUs npu-smi info lists"
    return (f"{known} (npu-smi's NPU column is not that id; ASCEND_RT_VISIBLE_DEVICES renumbers from 0), "
            "and the .om must be built for this chip")


@hookimpl
def zoo_infer(compiled: CompiledModel, options: RunOptions) -> Runner:
    from .ascend_session import AscendRunner

    return AscendRunner(compiled, options.devices[0], device_note=_device_note)
