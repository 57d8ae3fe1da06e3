"""The names of ais_bench's output files: an input's name cut at its first dot (zoo score and the dry run's recipe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ZooError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..datasets import Sample


def output_key(stem: str) -> str:
    """The stem of an image's output files: its ``zoo preprocess`` input ``<stem>.bin`` cut at the first dot."""
    return stem.split(".", 1)[0]


def samples_by_output_key(samples: Sequence[Sample]) -> dict[str, Sample]:
    """Each image by the stem of its ais_bench outputs, or one error naming two images whose outputs would share a
    name (and overwrite each other)."""
    keys: dict[str, Sample] = {}
    for sample in samples:
        key = output_key(sample.path.stem)
        if key in keys:
            raise ZooError(f"images {keys[key].path.name} and {sample.path.name} both give ais_bench outputs named "
                           f"{key}_0", note="rename one of them (ais_bench cuts an input's name at its first dot)")
        keys[key] = sample
    return keys
