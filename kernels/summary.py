"""Per-block static costs of a blockwise model: shapes, parameters, multiply-accumulates."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from kernels.blockwise import BlockwiseModel


@dataclass(frozen=True)
class BlockCost:
    name: str
    input_shape: tuple[int, ...]  # (C, H, W), batch dimension dropped
    output_shape: tuple[int, ...]
    params: int
    macs: int  # multiply-accumulates of convolutions and linear layers, batch 1
    is_exit: bool

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["output_shape"] = list(self.input_shape), list(self.output_shape)
        return d


def _macs_hook(counter: list[int]):
    def hook(mod: nn.Module, inputs, output) -> None:
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            counter[0] += int(output[0].numel()) * k
        elif isinstance(mod, nn.Linear):
            counter[0] += int(output[0].numel()) * mod.in_features

    return hook


@torch.no_grad()
def block_costs(model: BlockwiseModel) -> list[BlockCost]:
    x = torch.zeros((1, *model.input_shape))
    costs = []
    exits = set(model.exit_points)
    for name, block in model.blocks.items():
        counter = [0]
        handles = [m.register_forward_hook(_macs_hook(counter)) for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        try:
            y = block(x)
        finally:
            for h in handles:
                h.remove()
        params = sum(p.numel() for p in block.parameters())
        costs.append(BlockCost(name, tuple(x.shape[1:]), tuple(y.shape[1:]), params, counter[0], name in exits))
        x = y
    return costs
