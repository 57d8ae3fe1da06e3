"""One check shared by the example plugins' tests: an exported ONNX file computes what its torch module computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo_core.export import run_onnx


def assert_onnx_matches_module(path: Path, module, input_name: str, sample_shape: tuple[int, ...],
                               classes: int, batches: tuple[int, ...] = (1, 3)) -> None:
    """Seeded inputs at each batch size (the batch axis is dynamic): same output shape, values within 1e-4."""
    import torch

    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, *sample_shape)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        actual = run_onnx(path, {input_name: x})[0]
        assert actual.shape == (batch, classes)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
