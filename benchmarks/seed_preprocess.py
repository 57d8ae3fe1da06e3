"""The seed's single-process preprocessing script, re-implemented from its documented steps: the baseline rate.

``python resnest_preprocess.py ./imagenet/val ./prep_dataset`` in the Ascend ModelZoo guide for ResNeSt-50
(``/work/shared/ascend-tools.md`` section 1, "Preprocessing, exactly"). For every entry of the input folder, as
the folder lists it (unsorted, unfiltered), in one process:

1. open with Pillow and ``.convert('RGB')``;
2. resize to the fixed size 256x256 (aspect ratio not kept), bilinear;
3. ``np.array(..., dtype=np.float32)`` (HWC), keep rows and columns ``[16:240]`` (the 224x224 centre);
4. divide by 255, then subtract the mean and divide by the std per channel, in float32, in place;
5. transpose to CHW and ``tofile`` it as raw float32 (602,112 bytes, no batch axis) to
   ``<dst>/<name up to its first dot>.bin``.

Only the progress bar (tqdm) is left out. No part of ``zoo`` is imported: this is the thing zoo is measured against.

    python benchmarks/seed_preprocess.py SRC_DIR DST_DIR [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

SIZE = (256, 256)  # the squash size, (width, height)
CROP = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _centre(array: np.ndarray, height: int, width: int) -> np.ndarray:
    rows, cols, _ = array.shape
    top, left = int((rows - height) / 2), int((cols - width) / 2)
    return array[top : top + height, left : left + width]


def preprocess_one(src: str) -> np.ndarray:
    """One image as the seed script prepares it: float32, CHW (a transposed view, as the script leaves it)."""
    image = Image.open(src).convert("RGB")
    image = image.resize(SIZE, Image.BILINEAR)
    array = np.array(image, dtype=np.float32)
    array = _centre(array, CROP, CROP)  # [16:240, 16:240]
    array = array / 255.0
    for channel in range(3):
        array[..., channel] -= MEAN[channel]
    for channel in range(3):
        array[..., channel] /= STD[channel]
    return array.transpose(2, 0, 1)


def seed_preprocess(src_dir: str | os.PathLike[str], dst_dir: str | os.PathLike[str]) -> int:
    """Preprocess every entry of ``src_dir`` into ``dst_dir`` as ``<stem>.bin``; returns the number written."""
    src_dir, dst_dir = os.path.abspath(src_dir), os.path.abspath(dst_dir)
    names = os.listdir(src_dir)
    if not os.path.exists(dst_dir):
        os.makedirs(dst_dir)
    for name in names:
        chw = preprocess_one(os.path.join(src_dir, name))
        chw.tofile(os.path.join(dst_dir, name.split(".")[0] + ".bin"))
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src_dir", help="folder of images (every entry is read)")
    parser.add_argument("dst_dir", help="folder for the .bin files (created if missing)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    count = seed_preprocess(args.src_dir, args.dst_dir)
    seconds = time.perf_counter() - start
    rate = count / seconds if seconds > 0 else float("inf")
    if args.json:
        print(json.dumps({"images": count, "seconds": round(seconds, 4), "images_per_s": round(rate, 2)}))
    else:
        print(f"seed preprocessing: {count} images in {seconds:.3f} s, {rate:.1f} images/s (1 process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
