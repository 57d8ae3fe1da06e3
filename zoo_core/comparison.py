"""``zoo compare``: the same inputs through several backends, every output checked against a reference backend."""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import arguments as args
from .agreement import accuracy, agreement, check_min_agreement, classifies, image_inputs
from .arguments import PathLike
from .errors import CheckError, UsageError
from .export import sample_input
from .progress import Progress
from .results import CompareResult
from .results import ceil_sig as ceil_sig, raise_if_failed as raise_if_failed  # the check of a result's JSON
from .app import Zoo
from .runner import Prepared, check_same_input, prepare
from .runtime import infer_batches
from .specs import BackendSpec, RunOptions, one_batch_size

if TYPE_CHECKING:
    import numpy as np

    from .precision import PrecisionPlan
    from .specs import ModelSpec

# fp32 backends agree to about 1e-7 on logits, but graph rewrites (fused convolutions, reordered sums) move the
# last bits, and a large logit scales that: these defaults leave room for that and still catch a wrong weight.
# An fp16 backend (Ascend's force_fp16 precision mode) needs looser ones, e.g. --atol 1e-2 --rtol 1e-2.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
RULE = "|backend - reference| <= atol + rtol * |reference|, element by element (numpy.allclose)"


@dataclass(frozen=True)
class OutputErrors:
    """How one output of a backend differs from the reference's, under numpy.allclose's rule.

    ``None`` where no number answers: an output holds NaN or infinity (which always fails, even where both sides
    hold the same infinity), or (``needed_rtol``) the outputs differ by more than ``atol`` where the reference is
    exactly 0, which no relative tolerance covers.
    """

    max_abs: float | None  # max |a - b|
    max_rel: float | None  # max |a - b| / max(|b|, tiny)
    needed_atol: float | None  # the smallest atol that passes at the given rtol
    needed_rtol: float | None  # the smallest rtol that passes at the given atol
    passed: bool  # numpy.allclose(a, b, rtol, atol), and every value finite on both sides
    nonfinite: int = 0  # values of the backend's output that are NaN or infinite
    reference_nonfinite: int = 0  # values of the reference's output that are NaN or infinite


def output_errors(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> OutputErrors:
    """Compare ``actual`` with the reference ``expected`` (same shape), in float64."""
    import numpy as np

    if actual.shape != expected.shape:
        raise CheckError(f"output shapes differ: {actual.shape} against the reference's {expected.shape}")
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    passed = bool(np.allclose(a, b, rtol=rtol, atol=atol))
    nonfinite, reference_nonfinite = (int(x.size - np.count_nonzero(np.isfinite(x))) for x in (a, b))
    if nonfinite or reference_nonfinite:
        return OutputErrors(None, None, None, None, False, nonfinite, reference_nonfinite)
    if a.size == 0:
        return OutputErrors(0.0, 0.0, 0.0, 0.0, passed)
    diff = np.abs(a - b)
    scale = np.abs(b)
    return OutputErrors(
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(scale, np.finfo(np.float64).tiny)).max()),
        needed_atol=max(0.0, float((diff - rtol * scale).max())),
        needed_rtol=_needed_rtol(diff, scale, atol),
        passed=passed,
    )


def _needed_rtol(diff: np.ndarray, scale: np.ndarray, atol: float) -> float | None:
    """The smallest rtol with ``diff <= atol + rtol * scale`` everywhere, or None where none exists."""
    over = diff > atol
    if not over.any():
        return 0.0
    if (scale[over] == 0).any():
        return None
    return float(((diff[over] - atol) / scale[over]).max())


def parse_backends(text: str) -> list[str]:
    """``"onnxruntime,torch"`` -> the backend names, in order; at least two, none twice."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    _check_backend_names(names)
    return names


def _check_backend_names(names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--backends: {', '.join(twice)} named twice", note="name each backend once")
    if len(names) < 2:
        raise UsageError("--backends: compare needs at least two backends",
                         note="write e.g. --backends onnxruntime,torch")


def reference_backend(backends: Sequence[BackendSpec]) -> str:
    """The backend the others are compared with: the first named that declares itself a reference
    (``BackendSpec.reference``: torch, the eager module every export is meant to reproduce), else the first named."""
    return next((b.name for b in backends if b.reference), backends[0].name)


def default_samples(batch_size: int) -> int:
    """Two full batches and a partial one, so that the padding of the last batch is compared too."""
    return 2 * batch_size + 1


def _check_request(zoo: Zoo, options: RunOptions, backends: list[str], samples: int | None, atol: float,
                   rtol: float, min_agreement: float | None = None) -> None:
    """Every problem with the request, before anything is exported."""
    _check_backend_names(backends)
    for name in backends:
        zoo.registry.backend(name)  # unknown: a usage error; unavailable here: an environment error
    one_batch_size(options.batch_sizes, "compare")
    if samples is not None and samples < 1:
        raise UsageError(f"--samples: {samples} must be at least 1", note="leave it out for 2 * bs + 1")
    if not (0 <= atol < math.inf and 0 <= rtol < math.inf):  # NaN or infinity would pass or fail everything
        raise UsageError("--atol and --rtol must be finite and not negative", note="write e.g. --atol 1e-2 --rtol 1e-2")
    if min_agreement is not None:
        check_min_agreement(min_agreement)
    if options.data is None:
        for flag, value in (("--labels", options.labels), ("--limit", options.limit)):
            if value is not None:
                raise UsageError(f"{flag} is for --data, and this comparison runs generated inputs",
                                 note=f"add --data DIR, or drop {flag}")
    elif samples is not None:
        raise UsageError("--samples counts generated inputs, and --data compares the images of its folder",
                         note="drop --samples; --limit N compares the first N images")


def _one_precision(text: str, command: str = "compare",
                   applies: str = "every backend but the reference") -> str:
    """``--precision`` of ``zoo compare`` (or ``zoo debug``): one precision (a sweep is zoo run's)."""
    from .specs import parse_precisions

    found = parse_precisions(text)
    if len(found) != 1:
        raise UsageError(f"--precision: zoo {command} takes one precision, not a sweep ({text})",
                         note=f"write e.g. --precision int8; it applies to {applies}")
    return found[0]


def _backend_options(zoo: Zoo, options: RunOptions, backends: list[str], reference: str,
                     precision: str | None) -> dict[str, tuple[RunOptions, PrecisionPlan | None]]:
    """Each backend's options, and its precision plan where ``precision`` applies (the backends other than the
    reference): what a backend cannot do, or a missing calibration, is a usage error here, before any work."""
    from .precision import export_opset, plan_precisions

    planned: dict[str, tuple[RunOptions, PrecisionPlan | None]] = {}
    for name in backends:
        spec = zoo.registry.backend(name)
        own = options.with_(backend=name)
        plan = None
        if precision is not None and name != reference:
            own = own.with_(precisions=(precision,))
            plan = plan_precisions(spec, own)
            own = own.with_(opset=export_opset(spec, own, plan))
        zoo.registry.call("zoo_check_run", spec, backend=spec, model=zoo.registry.model(options.model),
                          options=own, precisions=plan.precisions if plan else spec.precisions[:1])
        check_same_input(zoo, spec, own, "zoo compare")
        planned[name] = own, plan
    return planned


def run_backend(
    zoo: Zoo, options: RunOptions, inputs: np.ndarray, progress: Progress, plan: PrecisionPlan | None = None,
) -> tuple[Prepared, list[np.ndarray]]:
    """Prepare ``options.backend`` at its one batch size (in ``plan``'s precision, when given) and run ``inputs``
    through it: (prepared, outputs)."""
    from .precision import calibrate

    precision = plan.precisions[0] if plan is not None else None
    calibration = (calibrate(zoo, zoo.registry.model(options.model), options, plan, progress)
                   if plan is not None and plan.quantized else None)
    prepared = prepare(zoo, options, progress, precision, calibration)
    compiled = prepared.compiled[options.batch_sizes[0]]
    runner = zoo.open_runner(compiled, prepared.model, options)
    with progress.stage(f"infer {len(inputs)} samples on {options.backend}") as done, runner:
        outputs = infer_batches(runner, {i.name: inputs for i in compiled.inputs})
        done(f"{len(outputs)} output(s)")
    return prepared, outputs


def compare(zoo: Zoo, options: RunOptions, backends: list[str], samples: int | None = None,
            atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, progress: Progress | None = None,
            min_agreement: float | None = None, precision: str | None = None,
            judge_tolerances: bool = True) -> dict[str, Any]:
    """Run the same inputs through every backend; each output of each backend against the reference's, and the
    first output's top-1 agreement and top-5 overlap where it holds class scores. The inputs: ``samples`` seeded
    ones (default 2 * bs + 1), or the images of ``options.data``, whose labels also score each backend.
    ``precision``: what the backends other than the reference compute in. ``min_agreement``: the least top-1
    agreement that passes; ``judge_tolerances`` False leaves the per-output tolerances reported, not judged."""
    progress = progress or Progress()
    _check_request(zoo, options, backends, samples, atol, rtol, min_agreement)
    precision = _one_precision(precision) if precision is not None else None
    model: ModelSpec = zoo.registry.model(options.model)
    reference = reference_backend([zoo.registry.backend(name) for name in backends])
    planned = _backend_options(zoo, options, backends, reference, precision)
    with ExitStack() as stack:
        images = stack.enter_context(image_inputs(zoo, model, options, progress)) if options.data else None
        if images is not None:
            inputs, labels = images.inputs, images.labels
        else:
            samples = default_samples(options.batch_sizes[0]) if samples is None else samples
            inputs, labels = sample_input(model, samples, options.seed), None
        runs = {name: run_backend(zoo, own, inputs, progress, plan) for name, (own, plan) in planned.items()}
    ref_prepared, ref_outputs = runs[reference]
    names = list(ref_prepared.compiled[options.batch_sizes[0]].output_names)
    classified = bool(ref_outputs) and classifies(ref_outputs[0], model)
    if min_agreement is not None and not classified:
        shape = list(ref_outputs[0].shape) if ref_outputs else []
        raise UsageError(f"--min-agreement: the first output of {model.name} ({names[0] if names else '-'}, shape "
                         f"{shape}) is not class scores (N, {model.num_classes})",
                         note="drop --min-agreement and judge by --atol/--rtol")
    scored = {name: accuracy(outputs[0], labels) if classified and labels is not None else (None, None)
              for name, (_, outputs) in runs.items()}
    comparisons = []
    for name in (b for b in backends if b != reference):
        outputs = runs[name][1]
        if len(outputs) != len(ref_outputs):
            raise CheckError(f"{name} returns {len(outputs)} outputs, {reference} {len(ref_outputs)}")
        for index, (output, actual, expected) in enumerate(zip(names, outputs, ref_outputs, strict=True)):
            errors = output_errors(actual, expected, atol, rtol)
            task: dict[str, Any] = {}
            if index == 0 and classified:
                top1, overlap = agreement(actual, expected)
                task = {"top1_agreement": top1, "top5_overlap": overlap}
                if labels is not None:
                    task.update(top1=scored[name][0], top5=scored[name][1])
            comparisons.append({"backend": name, "reference": reference, "output": output,
                                "shape": list(actual.shape), **asdict(errors), **task})
    agreed = [c for c in comparisons if "top1_agreement" in c]
    below = min_agreement is not None and any(
        c["top1_agreement"] is None or c["top1_agreement"] < min_agreement for c in agreed)
    return {
        "model": model.name,
        "weights": ref_prepared.weights.label,
        "onnx": str(options.onnx) if options.onnx is not None else None,
        "batch_size": options.batch_sizes[0],
        "samples": len(inputs),
        "seed": options.seed,
        "backends": list(backends),
        "reference": reference,
        "atol": atol,
        "rtol": rtol,
        "rule": RULE,
        "passed": (not judge_tolerances or all(c["passed"] for c in comparisons)) and not below,
        "needed_atol": _worst(c["needed_atol"] for c in comparisons),
        "needed_rtol": _worst(c["needed_rtol"] for c in comparisons),
        "comparisons": comparisons,
        **({"tolerances_judged": False} if not judge_tolerances else {}),
        **({"min_agreement": min_agreement} if min_agreement is not None else {}),
        **({"precision": precision} if precision is not None else {}),
        **({"data": str(options.data), "reference_top1": scored[reference][0],
            "reference_top5": scored[reference][1]} if options.data is not None else {}),
    }


def _worst(values: Any) -> float | None:
    """The largest of ``values``, or None when one of them is None (no number answers)."""
    values = list(values)
    return None if any(v is None for v in values) else max(values, default=0.0)


# ------------------------------------------------------------------------- from Python: zoo_core.compare(...)


def compare_models(
    model: str, *, backends: str | Sequence[str], bs: int | str = 8, weights: PathLike | None = None,
    onnx: PathLike | None = None, atol: float | None = None, rtol: float | None = None, samples: int | None = None,
    seed: int | None = None, data: PathLike | None = None, labels: PathLike | None = None, limit: int | None = None,
    min_agreement: float | None = None, precision: str | None = None, calib: PathLike | None = None,
    backend_options: Mapping[str, object] | None = None, progress: bool = False, zoo: Zoo | None = None,
) -> CompareResult:
    """``zoo compare MODEL --backends A,B``: the same inputs (seeded, or the images of ``data``) through every
    backend, each output against the reference's (torch when named, else the first), and the first output's top-1
    agreement and top-5 overlap where it holds class scores. A failed comparison is ``passed=False`` in the
    result; ``result.raise_if_failed()`` makes it the CheckError the CLI exits 4 with."""
    flags = args.checked("compare", {"weights": weights, "onnx": onnx, "seed": seed, "atol": atol, "rtol": rtol,
                                 "samples": samples, "data": data, "labels": labels, "limit": limit,
                                 "precision": precision, "calib": calib})
    judged = {k: flags.pop(k) for k in ("atol", "rtol", "samples", "precision") if k in flags}
    if min_agreement is not None:
        check_min_agreement(min_agreement)
    zoo = zoo or args.app()
    options, names = compare_options(zoo, model, args.listed(bs), args.listed(backends), flags, {},
                                     args.pairs(backend_options))
    return compare_with(zoo, options, names, progress=args.progress_for(progress), min_agreement=min_agreement,
                        **judged)


def compare_options(zoo: Zoo, model: str, bs: str, backends: str, flags: Mapping[str, Any],
                    plugin_flags: Mapping[str, Any] | None = None, backend_opts: Iterable[str] = (),
                    cache: dict[str, Any] | None = None) -> tuple[RunOptions, list[str]]:
    """The options of ``zoo compare`` and its backends, checked in the CLI's order: one batch size (``bs`` as
    ``--bs`` takes it), the flags, the backends (``"onnxruntime,torch"``), the plugins' options."""
    from .specs import parse_batch_sizes, resolve_options

    spec = zoo.registry.model(model)
    sizes = parse_batch_sizes(bs, single="compare")
    options = resolve_options(spec, {**flags, "batch_sizes": sizes})
    names = parse_backends(backends)
    return args.with_plugin_options(zoo, options, names, plugin_flags or {}, tuple(backend_opts), cache), names


def compare_with(zoo: Zoo, options: RunOptions, backends: list[str], samples: int | None = None,
                 atol: float | None = None, rtol: float | None = None, progress: Progress | None = None,
                 min_agreement: float | None = None, precision: str | None = None) -> CompareResult:
    """Compare ``backends`` under ``options`` (from :func:`compare_options`); the defaults are the CLI's. With
    ``min_agreement`` and neither tolerance given, the top-1 agreement alone is judged (as Polygraphy's indices
    comparison replaces its element-wise one): an fp16 or int8 backend never meets the fp32 defaults."""
    data = compare(
        zoo, options, backends, samples, DEFAULT_ATOL if atol is None else atol,
        DEFAULT_RTOL if rtol is None else rtol, progress, min_agreement, precision,
        judge_tolerances=min_agreement is None or atol is not None or rtol is not None)
    return CompareResult.from_json(data, "the comparison of this run")
