"""ResNet configurations, timm-style: family defaults in ``_cfg`` and one small entry per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_core.preprocessing import Preprocessing, Resize
from zoo_core.specs import Accuracy, ModelSpec, WeightsSpec

_URL = "https://download.pytorch.org/models/{file_name}"
_HERE = Path(__file__).resolve().parent

# The Ascend ModelZoo recipe's host side: decode, RGB, squash to 256x256 (bilinear), uint8 HWC. The chip's static
# AIPP (aipp_resnet50.cfg) then crops [16:240] and normalises: the core's "modelzoo" preset done on the chip.
AIPP = Preprocessing("aipp", steps=(Resize("squash", crop_fraction=0.875, rounding="round", interpolation="bilinear"),),
                     scale=None, normalize=False, dtype="uint8", layout="HWC",
                     description="squash to 256x256 bilinear, uint8 HWC: the chip's AIPP crops and normalises")


def _cfg(name: str, hash8: str, layers: list[int], top1: float, **overrides: Any) -> ModelSpec:
    file_name = f"{name}-{hash8}.pth"
    settings: dict[str, Any] = dict(
        name=name,
        family="resnet",
        factory="zoo_resnet.model:build_resnet",
        factory_kwargs={"layers": tuple(layers)},
        input_names=("actual_input_1",),
        input_shape=(3, 224, 224),
        output_names=("output1",),
        num_classes=1000,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        preset="modelzoo",
        presets=("modelzoo", AIPP),
        opset=11,
        weights=WeightsSpec(url=_URL.format(file_name=file_name), sha256_prefix=hash8, file_name=file_name),
        license="BSD-3-Clause",
        reference_accuracy=Accuracy(top1=top1, source="torchvision IMAGENET1K_V1 weights, torchvision's evaluation"),
        description=f"ResNet v1.5 (stride on the 3x3 conv), layers {layers}, torchvision-compatible weights",
        # The Ascend ModelZoo recipe: the compiled model takes 256x256 RGB uint8 images (NHWC) and its AIPP
        # crops and normalises them on the chip; the host only decodes and resizes ("aipp" preset).
        backend_inputs={"ascend": {"shape": (256, 256, 3), "dtype": "uint8", "format": "NHWC", "preset": "aipp"}},
        backend_args={"ascend": {"insert_op_conf": str(_HERE / f"aipp_{name}.cfg")}},
    )
    settings.update(overrides)
    return ModelSpec(**settings)


MODELS = (_cfg("resnet50", "0676ba61", [3, 4, 6, 3], 0.7613),)
