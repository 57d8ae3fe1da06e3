"""Task-level agreement for ``zoo compare``: top-1 agreement and top-5 overlap of class scores, and images as inputs."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from .app import Zoo
    from .progress import Progress
    from .specs import ModelSpec, RunOptions

TOP_K = 5


def classifies(output: np.ndarray, model: ModelSpec) -> bool:
    """Whether ``output`` holds class scores, (N, classes) with the model's number of classes."""
    return output.ndim == 2 and output.shape[1] == model.num_classes


def top_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest-scoring classes of each row, best first; equal scores rank by class index (as the
    top-1/top-5 accuracy does)."""
    import numpy as np

    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def agreement(actual: np.ndarray, expected: np.ndarray) -> tuple[float | None, float | None]:
    """``(top1_agreement, top5_overlap)`` of class scores against the reference's: the share of rows whose top-1
    class is the reference's, and the mean of |top5(actual) & top5(expected)| / 5 (k = the classes, when fewer).
    ``(None, None)`` when either side holds NaN or infinity (which ranks arbitrarily) or there is no row."""
    import numpy as np

    if len(actual) == 0 or not (np.isfinite(actual).all() and np.isfinite(expected).all()):
        return None, None
    k = min(TOP_K, actual.shape[1])
    a, b = top_classes(actual, k), top_classes(expected, k)
    top1 = float(np.mean(a[:, 0] == b[:, 0]))
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)]))
    return top1, overlap


def accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """``(top1, top5)`` of class scores against the labels; ``(None, None)`` where a score is not finite."""
    import numpy as np

    from .metrics import topk_accuracy

    if len(scores) == 0 or not np.isfinite(scores).all():
        return None, None
    return topk_accuracy(scores, labels, 1), topk_accuracy(scores, labels, TOP_K)


def check_min_agreement(value: object) -> None:
    """A usage error unless ``value`` is a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 or math.isnan(value):
        raise UsageError(f"--min-agreement: {value!r} is not a share from 0 to 1",
                         note="write e.g. --min-agreement 0.99 (99% of the samples keep the reference's top-1 class)")


# -------------------------------------------------------------------------
# Images as the compared inputs (--data)
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInputs:
    """The dataset's images preprocessed as the model's ONNX input, in natural order, and their labels."""

    inputs: np.ndarray  # (N, *input shape), a memory-mapped file that lives as long as the context
    labels: np.ndarray  # (N,) int64
    ids: list[str]


@contextmanager
def image_inputs(zoo: Zoo, model: ModelSpec, options: RunOptions, progress: Progress) -> Iterator[ImageInputs]:
    """The images of ``--data`` (``--labels``, ``--limit``), preprocessed with the run's preset as for evaluation,
    in a temporary file that is removed on exit. An unreadable image stops the comparison in one line."""
    import tempfile

    import numpy as np

    from .evaluate import load_dataset, preprocess_array

    dataset = load_dataset(zoo, model, options)
    samples = dataset.samples
    with tempfile.TemporaryDirectory(prefix="zoo-compare-") as folder:
        array = preprocess_array(zoo, model, options, samples, Path(folder) / "inputs.npy", "image",
                                 "remove or replace the file, or compare on another folder", progress)
        labels = np.asarray([s.label for s in samples], dtype=np.int64)
        yield ImageInputs(array, labels, [s.id for s in samples])
        del array
