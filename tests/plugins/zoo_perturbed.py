"""A test plugin: a backend ``perturbed-cpu`` (ONNX Runtime underneath) whose first output changes its top-1 class
on the first sample of every batch, for ``zoo compare``'s agreement tests (tests/test_compare_agreement.py).

On that row the scores of the highest and the lowest class trade places, so the backend's top-1 differs from ONNX
Runtime's there (and its top-5 loses one class) while every other row is ONNX Runtime's own. With
``$ZOO_PERTURBED_DUMP`` set to a folder, each batch's clean and perturbed first output is saved there
(``batch-NNNN.npz``, padding rows included) for the test to recompute the agreement from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo_core import hookimpl
from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.specs import BackendSpec

NAME = "perturbed-cpu"


@hookimpl
def zoo_register_backends(register) -> None:
    register(BackendSpec(name=NAME, description="ONNX Runtime that flips the top-1 class of each batch's first "
                         "sample", priority=-100))


@hookimpl
def zoo_compile(backend, model, onnx_path, batch_size, workdir, options):
    compiled = ort_backend.zoo_compile(backend=backend, model=model, onnx_path=onnx_path, batch_size=batch_size,
                                       workdir=workdir, options=options)
    return compiled.__class__(**{**compiled.__dict__, "backend": NAME})


class PerturbedRunner(ort_backend.OnnxRuntimeRunner):
    batches = 0

    def _infer(self, feed: Any) -> Any:
        import numpy as np

        outputs = list(super()._infer(feed))
        clean = outputs[0]
        scores = clean.copy()
        best, worst = int(np.argmax(scores[0])), int(np.argmin(scores[0]))
        scores[0, best], scores[0, worst] = clean[0, worst], clean[0, best]
        outputs[0] = scores
        dump = os.environ.get("ZOO_PERTURBED_DUMP")
        if dump:
            np.savez(Path(dump) / f"batch-{type(self).batches:04d}.npz", clean=clean, perturbed=scores)
            type(self).batches += 1
        return outputs


@hookimpl
def zoo_infer(compiled, options):
    return PerturbedRunner(compiled, options.threads)
