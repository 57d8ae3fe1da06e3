"""The built-in classification metrics: top-1 and top-5 accuracy against integer labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from . import hookimpl

if TYPE_CHECKING:
    import numpy as np

    from .specs import ModelSpec


def topk_accuracy(outputs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The share of rows whose label is among the ``k`` highest scores (ties broken by class index)."""
    import numpy as np

    if len(outputs) == 0:
        return float("nan")
    k = min(k, outputs.shape[1])
    # A stable argsort of the negated scores: for equal scores the lower class index ranks first.
    top = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


@hookimpl
def zoo_metrics(model: ModelSpec, outputs: np.ndarray, labels: np.ndarray) -> Mapping[str, Any] | None:
    if outputs.ndim != 2 or outputs.shape[1] != model.num_classes:
        return None
    return {"top1": topk_accuracy(outputs, labels, 1), "top5": topk_accuracy(outputs, labels, 5)}
