"""PyTorch to ONNX for any registered model: build, load weights, export, verify, simplify per batch size."""

from __future__ import annotations

import importlib
import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import CheckError, UsageError, ZooError
from .limits import writing

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .specs import ModelSpec
    from .weights import WeightsRef

CHECK_FILE = "export-check.json"
CHECKS = "finite"  # what the export and simplify checks judge, in their cache keys: NaN and infinity fail them


@dataclass(frozen=True)
class ExportCheck:
    """How closely ONNX Runtime reproduces PyTorch on the same input."""

    max_abs_diff: float
    tolerance: float
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance, "batch_size": self.batch_size}


def import_factory(model: ModelSpec) -> Any:
    """The callable named by ``model.factory`` (``"package.module:function"``)."""
    module_name, _, attr = model.factory.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ZooError(
            f"model {model.name!r}: cannot import its factory {model.factory!r}: {exc}",
            note=f"reinstall the plugin {model.plugin!r} that registered it",
        ) from None


def build_module(model: ModelSpec, weights: WeightsRef) -> torch.nn.Module:
    """The model's torch module in eval mode, with the given weights (or seeded random ones).

    A checkpoint loads by the rules of :func:`zoo_core.weights.load_state_dict` (unwrapping, ``module.``, then
    the model's declared key map), and strictly: one line names a few missing and unexpected keys otherwise.
    """
    import torch

    from .weights import load_state_dict

    factory = import_factory(model)
    if weights.kind == "random":
        torch.manual_seed(weights.seed or 0)
    module = factory(**dict(model.factory_kwargs))
    if weights.kind == "file":
        assert weights.path is not None
        key_map = model.weights.key_map if model.weights is not None else None
        state = load_state_dict(weights.path, key_map=key_map)
        _check_fit(model, weights, state, module.state_dict())
        module.load_state_dict(state, strict=True)
    module.eval()
    return module


def _check_fit(model: ModelSpec, weights: WeightsRef, state: dict[str, Any], expected: dict[str, Any]) -> None:
    """One line when ``state`` does not fit the module's ``expected`` keys and shapes, naming a few of each kind."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_a_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_a_few(unexpected)})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} of another shape (e.g. {k}: {tuple(state[k].shape)} != {tuple(expected[k].shape)})")
    key_map = model.weights.key_map if model.weights is not None else None
    mapped = " after the key map" if key_map is not None else ""
    if weights.source == "path":
        note = "these weights belong to another model; pass the right file with --weights"
    else:
        note = (f"the weights that plugin {model.plugin!r} declares do not fit its model: its WeightsSpec needs "
                f"{'another' if key_map is not None else 'a'} key_map; "
                "meanwhile pass --weights PATH or --weights random")
    raise ZooError(f"weights {weights.path} do not fit model {model.name!r}{mapped}: keys " + ", ".join(parts),
                   note=note)


def _a_few(keys: list[str], count: int = 3) -> str:
    return "e.g. " + ", ".join(keys[:count])


def sample_input(model: ModelSpec, batch_size: int, seed: int = 0) -> np.ndarray:
    """A seeded input batch of the model's shape, roughly like normalised images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, *model.input_shape)).astype(model.input_dtype)


def sample_batch(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Seeded generated input of any shape: normal floats, or the full range of an integer type (images)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind in "ui":
        info = np.iinfo(kind)
        return rng.integers(max(info.min, 0), min(info.max, 255) + 1, size=shape, dtype=kind)
    return rng.standard_normal(shape).astype(kind)


def export_onnx(model: ModelSpec, weights: WeightsRef, path: Path, opset: int, atol: float = 1e-4) -> ExportCheck:
    """Export ``model`` to ``path`` with a dynamic batch axis, then check ONNX Runtime against PyTorch.

    The check's result is written beside the ONNX file (``export-check.json``). A difference beyond
    ``atol * max(1, max |torch output|)`` in any output, or NaN or infinity in either side's outputs, raises
    :class:`CheckError`. A model of several inputs gets one seeded sample per input name, each of the declared
    shape; one of several outputs (a tuple) is checked output by output.
    """
    import torch

    module = build_module(model, weights)
    examples = tuple(torch.from_numpy(sample_input(model, 2, seed=1 + i)) for i in range(len(model.input_names)))
    dynamic = {name: {0: "batch"} for name in (*model.input_names, *model.output_names)}
    with warnings.catch_warnings(), writing(path), _no_graph_dump(torch):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                module,
                examples,
                str(path),
                input_names=list(model.input_names),
                output_names=list(model.output_names),
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as exc:  # an operator this opset cannot express
            reason = str(exc).split("Please feel free")[0].split("[Caused by")[0].strip().splitlines()[0]
            raise UsageError(f"model {model.name!r} cannot be exported at opset {opset}: {reason}",
                             note=f"choose a newer opset with --opset, or leave it out for the model's own "
                             f"({model.opset})") from None
    with torch.no_grad():
        out = module(*examples)
    expected = [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
    actual = run_onnx(path, {name: example.numpy() for name, example in zip(model.input_names, examples, strict=True)})
    check = compare_outputs(f"exported ONNX of {model.name!r}", {"PyTorch": expected, "ONNX Runtime": actual},
                            atol, batch_size=2, note="the weights hold NaN or infinity, or are so large that the "
                            "outputs overflow float32; check the checkpoint passed with --weights")
    path.with_name(CHECK_FILE).write_text(json.dumps(check.to_dict(), allow_nan=False))
    if check.max_abs_diff > check.tolerance:
        raise CheckError(
            f"exported ONNX of {model.name!r} differs from PyTorch by {check.max_abs_diff:.3g} "
            f"(tolerance {check.tolerance:.3g})",
            note=f"try another opset with --opset (now {opset}); if this persists, report it to the plugin's authors",
        )
    return check


@contextmanager
def _no_graph_dump(torch: Any) -> Iterator[None]:
    """The TorchScript exporter prints its whole graph on stderr before it raises (its log switch reads a function
    as True, so logging is always on): silenced, so that a failed export is one line, not hundreds."""
    log = getattr(torch._C, "_jit_onnx_log", None)
    if log is None:
        yield
        return
    torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = log


def check_finite(what: str, outputs: dict[str, np.ndarray], note: str) -> None:
    """A :class:`CheckError` when any of ``outputs`` (by who produced it) holds NaN or infinity: no tolerance
    judges such a comparison (NaN compares False with everything), so it fails on its own, naming how many."""
    import numpy as np

    counts = {who: int(np.size(a) - np.count_nonzero(np.isfinite(a))) for who, a in outputs.items()}
    bad = {who: n for who, n in counts.items() if n}
    if bad:
        sides = ", ".join(f"{n} of {np.size(outputs[who])} values from {who}" for who, n in bad.items())
        raise CheckError(f"{what}: NaN or infinity in the outputs, {sides}", note=note)


def compare_outputs(what: str, outputs: dict[str, list[np.ndarray]], atol: float, batch_size: int,
                    note: str) -> ExportCheck:
    """The worst agreement of two producers' outputs (by who produced them; the first is the reference), output
    by output, after :func:`check_finite` over all of them."""
    import numpy as np

    (ref_name, expected), (_, actual) = outputs.items()
    check_finite(what, {who: np.concatenate([np.ravel(a) for a in arrays]) for who, arrays in outputs.items()},
                 note=note)
    if len(expected) != len(actual):
        raise CheckError(f"{what}: {len(actual)} outputs, {ref_name} has {len(expected)}")
    checks = [compare(e, a, atol, batch_size) for e, a in zip(expected, actual, strict=True)]
    return max(checks, key=lambda c: (c.max_abs_diff > c.tolerance, c.max_abs_diff))  # a failing one first


def compare(expected: np.ndarray, actual: np.ndarray, atol: float, batch_size: int) -> ExportCheck:
    import numpy as np

    if expected.shape != actual.shape:
        raise CheckError(f"exported ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    diff = float(np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64))))
    scale = max(1.0, float(np.max(np.abs(expected))))
    return ExportCheck(max_abs_diff=diff, tolerance=atol * scale, batch_size=batch_size)


def run_onnx(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX file once on ONNX Runtime's CPU provider (for checks, not for timing)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


DYNAMIC_CHECK_BATCH = 3  # a dynamic-batch simplification is checked at a batch no graph is likely to bake in


def simplify_onnx(model: ModelSpec, src: Path, dst: Path, batch_size: int | None, atol: float = 1e-4) -> ExportCheck:
    """onnxsim ``src`` with the batch fixed at ``batch_size`` (``None``: left dynamic, checked at batch
    ``DYNAMIC_CHECK_BATCH``) into ``dst``, and check it still agrees with ``src``."""
    import onnxsim

    from .onnx_shared import load_shared, save_shared

    if batch_size is None:  # one graph for every batch size: the batch axis stays as exported
        simplified, ok = onnxsim.simplify(load_shared(src))
        batch_size = DYNAMIC_CHECK_BATCH
    else:
        shapes = {name: [batch_size, *model.input_shape] for name in model.input_names}
        simplified, ok = onnxsim.simplify(load_shared(src), overwrite_input_shapes=shapes)
    if not ok:
        raise CheckError(f"onnxsim could not validate the simplified model of {model.name!r} at batch {batch_size}")
    with writing(dst):
        save_shared(simplified, dst)  # tensors beside it, one file each, named by content: stored once
    feed = {name: sample_input(model, batch_size, seed=2) for name in model.input_names}
    check = compare_outputs(f"simplified ONNX of {model.name!r} at batch {batch_size}",
                            {"the exported ONNX": run_onnx(src, feed), "the simplified ONNX": run_onnx(dst, feed)},
                            atol, batch_size, note="the ONNX file's weights hold NaN or infinity, or are so large "
                            "that the outputs overflow float32; export it again from a sound checkpoint")
    if check.max_abs_diff > check.tolerance:
        raise CheckError(
            f"simplified ONNX of {model.name!r} at batch {batch_size} differs from the exported one by "
            f"{check.max_abs_diff:.3g} (tolerance {check.tolerance:.3g})",
            note="the model's graph may bake the batch size into a reshape; export with -1 for the batch axis",
        )
    return check
