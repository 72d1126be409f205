"""One way to cut a CNN: named blocks run in sequence, with candidate exit points after some of them.

The profiler, the trace recorder and the on-device runtime all run models through
:class:`BlockwiseModel`, so that a block means the same thing in a profile, a trace and a policy.
An exit point is named after the block it follows: exit ``"b3"`` sees the output of block ``b3``.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from engram.errors import EngramError
from engram.fingerprint import hash_arrays, hash_json


class BlockwiseModel(nn.Module):
    def __init__(
        self,
        name: str,
        blocks: Sequence[tuple[str, nn.Module]],
        exit_points: Sequence[str],
        input_shape: tuple[int, int, int],
        num_classes: int,
        architecture: dict[str, Any],
    ) -> None:
        super().__init__()
        if not blocks:
            raise EngramError(f"model {name!r} has no blocks")
        names = [n for n, _ in blocks]
        if len(set(names)) != len(names):
            raise EngramError(f"model {name!r} has duplicate block names: {names}")
        self.name = name
        self.blocks = nn.ModuleDict(blocks)
        positions = {n: i for i, n in enumerate(names)}
        for e in exit_points:
            if e not in positions:
                raise EngramError(f"exit point {e!r} is not a block of {name!r} (blocks: {', '.join(names)})")
            if positions[e] == len(names) - 1:
                raise EngramError(f"exit point {e!r} is the last block of {name!r}: nothing would be skipped")
        order = [positions[e] for e in exit_points]
        if order != sorted(set(order)):
            raise EngramError(f"exit points of {name!r} must be distinct and in block order, got {list(exit_points)}")
        self.exit_points: tuple[str, ...] = tuple(exit_points)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.architecture = dict(architecture)

    # -- structure -------------------------------------------------------------------------------
    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(self.blocks.keys())

    def block_index(self, name: str) -> int:
        try:
            return self.block_names.index(name)
        except ValueError:
            raise EngramError(f"{name!r} is not a block of {self.name!r} (blocks: {', '.join(self.block_names)})") from None

    def segments(self) -> list[tuple[str | None, tuple[str, ...]]]:
        """The blocks between consecutive exit points: ``[(exit, blocks ending at it), ..., (None, rest)]``."""
        out: list[tuple[str | None, tuple[str, ...]]] = []
        start = 0
        for e in self.exit_points:
            stop = self.block_index(e) + 1
            out.append((e, self.block_names[start:stop]))
            start = stop
        out.append((None, self.block_names[start:]))
        return out

    # -- running ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x

    def run_blocks(self, x: torch.Tensor, start: int | str = 0, stop: int | str | None = None) -> torch.Tensor:
        """Run blocks ``start`` (inclusive) to ``stop`` (exclusive), by index or name; ``stop=None`` runs to the end."""
        i = self.block_index(start) if isinstance(start, str) else start
        j = len(self.blocks) if stop is None else (self.block_index(stop) if isinstance(stop, str) else stop)
        for block in list(self.blocks.values())[i:j]:
            x = block(x)
        return x

    def iter_blocks(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(block name, its output)`` for every block in order."""
        for name, block in self.blocks.items():
            x = block(x)
            yield name, x

    def forward_exits(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Final output plus the feature map at every exit point."""
        exits: dict[str, torch.Tensor] = {}
        wanted = set(self.exit_points)
        for name, x in self.iter_blocks(x):
            if name in wanted:
                exits[name] = x
        return x, exits

    # -- identity --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "blocks": list(self.block_names),
            "exit_points": list(self.exit_points),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }

    def fingerprint(self) -> dict[str, str]:
        """Hashes of the architecture description and of the weights (parameters and buffers)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        # BatchNorm's num_batches_tracked says how long it trained, not what it computes.
        arrays = {k: v for k, v in arrays.items() if not k.endswith("num_batches_tracked")}
        return {"architecture": hash_json(self.describe()), "weights": hash_arrays(arrays)}

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        exit_points: Sequence[str],
        input_shape: tuple[int, int, int],
        num_classes: int,
        name: str | None = None,
    ) -> "BlockwiseModel":
        """Cut a user's torch module at the named submodules (see :mod:`kernels.split`)."""
        from kernels.split import split_module

        return split_module(module, exit_points, input_shape, num_classes, name)


def example_input(model: BlockwiseModel, batch: int = 1, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((batch, *model.input_shape), dtype=np.float32))
