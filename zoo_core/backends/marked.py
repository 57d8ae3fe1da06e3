"""Tensors a compile marks as extra outputs (``RunOptions.extra_outputs``, ``zoo debug``): checked against the ONNX
graph in one place, with the node and output index that make each, for the backends that return them."""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import UsageError


def producers(graph: Any) -> dict[str, tuple[str, int]]:
    """Each tensor a node of ``graph`` computes -> (that node's name, the tensor's output index)."""
    return {name: (node.name, index) for node in graph.node for index, name in enumerate(node.output) if name}


def check_marked(graph: Any, marks: tuple[str, ...], model: str, batch_size: int) -> dict[str, tuple[str, int]]:
    """The producer of every marked tensor (:func:`producers`); a one-line usage error for a name that is no node's
    output in ``graph`` (a graph input, an initializer, a misspelling)."""
    made = producers(graph)
    for name in marks:
        if name not in made:
            close = difflib.get_close_matches(name, list(made), n=1)
            raise UsageError(
                f"{name!r} is not a tensor computed by the simplified ONNX graph of {model} at batch {batch_size}, so "
                "it cannot be returned as an extra output",
                note=f"did you mean {close[0]!r}?" if close else
                "name the output tensor of a node of the simplified graph (as Netron shows it)")
    return made


def unique(names: tuple[str, ...]) -> list[str]:
    """``names`` without repeats, in first-seen order: what a compiled graph holds as outputs when a marked tensor
    is also a model output or is marked twice (the runner returns each name where it was asked)."""
    return list(dict.fromkeys(names))
