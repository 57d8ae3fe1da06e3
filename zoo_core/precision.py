"""Precision as a stage: the calibration set a quantizer reads, and the accuracy a precision costs.

A run asking ``--precision int8`` calibrates on images preprocessed exactly as for evaluation (the first
``--calib-images`` of ``--calib``, else of ``--data``), stored once as a cached ``calibrate`` artifact keyed by
the images' content; each backend's ``zoo_quantize`` then reads it in whole batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import numpy as np

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
