"""Building blocks shared by the zoo models (plain torch, no torchvision)."""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "relu6":
        return nn.ReLU6(inplace=True)
    if kind == "hswish":
        return nn.Hardswish(inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + activation, 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str = "relu"):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            activation(act),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in MobileNetV3 / OFA: GAP, reduce 4x, ReLU, expand, hard-sigmoid."""

    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        hidden = make_divisible(channels * ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.relu(self.reduce(s))
        return x * nn.functional.hardsigmoid(self.expand(s))


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2/V3, the block nn-Meter's look-up tables measure).

    expand 1x1 (skipped when ``expand == 1``) -> depthwise kxk with stride -> optional SE -> project 1x1;
    residual when the shape is kept.
    """

    def __init__(self, cin: int, cout: int, expand: int, stride: int, kernel: int, se: bool, act: str = "hswish"):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1, act=act))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(ConvBNAct(hidden, cout, 1, act="none"))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class ClassifierHead(nn.Module):
    """Global average pooling + linear classifier (optionally after a 1x1 conv widening)."""

    def __init__(self, cin: int, num_classes: int, hidden: int | None = None, act: str = "relu6", dropout: float = 0.0):
        super().__init__()
        self.conv = ConvBNAct(cin, hidden, 1, act=act) if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden or cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x.mean((2, 3))
        return self.fc(self.dropout(x))
