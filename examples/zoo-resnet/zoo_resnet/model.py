"""ResNet (v1.5) in plain torch, state_dict-compatible with torchvision's ``resnet50`` and its checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Bottleneck", "ResNet", "build_resnet", "resnet50"]

EXPANSION = 4  # a bottleneck block widens its output to 4x its planes


class Bottleneck(nn.Module):
    """1x1 conv, 3x3 conv carrying the stride (the "v1.5" variant), 1x1 conv to ``planes * 4``, plus the shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        # Attribute names and their order are torchvision's, so that its checkpoints load with strict=True.
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block and add the (possibly projected) shortcut."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet: a 7x7 stem and max pool, four stages of bottlenecks, global average pool, linear head."""

    def __init__(
        self,
        layers: Sequence[int],
        planes: Sequence[int] = (64, 128, 256, 512),
        stem: int = 64,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(planes) != 4:
            raise ValueError(f"ResNet has four stages: got layers={list(layers)}, planes={list(planes)}")
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem
        stages = []
        for index, (depth, width) in enumerate(zip(layers, planes, strict=True)):
            stages.append(self._make_stage(channels, width, depth, stride=1 if index == 0 else 2))
            channels = width * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    @staticmethod
    def _make_stage(in_channels: int, planes: int, depth: int, stride: int) -> nn.Sequential:
        """``depth`` blocks; the first strides and, where shapes change, projects the shortcut (``downsample``)."""
        out_channels = planes * EXPANSION
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [Bottleneck(in_channels, planes, stride, downsample)]
        blocks += [Bottleneck(out_channels, planes) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        """Kaiming-normal convs (fan-out, relu), BN as identity; the head keeps torch's default (as torchvision)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, ``(N, planes[-1]*4, H/32, W/32)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(N, num_classes)``; ``flatten(x, 1)`` keeps the exported batch axis dynamic."""
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def build_resnet(
    layers: Sequence[int] = (3, 4, 6, 3),
    planes: Sequence[int] = (64, 128, 256, 512),
    stem: int = 64,
    num_classes: int = 1000,
) -> ResNet:
    """A bottleneck ResNet of any depth and width; the defaults are ResNet-50."""
    return ResNet(layers, planes=planes, stem=stem, num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 (v1.5), as torchvision's ``resnet50`` and its checkpoint ``resnet50-0676ba61.pth``."""
    return build_resnet((3, 4, 6, 3), num_classes=num_classes)
