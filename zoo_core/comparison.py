"""``zoo compare``: the same inputs through several backends, every output checked against a reference backend."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import arguments as args
from .arguments import PathLike
from .errors import CheckError, UsageError
from .export import sample_input
from .progress import Progress
from .results import CompareResult
from .results import ceil_sig as ceil_sig, raise_if_failed as raise_if_failed  # the check of a result's JSON
from .app import Zoo
from .runner import Prepared, prepare
from .runtime import infer_batches
from .specs import BackendSpec, RunOptions, one_batch_size

if TYPE_CHECKING:
    import numpy as np

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


def _check_request(zoo: Zoo, options: RunOptions, backends: list[str], samples: int, atol: float,
                   rtol: float) -> None:
    """Every problem with the request, before anything is exported."""
    _check_backend_names(backends)
    for name in backends:
        zoo.registry.backend(name)  # unknown: a usage error; unavailable here: an environment error
    one_batch_size(options.batch_sizes, "compare")
    if samples < 1:
        raise UsageError(f"--samples: {samples} must be at least 1", note="leave it out for 2 * bs + 1")
    if not (0 <= atol < math.inf and 0 <= rtol < math.inf):  # NaN or infinity would pass or fail everything
        raise UsageError("--atol and --rtol must be finite and not negative", note="write e.g. --atol 1e-2 --rtol 1e-2")


def run_backend(
    zoo: Zoo, options: RunOptions, inputs: np.ndarray, progress: Progress
) -> tuple[Prepared, list[np.ndarray]]:
    """Prepare ``options.backend`` at its one batch size and run ``inputs`` through it: (prepared, outputs)."""
    prepared = prepare(zoo, options, progress)
    compiled = prepared.compiled[options.batch_sizes[0]]
    runner = zoo.open_runner(compiled, prepared.model, options)
    with progress.stage(f"infer {len(inputs)} samples on {options.backend}") as done, runner:
        outputs = infer_batches(runner, {i.name: inputs for i in compiled.inputs})
        done(f"{len(outputs)} output(s)")
    return prepared, outputs


def compare(zoo: Zoo, options: RunOptions, backends: list[str], samples: int, atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``samples`` seeded inputs through every backend; each output of each backend against the reference's."""
    progress = progress or Progress()
    _check_request(zoo, options, backends, samples, atol, rtol)
    model: ModelSpec = zoo.registry.model(options.model)
    inputs = sample_input(model, samples, options.seed)
    runs = {name: run_backend(zoo, options.with_(backend=name), inputs, progress) for name in backends}
    reference = reference_backend([zoo.registry.backend(name) for name in backends])
    ref_prepared, ref_outputs = runs[reference]
    names = list(ref_prepared.compiled[options.batch_sizes[0]].output_names)
    comparisons = []
    for name in (b for b in backends if b != reference):
        outputs = runs[name][1]
        if len(outputs) != len(ref_outputs):
            raise CheckError(f"{name} returns {len(outputs)} outputs, {reference} {len(ref_outputs)}")
        for output, actual, expected in zip(names, outputs, ref_outputs, strict=True):
            errors = output_errors(actual, expected, atol, rtol)
            comparisons.append({"backend": name, "reference": reference, "output": output,
                                "shape": list(actual.shape), **asdict(errors)})
    return {
        "model": model.name,
        "weights": ref_prepared.weights.label,
        "onnx": str(options.onnx) if options.onnx is not None else None,
        "batch_size": options.batch_sizes[0],
        "samples": samples,
        "seed": options.seed,
        "backends": list(backends),
        "reference": reference,
        "atol": atol,
        "rtol": rtol,
        "rule": RULE,
        "passed": all(c["passed"] for c in comparisons),
        "needed_atol": _worst(c["needed_atol"] for c in comparisons),
        "needed_rtol": _worst(c["needed_rtol"] for c in comparisons),
        "comparisons": comparisons,
    }


def _worst(values: Any) -> float | None:
    """The largest of ``values``, or None when one of them is None (no number answers)."""
    values = list(values)
    return None if any(v is None for v in values) else max(values, default=0.0)


# ------------------------------------------------------------------------- from Python: zoo_core.compare(...)


def compare_models(
    model: str, *, backends: str | Sequence[str], bs: int | str = 8, weights: PathLike | None = None,
    onnx: PathLike | None = None, atol: float | None = None, rtol: float | None = None, samples: int | None = None,
    seed: int | None = None, backend_options: Mapping[str, object] | None = None, progress: bool = False,
    zoo: Zoo | None = None,
) -> CompareResult:
    """``zoo compare MODEL --backends A,B``: the same seeded inputs through every backend, each output against
    the reference's (torch when named, else the first). A failed comparison is ``passed=False`` in the result;
    ``result.raise_if_failed()`` makes it the CheckError the CLI exits 4 with."""
    flags = args.checked("compare", {"weights": weights, "onnx": onnx, "seed": seed, "atol": atol, "rtol": rtol,
                                 "samples": samples})
    tolerances = {k: flags.pop(k) for k in ("atol", "rtol", "samples") if k in flags}
    zoo = zoo or args.app()
    options, names = compare_options(zoo, model, args.listed(bs), args.listed(backends), flags, {},
                                     args.pairs(backend_options))
    return compare_with(zoo, options, names, progress=args.progress_for(progress), **tolerances)


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
                 atol: float | None = None, rtol: float | None = None, progress: Progress | None = None
                 ) -> CompareResult:
    """Compare ``backends`` under ``options`` (from :func:`compare_options`); the defaults are the CLI's."""
    data = compare(
        zoo, options, backends, default_samples(options.batch_sizes[0]) if samples is None else samples,
        DEFAULT_ATOL if atol is None else atol, DEFAULT_RTOL if rtol is None else rtol, progress)
    return CompareResult.from_json(data, "the comparison of this run")
