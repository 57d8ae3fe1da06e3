"""``zoo debug``: where two backends' numbers part, layer by layer.

The intermediate tensors of the simplified ONNX graph (all of them, every Nth, or those matching ``--layers``) are
marked as extra outputs (``RunOptions.extra_outputs``) and compiled, a group at a time, on both backends; the same
inputs go through both, and each tensor is compared under ``zoo compare``'s rule. A backend that cannot return
intermediate tensors (``BackendSpec.exposes_tensors`` false) is bisected instead: it compiles the graph cut at a
tensor, halving until the first failing one is found. torch, which runs the PyTorch module rather than the graph,
is represented by its own ONNX export run on the best available CPU backend that returns tensors (ONNX Runtime
here; the export is checked against torch when it is made).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .comparison import DEFAULT_ATOL, DEFAULT_RTOL, RULE, output_errors
from .errors import UsageError, ZooError
from .progress import Progress
from .runner import SIMPLIFIED_FILE, check_same_input, prepare
from .runtime import infer_batches
from .specs import RunOptions

if TYPE_CHECKING:
    import numpy as np

    from .app import Zoo
    from .specs import BackendSpec, ModelSpec

GROUP = 48  # marked tensors per compile: each is an output the backend must keep and copy back
CSV_FILE = "debug.csv"
JSON_FILE = "debug.json"


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph: its name, the node that makes it (op type, node name) and its position."""

    index: int
    name: str
    op_type: str
    node: str


@dataclass(frozen=True)
class Side:
    """How one backend of the debug runs: under which options, and why so (torch through its export)."""

    name: str  # as the user named it
    options: RunOptions
    label: str  # what the table says it is
    exposes: bool


# ------------------------------------------------------------------------------------------- the graph


def graph_tensors(onnx_path: Path) -> tuple[list[Tensor], list[str]]:
    """The tensors the nodes of ``onnx_path`` make, in graph (topological) order, and the graph's outputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)  # the structure is enough
    outputs = [o.name for o in model.graph.output]
    found, index = [], 0
    for node in model.graph.node:
        for name in node.output:
            if name and name not in outputs:
                found.append(Tensor(index, name, node.op_type, node.name))
                index += 1
    return found, outputs


def select(tensors: list[Tensor], layers: str | None, every: int | None) -> list[Tensor]:
    """All tensors, those whose name or op type matches ``layers`` (a regular expression), and/or every Nth."""
    chosen = tensors
    if layers is not None:
        try:
            pattern = re.compile(layers)
        except re.error as exc:
            raise UsageError(f"--layers {layers!r} is not a regular expression: {exc}",
                             note="write e.g. --layers Conv or --layers 'layer3.*'") from None
        chosen = [t for t in chosen if pattern.search(t.name) or pattern.search(t.op_type) or pattern.search(t.node)]
    if every is not None:
        chosen = chosen[every - 1 :: every]
    if not chosen:
        raise UsageError(f"no tensor of the graph matches --layers {layers!r}" if layers is not None else
                         "no tensor to compare", note="`zoo debug MODEL --backends A,B` alone compares every tensor")
    return chosen


# ------------------------------------------------------------------------------------------- running


def _sides(zoo: Zoo, options: RunOptions, backends: list[str], precision: str | None) -> tuple[Side, Side]:
    """The reference and the target: torch through its export on ONNX Runtime, every other backend as named."""
    from .precision import export_opset, plan_precisions

    if precision is not None:  # the target's quantizer may need a later opset: both sides export at it, so the
        # reference's graph holds the target's tensors
        target = zoo.registry.backend(backends[1])
        own = options.with_(backend=target.name, precisions=(precision,))
        plan = plan_precisions(target, own)
        zoo.registry.call("zoo_check_run", target, backend=target, model=zoo.registry.model(options.model),
                          options=own, precisions=plan.precisions)
        options = options.with_(opset=export_opset(target, own, plan))
    sides = []
    for position, name in enumerate(backends):
        spec = zoo.registry.backend(name)
        asked = (precision,) if precision is not None and position == 1 else ()
        if spec.reference and not spec.exposes_tensors:
            proxy = _proxy(zoo)
            sides.append(Side(name, options.with_(backend=proxy, onnx=None, precisions=asked),
                              f"{name} (its ONNX export, on {proxy})", True))
        else:
            sides.append(Side(name, options.with_(backend=name, precisions=asked), name, spec.exposes_tensors))
            check_same_input(zoo, spec, sides[-1].options, "zoo debug")
    if not sides[0].exposes:
        raise UsageError(f"--backends: the reference {backends[0]!r} cannot return intermediate tensors",
                         note="name first a backend that can (onnxruntime, openvino, ascend, or torch)")
    return sides[0], sides[1]


def _proxy(zoo: Zoo) -> str:
    """The backend that runs a reference backend's own ONNX export (torch's): the CPU backend of highest priority
    here that returns intermediate tensors."""
    found = [b for b in zoo.registry.backends.values() if b.exposes_tensors and b.available and b.device == "cpu"]
    if not found:
        raise ZooError("no CPU backend here returns intermediate tensors, to run the reference's ONNX export on",
                       note="install one (onnxruntime is zoo's default), or name two backends that expose tensors")
    return max(found, key=lambda b: b.priority).name


def _run(zoo: Zoo, side: Side, names: tuple[str, ...], inputs: np.ndarray,
         progress: Progress) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The model's outputs and the ``names`` tensors, for ``inputs``, on one side."""
    options = side.options.with_(extra_outputs=names)
    precision = options.precisions[0] if options.precisions else None
    prepared = prepare(zoo, options, progress, precision, _calibration(zoo, options, progress))
    compiled = prepared.compiled[options.batch_sizes[0]]
    expected = len(prepared.model.output_names) + len(names)
    with zoo.open_runner(compiled, prepared.model, options) as runner:
        outputs = infer_batches(runner, {i.name: inputs for i in compiled.inputs})
    if len(outputs) != expected:
        raise ZooError(f"backend {options.backend!r} returned {len(outputs)} outputs for {expected} asked "
                       f"({len(names)} marked tensors)", note="a bug in that backend's plugin", exit_code=1)
    count = len(prepared.model.output_names)
    return outputs[:count], outputs[count:]


def _calibration(zoo: Zoo, options: RunOptions, progress: Progress) -> Any:
    """The calibration set a quantized ``--precision`` of the target needs (``None`` otherwise)."""
    from .precision import calibrate, plan_precisions

    if not options.precisions:
        return None
    plan = plan_precisions(zoo.registry.backend(options.backend), options)
    return calibrate(zoo, zoo.registry.model(options.model), options, plan, progress) if plan.quantized else None


def _in_reference(zoo: Zoo, reference: Side, chosen: list[Tensor], onnx: Path | None,
                  progress: Progress) -> list[Tensor]:
    """The chosen tensors that the reference's own graph also computes (compared by name); a usage error when
    none is: the --onnx file's tensors are named otherwise than in the reference's export."""
    prepared = prepare(zoo, reference.options, progress, None)
    known = {t.name for t in graph_tensors(
        next(a for a in prepared.artifacts if a.stage == "simplify").file(SIMPLIFIED_FILE))[0]}
    common = [t for t in chosen if t.name in known]
    if not common:
        raise UsageError(f"no tensor of --onnx {onnx} is in the graph the reference {reference.name!r} runs (its "
                         f"own export): the file's tensors are named otherwise (e.g. {chosen[0].name!r})",
                         note="pass the file that `zoo export` wrote, or compare two backends that both run it "
                         "(e.g. --backends onnxruntime,openvino)")
    return common


def _groups(tensors: list[Tensor], size: int) -> Iterator[list[Tensor]]:
    for start in range(0, len(tensors), size):
        yield tensors[start : start + size]


def _row(tensor: Tensor, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    import numpy as np

    errors = output_errors(actual, expected, atol, rtol)
    a, b = (np.asarray(x, dtype=np.float64).ravel() for x in (actual, expected))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    difference = float(np.linalg.norm(a - b))
    reference = float(np.linalg.norm(b))
    rel_l2 = difference / reference if reference > 0 and math.isfinite(difference) else None
    if norms > 0 and np.isfinite(norms):
        cosine: float | None = float(a @ b / norms)
    else:  # a zero tensor on both sides is the same tensor; on one side only, no angle
        cosine = 1.0 if not a.any() and not b.any() else None
    return {"index": tensor.index, "tensor": tensor.name, "op_type": tensor.op_type, "node": tensor.node,
            "shape": list(actual.shape), "max_abs": errors.max_abs, "max_rel": errors.max_rel,
            "rel_l2": rel_l2, "cosine": cosine if cosine is None or math.isfinite(cosine) else None,
            "passed": errors.passed,
            "nonfinite": errors.nonfinite}


# ------------------------------------------------------------------------------------------- bisect


def _bisect(zoo: Zoo, target: Side, reference: Side, tensors: list[Tensor], inputs: np.ndarray, atol: float,
            rtol: float, progress: Progress) -> list[dict[str, Any]]:
    """The target cannot return intermediate tensors: compile it on the graph cut at a tensor (inputs to that
    tensor), halving the candidates until the first whose error exceeds the tolerance; returns the rows probed."""
    import onnx.utils

    from .onnx_shared import load_shared

    prepared = prepare(zoo, target.options, progress)
    model = prepared.model
    simplified = next(a for a in prepared.artifacts if a.stage == "simplify").file(SIMPLIFIED_FILE)
    whole = load_shared(simplified)  # its tensors are files shared by content: loaded as zoo stored them
    rows: dict[int, dict[str, Any]] = {}

    def probe(position: int) -> bool:
        tensor = tensors[position]
        _, (expected,) = _run(zoo, reference, (tensor.name,), inputs, progress)
        with tempfile.TemporaryDirectory(prefix="zoo-bisect-") as scratch:
            cut = Path(scratch) / "cut.onnx"
            extracted = onnx.utils.Extractor(whole).extract_model(list(model.input_names), [tensor.name])
            onnx.save(extracted, str(cut))
            work = Path(scratch) / "compiled"
            work.mkdir()
            spec: ModelSpec = dataclasses.replace(model, output_names=(tensor.name,))
            backend: BackendSpec = zoo.registry.backend(target.options.backend)
            with progress.stage(f"bisect: compile {target.name} up to {tensor.name} ({tensor.op_type})") as done:
                compiled = zoo.registry.call("zoo_compile", backend, backend=backend, model=spec,
                                             weights=prepared.weights, onnx_path=cut,
                                             batch_size=target.options.batch_sizes[0], workdir=work,
                                             options=target.options, precision=prepared.precision,
                                             batch_sizes=())
                done("compiled")
            with zoo.open_runner(compiled, spec, target.options) as runner:
                (actual,) = infer_batches(runner, {i.name: inputs for i in compiled.inputs})
        rows[position] = _row(tensor, actual, expected, atol, rtol)
        return not rows[position]["passed"]

    low, high = 0, len(tensors) - 1
    if not probe(high):
        return [rows[k] for k in sorted(rows)]
    while low < high:
        middle = (low + high) // 2
        if probe(middle):
            high = middle
        else:
            low = middle + 1
    return [rows[k] for k in sorted(rows)]


# ------------------------------------------------------------------------------------------- the command


def debug(zoo: Zoo, options: RunOptions, backends: list[str], *, layers: str | None = None, every: int | None = None,
          atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, samples: int | None = None,
          inputs: np.ndarray | None = None, precision: str | None = None, group: int = GROUP,
          bisect: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Compare ``backends`` (reference first) tensor by tensor on the same inputs: the table in graph order and the
    first tensor whose error exceeds the tolerance."""
    from .comparison import _check_backend_names
    from .export import sample_input

    progress = progress or Progress()
    _check_backend_names(backends)
    if len(backends) != 2:
        raise UsageError(f"--backends: zoo debug compares two backends, not {len(backends)}",
                         note="write e.g. --backends torch,onnxruntime (the reference first)")
    if not (0 <= atol < math.inf and 0 <= rtol < math.inf):
        raise UsageError("--atol and --rtol must be finite and not negative", note="write e.g. --atol 1e-3 --rtol 1e-2")
    for flag, value in (("--every", every), ("--group", group), ("--samples", samples)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: {value} must be at least 1", note=f"leave {flag} out for its default")
    model = zoo.registry.model(options.model)
    reference, target = _sides(zoo, options, backends, precision)
    bs = options.batch_sizes[0]
    if inputs is None:
        inputs = sample_input(model, samples or bs, options.seed)
    # The graph both sides compile: the target's simplified model (the given --onnx, when there is one).
    prepared = prepare(zoo, target.options, progress, None)
    simplified = next(a for a in prepared.artifacts if a.stage == "simplify").file(SIMPLIFIED_FILE)
    tensors, graph_outputs = graph_tensors(simplified)
    chosen = select(tensors, layers, every)
    if reference.options.onnx != target.options.onnx:  # torch's own export beside an --onnx file
        chosen = _in_reference(zoo, reference, chosen, options.onnx, progress)
    rows: list[dict[str, Any]] = []
    mode = "layers"
    if target.exposes and not bisect:
        for part in _groups(chosen, group):
            names = tuple(t.name for t in part)
            ref_out, ref_tensors = _run(zoo, reference, names, inputs, progress)
            got_out, got_tensors = _run(zoo, target, names, inputs, progress)
            rows += [_row(t, a, e, atol, rtol) for t, a, e in zip(part, got_tensors, ref_tensors, strict=True)]
        outputs = [_row(Tensor(len(tensors) + i, name, "output", ""), a, e, atol, rtol)
                   for i, (name, a, e) in enumerate(zip(graph_outputs, got_out, ref_out, strict=True))]
    else:
        mode = "bisect"
        rows = _bisect(zoo, target, reference, chosen, inputs, atol, rtol, progress)
        outputs = []
    first = next((r for r in rows if not r["passed"]), None)
    return {
        "model": model.name, "reference": reference.label, "target": target.label,
        "backends": list(backends), "precision": precision, "batch_size": bs, "samples": len(inputs),
        "seed": options.seed, "atol": atol, "rtol": rtol, "rule": RULE, "mode": mode,
        "tensors_in_graph": len(tensors), "compared": len(rows),
        "first_exceeding": first and {k: first[k] for k in ("index", "tensor", "op_type", "node")},
        "rows": rows, "outputs": outputs,
    }


def verdict(data: dict[str, Any]) -> str:
    """The last line: the first tensor over the tolerance, or that none is."""
    first = data["first_exceeding"]
    compared = f"{data['compared']} tensor{'s' if data['compared'] != 1 else ''} compared"
    if first is None:
        return f"no layer exceeds the tolerance (atol {data['atol']:g}, rtol {data['rtol']:g}; {compared})"
    found = (f"first tensor over the tolerance: {first['tensor']} ({first['op_type']} {first['node']}), "
             f"tensor {first['index'] + 1} of {data['tensors_in_graph']} in graph order")
    if data["mode"] == "bisect":  # halving trusts that a tensor over the tolerance stays so further down
        found += (f" (bisected in {compared}: where errors rise and fall along the graph an earlier tensor may be "
                  "over too; a backend that returns tensors compares them all)")
    return found


def write_files(data: dict[str, Any], out: Path) -> list[Path]:
    """``debug.csv`` (the table) and ``debug.json`` (everything) in ``out``, each atomically."""
    import csv
    import io
    import json

    from .files import atomic_write

    columns = ["index", "tensor", "op_type", "node", "shape", "max_abs", "max_rel", "rel_l2", "cosine", "passed",
               "nonfinite"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in [*data["rows"], *data["outputs"]]:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / CSV_FILE) as fh:
            fh.write(text.getvalue())
        with atomic_write(out / JSON_FILE) as fh:
            fh.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise ZooError(f"cannot write the debug files to {out}: {exc.strerror or exc}",
                       note="choose a writable folder with --out") from None
    return [out / CSV_FILE, out / JSON_FILE]


def check_out(out: Path) -> None:
    """``--out`` that names a file (or a folder below one), refused before any work."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"--out {out}: {folder} is a file, not a folder",
                                 note="name a folder for debug.csv and debug.json, or leave --out out")
            return


def one_precision(text: str) -> str:
    """``--precision`` of ``zoo debug``: the one precision of the target (a sweep is zoo run's)."""
    from .comparison import _one_precision

    return _one_precision(text, "debug", "the target, the second of --backends")
