"""ResNet-18 (He et al., CVPR 2016), cut at its four residual stages."""

from __future__ import annotations

import torch
from torch import nn

from kernels.blockwise import BlockwiseModel
from kernels.layers import ClassifierHead, ConvBNAct

EXIT_POINTS = ("layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride, act="relu")
        self.conv2 = ConvBNAct(cout, cout, 3, 1, act="none")
        self.down = ConvBNAct(cin, cout, 1, stride, act="none") if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.down(x))


def resnet18(num_classes: int = 1000, input_size: int = 224) -> BlockwiseModel:
    stem = nn.Sequential(ConvBNAct(3, 64, 7, 2, act="relu"), nn.MaxPool2d(3, 2, 1))
    blocks: list[tuple[str, nn.Module]] = [("stem", stem)]
    cin = 64
    for i, (c, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        blocks.append((f"layer{i}", nn.Sequential(BasicBlock(cin, c, s), BasicBlock(c, c, 1))))
        cin = c
    blocks.append(("head", ClassifierHead(cin, num_classes)))
    arch = {"kind": "resnet18", "num_classes": num_classes, "input_size": input_size}
    return BlockwiseModel("resnet18", blocks, EXIT_POINTS, (3, input_size, input_size), num_classes, arch)
