"""The ResNeSt architecture in plain torch, state_dict-compatible with the official checkpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 -- PyTorch's own spelling
from torch import nn

__all__ = [
    "Bottleneck",
    "ResNeSt",
    "SplitAttentionConv",
    "build_resnest",
    "resnest50",
    "resnest101",
    "resnest200",
    "resnest269",
]

EXPANSION = 4  # a bottleneck block widens its output to 4x its planes
REDUCTION = 4  # the attention's hidden width is the input width x radix / REDUCTION ...
MIN_ATTENTION_WIDTH = 32  # ... but never below this


def _total(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The elementwise sum of same-shaped tensors, without the ``0 +`` that ``sum()`` would trace into the graph."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class SplitAttentionConv(nn.Module):
    """A 3x3 convolution into ``radix`` branches, recombined by a per-channel softmax attention over them.

    Every reshape keeps the batch dimension as ``-1`` and spells out the (static) channel counts, so the
    exported ONNX graph stays batch-dynamic, even after onnxsim fixes the input shape.
    """

    def __init__(self, channels: int, radix: int = 2, groups: int = 1) -> None:
        super().__init__()
        if radix < 2:
            raise ValueError(f"split attention needs radix >= 2, got {radix}")
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups})")
        self.channels = channels
        self.radix = radix
        self.groups = groups
        hidden = max(channels * radix // REDUCTION, MIN_ATTENTION_WIDTH)
        hidden += -hidden % groups  # a grouped 1x1 conv needs a width divisible by the groups
        # Attribute names and their order are those of the official checkpoints' keys.
        self.conv = nn.Conv2d(channels, channels * radix, 3, padding=1, groups=groups * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, hidden, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels * radix, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve into branches, attend over them, and return their weighted sum (``channels`` wide)."""
        x = F.relu(self.bn0(self.conv(x)))
        branches = torch.split(x, self.channels, dim=1)
        pooled = F.adaptive_avg_pool2d(_total(branches), 1)
        logits = self.fc2(F.relu(self.bn1(self.fc1(pooled))))
        weights = torch.split(self._radix_softmax(logits), self.channels, dim=1)
        return _total([w * b for w, b in zip(weights, branches, strict=True)])

    def _radix_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax across the radix branches of each channel; ``(N, radix*C, 1, 1)`` in and out, radix-major."""
        per_group = self.channels // self.groups
        x = logits.reshape(-1, self.groups, self.radix, per_group).transpose(1, 2)
        return F.softmax(x, dim=1).reshape(-1, self.radix * self.channels, 1, 1)


class Bottleneck(nn.Module):
    """A ResNeSt bottleneck: 1x1 conv, split-attention 3x3 conv, 3x3 average pool when striding, 1x1 conv."""

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        radix: int = 2,
        groups: int = 1,
        bottleneck_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (bottleneck_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # The stride moves from the 3x3 conv into an average pool after it (ResNet-D's "avd").
        self.avd: nn.Module = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv2 = SplitAttentionConv(width, radix=radix, groups=groups)
        self.conv3 = nn.Conv2d(width, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block and add the (possibly downsampled) shortcut."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.avd(self.conv2(out))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The projection shortcut: average-pool by the stride, then a 1x1 conv and BN (keys ``1.*`` and ``2.*``)."""
    pool: nn.Module = (
        nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    )
    return nn.Sequential(
        pool,
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResNeSt(nn.Module):
    """ResNeSt: a deep 3-conv stem, four stages of split-attention bottlenecks, global average pool, linear head."""

    def __init__(
        self,
        layers: Sequence[int],
        stem_width: int = 32,
        planes: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 1000,
        radix: int = 2,
        groups: int = 1,
        bottleneck_width: int = 64,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(planes) != 4:
            raise ValueError(f"ResNeSt has four stages: got layers={list(layers)}, planes={list(planes)}")
        block_args = {"radix": radix, "groups": groups, "bottleneck_width": bottleneck_width}
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width * 2, 3, padding=1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(stem_width * 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem_width * 2
        stages = []
        for index, (depth, width) in enumerate(zip(layers, planes, strict=True)):
            stage = self._make_stage(channels, width, depth, stride=1 if index == 0 else 2, block_args=block_args)
            stages.append(stage)
            channels = width * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    @staticmethod
    def _make_stage(
        in_channels: int, planes: int, depth: int, stride: int, block_args: dict[str, int]
    ) -> nn.Sequential:
        """A stage of ``depth`` blocks; the first one strides and, where shapes change, projects the shortcut."""
        out_channels = planes * EXPANSION
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = _shortcut(in_channels, out_channels, stride)
        blocks = [Bottleneck(in_channels, planes, stride, downsample, **block_args)]
        blocks += [Bottleneck(out_channels, planes, **block_args) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        """He-normal convolutions (fan-out, std sqrt(2/(k*k*out))), BN as identity; the head keeps torch's default.

        The last BN of each residual branch starts at 0.1: with unit gammas the activations of the deep variants
        (resnest200/269, seeded random weights) grow into the thousands and float32 ONNX Runtime no longer
        agrees with PyTorch. Loaded weights replace all of this; it draws no random numbers.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.constant_(module.bn3.weight, 0.1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, ``(N, planes[-1]*4, H/32, W/32)``."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(N, num_classes)``."""
        pooled = F.adaptive_avg_pool2d(self.forward_features(x), 1)
        return self.fc(torch.flatten(pooled, 1))


def build_resnest(
    layers: Sequence[int],
    stem_width: int = 32,
    planes: Sequence[int] = (64, 128, 256, 512),
    num_classes: int = 1000,
    radix: int = 2,
    groups: int = 1,
    bottleneck_width: int = 64,
) -> ResNeSt:
    """A ResNeSt of any depth and width; the named variants below are the published configurations."""
    return ResNeSt(
        layers,
        stem_width=stem_width,
        planes=planes,
        num_classes=num_classes,
        radix=radix,
        groups=groups,
        bottleneck_width=bottleneck_width,
    )


def resnest50(num_classes: int = 1000) -> ResNeSt:
    """ResNeSt-50 (2s1x64d), as in the paper and the official checkpoint ``resnest50-528c19ca.pth``."""
    return build_resnest([3, 4, 6, 3], stem_width=32, num_classes=num_classes)


def resnest101(num_classes: int = 1000) -> ResNeSt:
    """ResNeSt-101 (2s1x64d), checkpoint ``resnest101-22405ba7.pth``."""
    return build_resnest([3, 4, 23, 3], stem_width=64, num_classes=num_classes)


def resnest200(num_classes: int = 1000) -> ResNeSt:
    """ResNeSt-200 (2s1x64d), checkpoint ``resnest200-75117900.pth``."""
    return build_resnest([3, 24, 36, 3], stem_width=64, num_classes=num_classes)


def resnest269(num_classes: int = 1000) -> ResNeSt:
    """ResNeSt-269 (2s1x64d), checkpoint ``resnest269-0cc87c48.pth``."""
    return build_resnest([3, 30, 48, 8], stem_width=64, num_classes=num_classes)
