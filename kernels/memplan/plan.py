"""What a planner returns (an address for every tensor in one arena) and the lifetimes planners share."""

from __future__ import annotations

from dataclasses import dataclass, field

from kernels.memplan.graph import Graph
from kernels.memplan.overlap import ASC


@dataclass(frozen=True)
class Placement:
    """Where a tensor lives: ``offset`` bytes into the arena. A tensor in a circular region (N2D2-style
    wrap-around) continues at ``region_start`` when it reaches ``region_start + region_size``."""

    offset: int
    region_start: int = 0
    region_size: int = 0  # 0: a plain contiguous tensor

    @property
    def wraps(self) -> bool:
        return self.region_size > 0


@dataclass(frozen=True)
class Plan:
    planner: str
    arena_bytes: int
    placements: dict[str, Placement]
    order: dict[str, str] = field(default_factory=dict)  # op name -> row order (ASC when absent)

    def row_order(self, op_name: str) -> str:
        return self.order.get(op_name, ASC)

    def to_json(self) -> dict:
        """Offsets in bytes ([offset, region start, region size] for a wrapping tensor); the layers that
        run their rows in descending order."""
        return {
            "planner": self.planner,
            "arena_bytes": self.arena_bytes,
            "offsets": {t: ([p.offset, p.region_start, p.region_size] if p.wraps else p.offset)
                        for t, p in self.placements.items()},
            "descending_layers": sorted(op for op, o in self.order.items() if o != ASC),
        }


@dataclass(frozen=True)
class Lifetimes:
    """Step i runs ``graph.ops[i]``. A tensor is live from the step that writes it (inputs: step 0) to the
    last step that reads it; network outputs never die (death = number of steps)."""

    birth: dict[str, int]
    death: dict[str, int]
    live: tuple[tuple[str, ...], ...]  # per step, in birth order
    dying: tuple[tuple[str, ...], ...]  # per step: distinct inputs of that step's op read for the last time

    def overlaps(self, a: str, b: str) -> bool:
        return self.birth[a] <= self.death[b] and self.birth[b] <= self.death[a]


def lifetimes(graph: Graph) -> Lifetimes:
    n = len(graph.ops)
    birth = {t: 0 for t in graph.inputs}
    death = {t: 0 for t in graph.inputs}
    for i, op in enumerate(graph.ops):
        birth[op.output] = i
        death[op.output] = i
        for t in op.inputs:
            death[t] = max(death[t], i)
    for t in graph.outputs:
        death[t] = n
    order = graph.tensors()
    live: list[list[str]] = [[] for _ in range(n)]
    for t in order:
        for s in range(birth[t], min(death[t], n - 1) + 1):
            live[s].append(t)
    dying = tuple(tuple(t for t in dict.fromkeys(op.inputs) if death[t] == i) for i, op in enumerate(graph.ops))
    return Lifetimes(birth, death, tuple(tuple(x) for x in live), dying)


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
