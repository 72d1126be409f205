"""The reference CNN: a small MobileNet-style net for the procedural images, with exit points.

Its MBConv blocks (hard-swish, 16-48 channels, expansion 1-6, kernel 3 or 5) are chosen from the
configurations that nn-Meter's look-up tables measured on Pixel 4, Pixel 6 and Xiaomi 11, so that phone
latencies for them are measurements, not predictions. :func:`nnmeter_key` gives each block's key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from kernels.blockwise import BlockwiseModel
from kernels.layers import ClassifierHead, ConvBNAct, MBConv


@dataclass(frozen=True)
class MBConvSpec:
    cin: int
    cout: int
    expand: int
    stride: int
    kernel: int
    se: bool


@dataclass(frozen=True)
class RefNetConfig:
    """Architecture of the reference CNN.

    The defaults are the shipped model. Blocks b1-b5 (the 32x32 and 16x16 stages, ~55% of the MACs) are
    configurations nn-Meter measured on phones; the 8x8 stage (b6-b8) is not covered by its tables and
    gets predicted phone latencies. It is there for accuracy: without it, nearest-centre accuracy jumps
    from ~25% to ~90% in one block and the cache has no middle ground to work with.
    """

    input_size: int = 64
    stem: int = 16
    blocks: tuple[MBConvSpec, ...] = (
        MBConvSpec(16, 16, 2, 1, 3, False),  # b1 @32x32
        MBConvSpec(16, 32, 3, 2, 3, True),  # b2 @32x32 -> 16x16
        MBConvSpec(32, 32, 4, 1, 5, True),  # b3 @16x16
        MBConvSpec(32, 32, 4, 1, 5, True),  # b4 @16x16
        MBConvSpec(32, 32, 4, 1, 5, True),  # b5 @16x16
        MBConvSpec(32, 48, 4, 2, 5, True),  # b6 @16x16 -> 8x8 (not in nn-Meter's tables)
        MBConvSpec(48, 48, 6, 1, 5, True),  # b7 @8x8 (not in nn-Meter's tables)
        MBConvSpec(48, 48, 6, 1, 5, True),  # b8 @8x8 (not in nn-Meter's tables)
    )
    exits: tuple[str, ...] = ("b1", "b3", "b4", "b5", "b6", "b7")
    head_hidden: int = 384
    num_classes: int = 240

    def to_json(self) -> dict:
        d = asdict(self)
        d["blocks"] = [asdict(b) for b in self.blocks]
        d["exits"] = list(self.exits)
        return d

    @staticmethod
    def from_json(d: dict) -> "RefNetConfig":
        d = dict(d)
        d["blocks"] = tuple(MBConvSpec(**b) for b in d["blocks"])
        d["exits"] = tuple(d["exits"])
        return RefNetConfig(**d)


def block_input_sizes(config: RefNetConfig) -> list[int]:
    """Spatial input size (height = width) of each MBConv block."""
    hw = config.input_size // 2  # after the stride-2 stem
    sizes = []
    for b in config.blocks:
        sizes.append(hw)
        hw //= b.stride
    return sizes


def nnmeter_key(spec: MBConvSpec, input_hw: int) -> str:
    """The key of this block in nn-Meter's ``*_lut_ln_v3.json`` tables (see their PROVENANCE.txt)."""
    se = "se" if spec.se else "nose"
    return f"conv_{input_hw}_{spec.cin}_{spec.cout}_{spec.expand}_{spec.stride}_hard_swish_{spec.kernel}_{se}"


def refnet(config: RefNetConfig = RefNetConfig()) -> BlockwiseModel:
    blocks: list[tuple[str, nn.Module]] = [("stem", ConvBNAct(3, config.stem, 3, 2, act="hswish"))]
    cin = config.stem
    for i, b in enumerate(config.blocks, start=1):
        if b.cin != cin:
            raise ValueError(f"block b{i} expects {b.cin} input channels, the previous block gives {cin}")
        blocks.append((f"b{i}", MBConv(b.cin, b.cout, b.expand, b.stride, b.kernel, b.se, act="hswish")))
        cin = b.cout
    blocks.append(("head", ClassifierHead(cin, config.num_classes, hidden=config.head_hidden, act="hswish")))
    arch = {"kind": "refnet", **config.to_json()}
    return BlockwiseModel("reference", blocks, config.exits, (3, config.input_size, config.input_size), config.num_classes, arch)
