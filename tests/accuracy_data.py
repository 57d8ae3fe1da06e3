"""A self-consistent ImageNet-style folder for end-to-end accuracy tests.

``make_selfconsistent_dataset`` writes JPEG images of varied sizes and content, a weights file, and a
``val_label.txt`` whose labels are the torch-eager predictions of the model with those weights under the
``modelzoo`` preprocessing. An accuracy run of the same model and weights must therefore score top-1 = 1.0;
reading the images in another order, cropping or normalising differently, or matching labels by position
instead of by file name breaks that.

A seeded random network as built is useless for this: it predicts one class for nearly every image, so a
test against its labels would be blind. Three steps make it a discriminating, yet numerically safe, oracle:

1. **Damped residual branches.** The last BatchNorm of every bottleneck (``bn3``) gets gamma = 0.1, as in the
   usual zero-init-residual practice. Without it, a random 16-block network whose BatchNorm statistics come from
   a few smooth images is chaotic: fp32 rounding grows through the depth (measured on resnest50: |fp32 - fp64|
   reaches 17 % of the output on the exporter's Gaussian check input, so ``zoo``'s export check fails, and ONNX
   Runtime and torch could disagree on the top-1). Damped, the same difference is below 1e-6 of the output
   on noise and about 5e-6 (absolute) on the image logits.
2. **BatchNorm calibrated on the images**: running statistics reset, cumulative averaging (``momentum=None``),
   one pass in train mode over all images, then eval mode.
3. **Standardised classifier**: the rows of ``fc`` are rescaled and its bias shifted so that each class's logit
   has mean 0 and standard deviation 1 over the images. Each image's top-1 is then the class it stands out for
   most, which spreads the predictions over many classes (resnest50, seed 0: 88 images kept of 96, 78 classes,
   none with more than 3 images; without this step about 20 classes, one of them taking a third of the images).

The label file lists the images in a seeded random order (matching must go by file name, not position).

Only images whose top-1 logit leads the runner-up by at least ``min_margin`` are kept; the others are deleted.
Standardised logits span about +-8; the measured |ONNX Runtime - torch| on them is at most 1.7e-5, so a flip
needs the margin to close by ~3.3e-5 and a margin of 0.02 leaves a factor of ~600; it still keeps ~90 % of the
images.

Preprocessing here is an independent implementation of the documented ``modelzoo`` steps
(``shared/ascend-tools.md`` section 1), not a call into the plugin, so that a wrong crop or normalisation in
the plugin's preset also shows up as top-1 < 1.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NAME = "ILSVRC2012_val_{:08d}.JPEG"
LABEL_FILE = "val_label.txt"
RESIDUAL_GAMMA = 0.1
MIN_IMAGES = 64
MIN_CLASSES = 8


@dataclass(frozen=True)
class SelfConsistent:
    """What the generator wrote, and the facts a test asserts on."""

    data: Path  # the image folder, with val_label.txt in it
    weights: Path  # the state_dict the labels were predicted with: pass it as --weights
    labels: dict[str, int]  # file stem -> class, natural (numeric) order
    classes: frozenset[int]
    margins: dict[str, float] = field(repr=False)  # file stem -> top-1 minus top-2 logit
    generated: int = 0  # images written before the margin filter
    min_margin: float = 0.0
    model: str = "resnest50"

    @property
    def names(self) -> list[str]:
        """The kept images' file names, in natural order."""
        return [f"{stem}.JPEG" for stem in self.labels]


# --------------------------------------------------------------------------------------------- images


def _smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random colour field: a coarse random grid upsampled bicubically (float32 HWC, 0..255)."""
    from PIL import Image

    cells = int(rng.integers(2, 12))
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC), dtype=np.float32)


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One image of a random kind: a colour field, overlaid stripes, blobs, grain or a gradient."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = _smooth_field(rng, height, width)
    kind = int(rng.integers(5))
    if kind == 1:  # stripes at a random angle and frequency
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.02, 0.3)
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * freq)[..., None] > 0
        base = 0.4 * base + 0.6 * np.where(wave, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3))
    elif kind == 2:  # flat-coloured discs
        for _ in range(int(rng.integers(2, 8))):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(15, 120)
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None]
            base = np.where(disc, rng.uniform(0, 255, 3), base)
    elif kind == 3:  # grain
        base = base + rng.normal(0, rng.uniform(10, 60), (height, width, 3))
    elif kind == 4:  # a linear gradient between two colours, over the field
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / width + np.sin(angle) * yy / height
        t = ((t - t.min()) / max(float(np.ptp(t)), 1e-6))[..., None]
        base = 0.5 * base + 0.5 * (rng.uniform(0, 255, 3) * (1 - t) + rng.uniform(0, 255, 3) * t)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` JPEGs (quality 90) of sizes 180..520 on each side; every 12th is greyscale ('L')."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = int(rng.integers(180, 521)), int(rng.integers(180, 521))
        img = Image.fromarray(_image(rng, height, width))
        if i % 12 == 5:
            img = img.convert("L")
        path = folder / NAME.format(i + 1)
        img.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def modelzoo_input(path: Path, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The documented ``modelzoo`` steps, written out independently of the plugin: RGB, squash to 256x256
    bilinear, crop [16:240], /255, mean/std, CHW float32 (the same proportions for other input sizes)."""
    from PIL import Image

    resize = round(size * 256 / 224)
    top = (resize - size) // 2
    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((resize, resize), Image.BILINEAR)
    hwc = np.asarray(rgb, dtype=np.float32)[top : top + size, top : top + size, :]
    hwc = (hwc / np.float32(255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)


# --------------------------------------------------------------------------------------------- model


def _prepared_model(spec, seed: int, inputs: np.ndarray):
    """The seeded random model, damped, BatchNorm-calibrated on ``inputs``, in eval mode; and the pooled
    features of every input (the classifier's input), computed in eval mode."""
    import torch

    from zoo_core.export import build_module
    from zoo_core.weights import resolve_weights

    module = build_module(spec, resolve_weights(spec, "random", seed=seed))
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for name, m in module.named_modules():
            if name.endswith("bn3") and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(RESIDUAL_GAMMA)
        for m in norms:
            m.momentum = None  # a cumulative average over all calibration batches
            m.reset_running_stats()
        module.train()
        for batch in torch.from_numpy(inputs).split(16):
            module(batch)
        module.eval()

        features: list[torch.Tensor] = []
        hook = module.fc.register_forward_pre_hook(lambda _m, args: features.append(args[0].detach().clone()))
        try:
            for batch in torch.from_numpy(inputs).split(16):
                module(batch)
        finally:
            hook.remove()
    return module, torch.cat(features)


def _standardise_classifier(fc, features) -> None:
    """Rescale and shift ``fc`` so each class's logit has mean 0 and std 1 over ``features``."""
    import torch

    with torch.no_grad():
        logits = fc(features)
        mean, std = logits.mean(0), logits.std(0).clamp_min(1e-6)
        fc.weight.div_(std[:, None])
        fc.bias.sub_(mean).div_(std)


# --------------------------------------------------------------------------------------------- dataset


def make_selfconsistent_dataset(
    root: Path,
    model: str = "resnest50",
    count: int = 96,
    seed: int = 0,
    min_margin: float = 0.02,
    *,
    min_images: int = MIN_IMAGES,
    min_classes: int = MIN_CLASSES,
) -> SelfConsistent:
    """Write ``root/data`` (JPEGs and ``val_label.txt``) and ``root/weights.pth``; see the module's docstring.

    Deterministic for a given ``seed``. If fewer than ``min_images`` images clear ``min_margin``, it starts over
    with half as many images again (at most three times)."""
    import torch

    root = Path(root)
    data = root / "data"
    torch.set_flush_denormal(True)  # a random network's tiny activations are denormal floats: 5x slower
    try:
        for _attempt in range(3):
            if data.exists():
                shutil.rmtree(data)
            data.mkdir(parents=True)
            result = _attempt_dataset(root, data, model, count, seed, min_margin)
            if len(result.labels) >= min_images:
                break
            count = count * 3 // 2
        else:
            raise AssertionError(f"only {len(result.labels)} of {count} images have a top-1 margin >= {min_margin}")
    finally:
        torch.set_flush_denormal(False)
    if len(result.classes) < min_classes:
        raise AssertionError(f"the labels span only {len(result.classes)} classes (< {min_classes}): a blind test")
    return result


def _attempt_dataset(root: Path, data: Path, model: str, count: int, seed: int, min_margin: float) -> SelfConsistent:
    import torch

    from zoo_core.plugins import Registry, get_plugin_manager

    spec = Registry(get_plugin_manager()).model(model)
    paths = write_images(data, count, seed)
    inputs = np.stack([modelzoo_input(p, spec.input_shape[-1], spec.mean, spec.std) for p in paths])
    module, features = _prepared_model(spec, seed, inputs)
    _standardise_classifier(module.fc, features)
    weights = root / "weights.pth"
    torch.save(module.state_dict(), weights)

    with torch.no_grad():
        logits = module.fc(features)  # the eager model's last layer, on its own pooled features
    top = logits.topk(2, dim=1)
    margins = (top.values[:, 0] - top.values[:, 1]).tolist()
    predictions = top.indices[:, 0].tolist()

    labels: dict[str, int] = {}
    kept_margins: dict[str, float] = {}
    for path, label, margin in zip(paths, predictions, margins, strict=True):
        if margin >= min_margin:
            labels[path.stem] = int(label)
            kept_margins[path.stem] = float(margin)
        else:
            path.unlink()
    write_labels(data / LABEL_FILE, labels, seed=seed)
    return SelfConsistent(model=model,
        data=data, weights=weights, labels=labels, classes=frozenset(labels.values()), margins=kept_margins,
        generated=count, min_margin=min_margin,
    )


def shifted_labels(labels: dict[str, int]) -> dict[str, int]:
    """The negative control: each image gets the next image's label (natural order, cyclic)."""
    stems = list(labels)
    return {stem: labels[stems[(i + 1) % len(stems)]] for i, stem in enumerate(stems)}


def write_labels(path: Path, labels: dict[str, int], seed: int = 0) -> None:
    """``val_label.txt`` in the seed's format (``<file name> <class>``), its lines in a seeded random order:
    labels must be matched to images by name, and a matcher that goes by position fails on this file."""
    stems = list(labels)
    order = np.random.default_rng(seed).permutation(len(stems))
    path.write_text("".join(f"{stems[i]}.JPEG {labels[stems[i]]}\n" for i in order))


if __name__ == "__main__":  # a standalone look: python tests/accuracy_data.py [ROOT]
    import sys
    import time

    start = time.perf_counter()
    out = make_selfconsistent_dataset(Path(sys.argv[1] if len(sys.argv) > 1 else "selfconsistent"))
    counts = np.bincount(list(out.labels.values()))
    margins = np.array(list(out.margins.values()))
    print(f"{time.perf_counter() - start:.1f} s: kept {len(out.labels)}/{out.generated} images, "
          f"{len(out.classes)} classes (largest {counts.max()} images), margins min {margins.min():.3f} "
          f"median {np.median(margins):.3f}; data {out.data}, weights {out.weights}")
