"""``torch.export`` -> Relax, one module per block and one for the whole model.

BatchNorm is folded into the preceding convolution in torch before export (TVM's default pipeline keeps it
as separate element-wise work); the folded copy computes the same function, so outputs still match the
original model within float rounding.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from kernels.blockwise import BlockwiseModel


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every Conv2d -> BatchNorm2d pair folded into the conv.

    Pairs are found as consecutive children of a container (``nn.Sequential`` and friends), which is how
    the zoo and most user models write them; a BatchNorm that does not directly follow a conv is kept.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(module).eval()

    def visit(parent: nn.Module) -> None:
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            ca, cb = parent._modules[a], parent._modules[b]
            if isinstance(ca, nn.Conv2d) and isinstance(cb, nn.BatchNorm2d) and cb.track_running_stats:
                parent._modules[a] = fuse_conv_bn_eval(ca, cb)
                parent._modules[b] = nn.Identity()
        for child in parent.children():
            visit(child)

    visit(m)
    return m


class _Run(nn.Module):
    """Blocks ``names`` of a model run in sequence (for exporting a slice)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.seq = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.seq:
            x = b(x)
        return x


@dataclass
class ExportedBlock:
    name: str  # block name, or "model" for the whole net
    input_shape: tuple[int, ...]  # with the batch dimension
    output_shape: tuple[int, ...]
    mod: object  # tvm.IRModule with one Relax function "main"


def to_relax(module: nn.Module, example: torch.Tensor):  # noqa: ANN201
    """Export ``module`` at ``example``'s shape and import it into Relax (weights bound as constants)."""
    from tvm.relax.frontend.torch import from_exported_program

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module.eval(), (example,))
        return from_exported_program(ep, unwrap_unit_return_tuple=True)


@torch.no_grad()
def export_blocks(model: BlockwiseModel, batch: int = 1, whole: bool = True, fold_bn: bool = True) -> list[ExportedBlock]:
    """One Relax module per block, in order, plus the whole model last (name ``"model"``) when ``whole``."""
    folded = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    x = torch.zeros((batch, *model.input_shape))
    out: list[ExportedBlock] = []
    first = x
    for name, block in folded.blocks.items():
        y = block(x)
        out.append(ExportedBlock(name, tuple(x.shape), tuple(y.shape), to_relax(_Run([block]), x)))
        x = y
    if whole:
        out.append(ExportedBlock("model", tuple(first.shape), tuple(x.shape), to_relax(_Run(list(folded.blocks.values())), first)))
    return out
