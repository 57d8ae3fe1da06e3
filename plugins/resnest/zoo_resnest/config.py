"""ResNeSt configurations, timm-style: family defaults in ``_cfg`` and one small entry per variant."""

from __future__ import annotations

from typing import Any

from zoo_core.api import Accuracy, ModelSpec, WeightsSpec

_URL = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/{name}-{hash8}.pth"


def _cfg(name: str, hash8: str, layers: list[int], stem_width: int, top1: float, **overrides: Any) -> ModelSpec:
    file_name = f"{name}-{hash8}.pth"
    settings: dict[str, Any] = dict(
        name=name,
        family="resnest",
        factory="zoo_resnest.model:build_resnest",
        factory_kwargs={"layers": tuple(layers), "stem_width": stem_width},
        input_names=("actual_input_1",),
        input_shape=(3, 224, 224),
        output_names=("output1",),
        num_classes=1000,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        preset="modelzoo",
        presets=("modelzoo", "reference"),
        opset=11,
        weights=WeightsSpec(url=_URL.format(name=name, hash8=hash8), sha256_prefix=hash8, file_name=file_name),
        license="Apache-2.0",
        reference_accuracy=Accuracy(top1=top1, source="zhanghang1989/ResNeSt, upstream evaluation (reference preset)"),
        description=f"ResNeSt split-attention network, layers {layers}",
    )
    settings.update(overrides)
    return ModelSpec(**settings)


MODELS = (
    _cfg("resnest50", "528c19ca", [3, 4, 6, 3], 32, 0.8103),
    # upstream evaluates resnest101 at 256
    _cfg("resnest101", "22405ba7", [3, 4, 23, 3], 64, 0.8283, input_shape=(3, 256, 256)),
    _cfg("resnest200", "75117900", [3, 24, 36, 3], 64, 0.8384, input_shape=(3, 320, 320)),
    _cfg("resnest269", "0cc87c48", [3, 30, 48, 8], 64, 0.8454, input_shape=(3, 416, 416)),
)
