"""Precision as a stage: the calibration set a quantizer reads, and the accuracy a precision costs.

A run asking ``--precision int8`` calibrates on images preprocessed exactly as for evaluation (the first
``--calib-images`` of ``--calib``, else of ``--data``), stored once as a cached ``calibrate`` artifact keyed by
the images' content; each backend's ``zoo_quantize`` then reads it in whole batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import numpy as np

    from .app import Zoo
    from .progress import Progress
    from .specs import BackendSpec, ModelSpec, RunOptions

CALIBRATION_FILE = "calibration.npy"
RANDOM = "random"  # --calib random: seeded noise, for performance only
BIN_NAME = "batch-{:06d}.bin"  # `zoo calibrate` writes the set as whole batches under these names


@dataclass(frozen=True)
class Calibration:
    """The calibration set a quantizer reads: preprocessed inputs of the model's ONNX graph, in dataset order.

    ``path`` is a ``.npy`` file of shape ``(images, *input_shape)`` (float32, what the ONNX input takes: the
    model's preprocessing in full, never a backend's narrower input such as AIPP's uint8 images)."""

    path: Path
    input_name: str  # the ONNX input it feeds
    images: int
    method: str | None  # the --calib-method asked for (None: the backend's quantizer takes none)
    source: str  # the folder the images came from, or "random"
    sha256: str  # of the array's bytes: what the quantize stage is keyed by

    @property
    def random(self) -> bool:
        """Calibrated on noise (``--calib random``): the results are for performance only."""
        return self.source == RANDOM

    def array(self) -> np.ndarray:
        """The whole set, memory-mapped (read-only)."""
        import numpy as np

        return np.load(self.path, mmap_mode="r")

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The set in whole batches of ``batch_size`` (float32, C-contiguous copies); the images past the last
        whole batch are left out. The core makes sure there is at least one whole batch."""
        import numpy as np

        array = self.array()
        for start in range(0, len(array) - batch_size + 1, batch_size):
            yield np.ascontiguousarray(array[start : start + batch_size], dtype=np.float32)

    def batch_count(self, batch_size: int) -> int:
        return self.images // batch_size

    def write_bins(self, folder: Path, batch_size: int) -> list[Path]:
        """The set as whole-batch raw float32 files ``batch-000000.bin``, ... in ``folder`` (AMCT's
        ``--data_dir``: one file per batch, read in sorted order)."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, batch in enumerate(self.batches(batch_size)):
            path = folder / BIN_NAME.format(i)
            batch.tofile(path)
            written.append(path)
        return written

    def describe(self) -> dict[str, Any]:
        """What results.json records of it."""
        return {"source": self.source, "images": self.images, "method": self.method, "sha256": self.sha256}

    @classmethod
    def from_array(cls, array: np.ndarray, folder: Path, input_name: str, method: str | None = None,
                   source: str = "array") -> "Calibration":
        """A calibration set of ``array`` (images first), saved as ``folder/calibration.npy``: for scripts and tests
        that quantize outside a run."""
        import numpy as np

        folder.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array, dtype=np.float32)
        path = folder / CALIBRATION_FILE
        np.save(path, array)
        return cls(path, input_name, len(array), method, source, hashlib.sha256(array.tobytes()).hexdigest())


# -------------------------------------------------------------------------
# What a run asks for: the precisions, the calibration set and the method, checked before anything is built
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionPlan:
    """The precisions of a run, in order, and what quantizing them needs."""

    precisions: tuple[str, ...]
    quantized: tuple[str, ...]  # those made by zoo_quantize from a calibration set
    method: str | None  # the calibration method the backend's quantizer gets
    source: str | None  # the calibration folder, or "random"; None when nothing is quantized
    images: int

    @property
    def reference(self) -> str | None:
        """The precision the others' accuracy cost is measured against: fp32, when the run has it beside another."""
        return "fp32" if "fp32" in self.precisions and len(self.precisions) > 1 else None


def plan_precisions(backend: BackendSpec, options: RunOptions) -> PrecisionPlan:
    """The run's precisions on ``backend``, or a one-line usage error for what the backend cannot do or a
    calibration the run cannot have."""
    from .errors import UsageError
    from .specs import QUANTIZED

    asked = options.precisions or backend.precisions[:1]
    for precision in asked:
        if precision not in backend.precisions:
            raise UsageError(f"--precision {precision}: backend {backend.name!r} computes in "
                             f"{', '.join(backend.precisions)} only",
                             note=f"choose from {', '.join(backend.precisions)}, or another --backend "
                             "(docs/precision.md lists what each backend supports)")
    quantized = tuple(p for p in asked if p in QUANTIZED)
    if not quantized:
        from .specs import DEFAULTS

        images = options.calib_images if options.calib_images != DEFAULTS["calib_images"] else None
        for flag, value in (("--calib", options.calib), ("--calib-method", options.calib_method),
                            ("--calib-images", images)):
            if value is not None:
                raise UsageError(f"{flag} is for a quantized precision, and this run asks for "
                                 f"{', '.join(asked)}", note=f"add --precision int8, or drop {flag}")
        return PrecisionPlan(asked, (), None, None, options.calib_images)
    method = options.calib_method
    if method is not None and method not in backend.calib_methods:
        offered = ", ".join(backend.calib_methods)
        raise UsageError(f"--calib-method {method}: the quantizer of backend {backend.name!r} "
                         + (f"offers {offered}" if offered else "takes no calibration method"),
                         note=f"choose from {offered}" if offered else "drop --calib-method")
    if method is None and backend.calib_methods:
        method = backend.calib_methods[0]
    source = options.calib if options.calib is not None else (str(options.data) if options.data else None)
    if source is None:
        raise UsageError(f"--precision {quantized[0]} needs images to calibrate on, and this run has none",
                         note="pass --calib DIR (or --data DIR, whose first --calib-images images calibrate), "
                         "or --calib random for a performance-only run")
    if options.calib_images < 1:
        raise UsageError(f"--calib-images: {options.calib_images} must be at least 1",
                         note="leave it out for 512 images")
    smallest = max(options.batch_sizes)
    if options.calib_images < smallest:
        raise UsageError(f"--calib-images {options.calib_images} is fewer than batch size {smallest}: the "
                         "quantizer reads whole batches", note=f"pass --calib-images {smallest} or more")
    return PrecisionPlan(asked, quantized, method, source, options.calib_images)


def export_opset(backend: BackendSpec, options: RunOptions, plan: PrecisionPlan) -> int:
    """The opset to export at: the run's, raised to what the backend's quantizer needs when one runs."""
    if plan.quantized and backend.quantize_opset and options.opset < backend.quantize_opset:
        return backend.quantize_opset
    return options.opset


def check_quantize_opset(backend: BackendSpec, onnx_path: Path, options: RunOptions) -> None:
    """A model below the opset the backend's quantizer needs (an ``--onnx`` file: zoo's own export is made at
    that opset) is one line, not the quantizer's traceback on an invalid graph."""
    if not backend.quantize_opset:
        return
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset < backend.quantize_opset:
        from .errors import ZooError

        given = f"--onnx {options.onnx}" if options.onnx is not None else "the model"
        raise ZooError(f"{given} is ONNX opset {opset}; the int8 quantizer of backend {backend.name!r} needs opset "
                       f"{backend.quantize_opset} or later",
                       note=f"export it again at --opset {backend.quantize_opset} (zoo export MODEL --opset "
                       f"{backend.quantize_opset}), or leave --onnx out")


# -------------------------------------------------------------------------
# The calibration set: a cached stage of its own, keyed by the images' content
# -------------------------------------------------------------------------


def calibration_images(folder: Path, count: int, flag: str = "--calib") -> list[Path]:
    """The first ``count`` images of ``folder`` in natural order: those directly in it, else those of its class
    folders (folder by folder, in name order). Labels are not needed to calibrate. ``flag``: the option that
    named the folder, for the errors."""
    from .datasets import scan, shown_name
    from .errors import ZooError

    if not folder.exists():
        raise ZooError(f"calibration data folder not found: {shown_name(str(folder))}",
                       note=f"pass a folder of images with {flag}, or --calib random for a performance-only run")
    if not folder.is_dir():
        raise ZooError(f"{flag} must be a folder: {shown_name(str(folder))}",
                       note=f"pass the folder that holds the images with {flag}")
    listing = scan(folder)
    images = list(listing.images)
    if not images:
        for sub in listing.folders:
            images += scan(sub).images
            if len(images) >= count:
                break
    if not images:
        raise ZooError(f"no image to calibrate on in {shown_name(str(folder))}",
                       note="pass a folder of images (or of class folders of images) with --calib")
    return images[:count]


def calibrate(zoo: Zoo, model: ModelSpec, options: RunOptions, plan: PrecisionPlan,
              progress: Progress) -> Calibration:
    """The calibration set of the run, from the cache or built now."""
    import numpy as np

    from .datasets import shown_name
    from .errors import ZooError
    from .evaluate import _preprocessing_versions
    from .files import sha256_file

    assert plan.source is not None  # plan_precisions asks for one
    shape = tuple(model.input_shape)
    if plan.source == RANDOM:
        inputs: dict[str, Any] = {"random": True, "seed": options.seed, "images": plan.images, "shape": shape}
        paths: list[Path] = []
    else:
        flag = "--calib" if options.calib is not None else "--data"
        paths = calibration_images(Path(plan.source), plan.images, flag)
        batch = max(options.batch_sizes)
        if len(paths) < batch:  # no whole batch: the quantizers read whole batches (ONNX Runtime's crashed on none)
            raise ZooError(f"{flag} {shown_name(plan.source)} has {len(paths)} image{'s' * (len(paths) != 1)}, "
                           f"fewer than batch size {batch}: the quantizer reads whole batches",
                           note=f"calibrate on a folder of {batch} images or more, or run a smaller --bs")
        inputs = {"model": model.to_dict(), "preset": options.preset, "preprocess": _preprocessing_versions(zoo, model),
                  "images": [sha256_file(p) for p in paths]}  # by content: a renamed copy calibrates alike

    def build(folder: Path) -> None:
        with zoo.timer.stage("calibrate"):
            target = folder / CALIBRATION_FILE
            if not paths:
                rng = np.random.default_rng(options.seed)
                np.save(target, rng.standard_normal((plan.images, *shape), dtype=np.float32))
                return
            _preprocess_into(zoo, model, options, paths, target, progress)

    count = plan.images if not paths else len(paths)
    with progress.stage(f"calibration set: {count} images from {shown_name(plan.source)}") as done:
        artifact = zoo.store.get_or_build("calibrate", inputs, build)
        done("cached" if artifact.cached else "built")
    path = artifact.file(CALIBRATION_FILE)
    array = np.load(path, mmap_mode="r")
    if not np.isfinite(array).all():
        raise ZooError("the calibration set holds NaN or infinity after preprocessing",
                       note="check the images and the model's preprocessing (zoo info MODEL)")
    return Calibration(path, model.input_names[0], len(array), plan.method, plan.source, sha256_file(path))


def _preprocess_into(zoo: Zoo, model: ModelSpec, options: RunOptions, paths: list[Path], target: Path,
                     progress: Progress) -> None:
    """The images, preprocessed as for evaluation with the ONNX model's own input (the run's preset), written
    into one .npy in order."""
    from .datasets import Sample, text_of
    from .evaluate import preprocess_array

    samples = [Sample(text_of(p.stem), p, None) for p in paths]
    array = preprocess_array(zoo, model, options, samples, target, "calibration image",
                             "remove or replace the file, or calibrate on another folder with --calib", progress)
    del array


# -------------------------------------------------------------------------
# The accuracy a precision costs
# -------------------------------------------------------------------------


def accuracy_cost(reference: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """What ``other`` costs against ``reference`` (two evaluations of the same images): the top-1/top-5
    difference in points, and the share of images whose top-1 class is the same."""
    import numpy as np

    ref, got = np.asarray(reference["predicted"]), np.asarray(other["predicted"])
    if ref.shape != got.shape or list(reference["ids"]) != list(other["ids"]):
        raise RuntimeError("two precisions' evaluations scored different images")  # the same dataset: a bug
    cost: dict[str, Any] = {"agreement": float((ref == got).mean()) if len(ref) else None}
    for key in ("top1", "top5"):
        a, b = reference.get(key), other.get(key)
        cost[f"{key}_points"] = None if a is None or b is None else round(100 * (b - a), 6)
    return cost
