"""MobileNetV2 (Sandler et al., CVPR 2018), width 1.0, cut into its seven inverted-residual stages."""

from __future__ import annotations

from torch import nn

from kernels.blockwise import BlockwiseModel
from kernels.layers import ClassifierHead, ConvBNAct, MBConv

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
EXIT_POINTS = ("ir2", "ir3", "ir4", "ir5", "ir6", "ir7")


def mobilenetv2(num_classes: int = 1000, input_size: int = 224) -> BlockwiseModel:
    blocks: list[tuple[str, nn.Module]] = [("stem", ConvBNAct(3, 32, 3, 2, act="relu6"))]
    cin = 32
    for i, (t, c, n, s) in enumerate(STAGES, start=1):
        layers = []
        for j in range(n):
            layers.append(MBConv(cin, c, t, s if j == 0 else 1, 3, se=False, act="relu6"))
            cin = c
        blocks.append((f"ir{i}", nn.Sequential(*layers)))
    blocks.append(("head", ClassifierHead(cin, num_classes, hidden=1280, act="relu6", dropout=0.2)))
    arch = {"kind": "mobilenetv2", "width": 1.0, "stages": STAGES, "num_classes": num_classes, "input_size": input_size}
    return BlockwiseModel("mobilenetv2", blocks, EXIT_POINTS, (3, input_size, input_size), num_classes, arch)
