"""A test plugin: a metrics plugin whose metric comes out NaN (a bug zoo must not print as a result)."""

from __future__ import annotations

from zoo_core import hookimpl


@hookimpl
def zoo_metrics(model, outputs, labels):
    return {"mean_confidence": {"per_class": [0.5, float("nan")]}}
