"""Host preprocessing per image, float32 (the model's preset) against the uint8 host side that --aipp derives.

With Ascend's ``--aipp`` the chip crops and normalises (static AIPP), and the host only decodes, converts to RGB and
resizes, keeping the 8-bit pixels (zoo_core/backends/ascend_aipp.py). Both sides run zoo's own executor
(``zoo_core.preprocessing.execute``) on the same images, in interleaved rounds (the order alternating), in this
one process; a side's time per image is the median over the rounds of (round time / images). Printed: each side's
time per image, the time ratio and the bytes-per-image ratio (what the host copies to the device per image).

    python benchmarks/aipp.py [--model resnest50] [--preset modelzoo] [--data DIR | --images 64] [--rounds 7] [--json]

Without ``--data``, seeded JPEGs of ImageNet validation sizes (short side 333 to 500, quality 90) are written to a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zoo_core.backends.ascend_aipp import derive
from zoo_core.environment import fingerprint
from zoo_core.preprocessing import execute
from zoo_core.runner import Zoo

SIDES = ("float32", "aipp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--preset", default="modelzoo")
    parser.add_argument("--data", type=Path, help="a folder of images (default: generated ones)")
    parser.add_argument("--images", type=int, default=64, help="generated images (default 64)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the lines")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.images < 1:
        parser.error("--rounds and --images must be at least 1")
    return args


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` seeded JPEGs of ImageNet-like sizes: smooth colour fields with noise, landscape or portrait."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        short, long = int(rng.integers(333, 501)), 500
        width, height = (long, short) if index % 3 else (short, long)
        cells = Image.fromarray(rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)).resize((width, height),
                                                                                        Image.Resampling.BICUBIC)
        noisy = np.clip(np.asarray(cells, np.int16) + rng.integers(-12, 13, (height, width, 3)), 0, 255)
        path = folder / f"image_{index:05d}.JPEG"
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def measure(model: Any, preset: str, paths: list[Path], rounds: int) -> dict[str, Any]:
    """Each side's seconds per image in every round, and its bytes per image."""
    declared = model.preprocessing(preset)
    host = derive(model, preset).host
    sides = {"float32": declared, "aipp": host}
    nbytes = {name: execute(d, model, paths[0]).nbytes for name, d in sides.items()}  # also warms both up
    seconds: dict[str, list[float]] = {name: [] for name in SIDES}
    for index in range(rounds):
        for name in SIDES if index % 2 == 0 else SIDES[::-1]:
            start = time.perf_counter()
            for path in paths:
                execute(sides[name], model, path)
            seconds[name].append((time.perf_counter() - start) / len(paths))
    per_image = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "model": model.name, "preset": preset, "host_preset": host.name, "images": len(paths), "rounds": rounds,
        "ms_per_image": {name: value * 1000 for name, value in per_image.items()},
        "ms_per_image_rounds": {name: [v * 1000 for v in values] for name, values in seconds.items()},
        "bytes_per_image": nbytes,
        "time_ratio": per_image["float32"] / per_image["aipp"],
        "bytes_ratio": nbytes["float32"] / nbytes["aipp"],
        "env": fingerprint(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = Zoo.create().registry.model(args.model)
    with tempfile.TemporaryDirectory(prefix="zoo-aipp-bench-") as scratch:
        if args.data is not None:
            paths = sorted(p for p in args.data.iterdir() if p.is_file() and p.suffix.lower() in (".jpeg", ".jpg",
                                                                                                ".png"))
            if not paths:
                print(f"no .jpeg, .jpg or .png image in {args.data}", file=sys.stderr)
                return 2
        else:
            paths = write_images(Path(scratch), args.images)
        result = measure(model, args.preset, paths, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ms, nbytes = result["ms_per_image"], result["bytes_per_image"]
    print(f"{result['model']}, preset {result['preset']} vs {result['host_preset']}: {result['images']} images, "
          f"{result['rounds']} interleaved rounds (median)")
    for name in SIDES:
        print(f"  {name:8s} {ms[name]:7.3f} ms/image  {nbytes[name]:>9,d} bytes/image")
    print(f"  time ratio float32/aipp {result['time_ratio']:.2f}x, bytes ratio {result['bytes_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
