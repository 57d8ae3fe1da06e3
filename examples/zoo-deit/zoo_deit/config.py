"""DeiT configurations, timm-style: family defaults in ``_cfg`` and one small entry per variant."""

from __future__ import annotations

from typing import Any

from zoo_core.api import Accuracy, CenterCrop, ModelSpec, Preprocessing, Resize, WeightsSpec

_URL = "https://dl.fbaipublicfiles.com/deit/{file_name}"

# DeiT's own evaluation transform (its datasets.py): Resize(int(224 / 0.875)) bicubic on the short side,
# CenterCrop(224), ToTensor, Normalize. (timm's pretrained_cfg says crop_pct 0.9; the published 72.2 is DeiT's.)
REFERENCE = Preprocessing(
    "reference",
    steps=(Resize("short_side", crop_fraction=0.875, rounding="floor", interpolation="bicubic"),
           CenterCrop(rounding="round")),
    description="DeiT's evaluation: short side to floor(224/0.875)=256 bicubic, centre crop 224 (torchvision "
                "rounding), /255, mean/std, CHW float32",
)


def _cfg(name: str, hash8: str, top1: float, **overrides: Any) -> ModelSpec:
    file_name = f"{name}-{hash8}.pth"
    settings: dict[str, Any] = dict(
        name=name,
        family="deit",
        factory="zoo_deit.model:build_deit",
        input_names=("input",),
        input_shape=(3, 224, 224),
        output_names=("output",),
        num_classes=1000,
        mean=(0.485, 0.456, 0.406),  # timm's IMAGENET_DEFAULT_MEAN
        std=(0.229, 0.224, 0.225),  # timm's IMAGENET_DEFAULT_STD
        preset="reference",
        presets=(REFERENCE,),
        # 17: the first opset with LayerNormalization as one operator. At 11..16 the exporter spells each
        # LayerNorm out in 9 nodes, whose Pow(x - mean, 2) overflows float16 once |x - mean| > 255 (if run in fp16).
        opset=17,
        weights=WeightsSpec(url=_URL.format(file_name=file_name), sha256_prefix=hash8, file_name=file_name),
        license="Apache-2.0",
        reference_accuracy=Accuracy(top1=top1, source="DeiT paper (Touvron et al., 2021) and its release"),
    )
    settings.update(overrides)
    return ModelSpec(**settings)


MODELS = (
    _cfg("deit_tiny_patch16_224", "a1311bcf", 0.722,
         description="DeiT-Tiny: ViT with 16x16 patches, width 192, 12 blocks of 3 heads, class token; "
                     "timm-compatible weights from the DeiT release"),
)
