"""N2D2-style wrap-around buffers (the CPP export's memory manager of CEA's N2D2, ``OPTIMIZE_BUFFER_MEMORY``).

Rules as N2D2 applies them (read from its source, re-implemented here):

* A layer may write its output into its input's memory space when the layer is a convolution, pooling,
  element-wise or scaling layer and that input has no other consumer. Among several such inputs the
  largest is used.
* The space is circular. The output starts where the input ends and wraps around; the space must hold
  ``max(input, output)`` plus ``margin + 1`` output lines, with ``margin = floor(top padding / stride)``
  for convolution and pooling and 0 otherwise (the +1 because the input line is not necessarily read
  before the output line is written). The space grows to the largest such need of its chain.
* Every other layer gets a fresh space; spaces are then packed by lifetime, longest-lived first, then
  largest first (N2D2's ``OptimizeMaxLifetimeMaxSizeFirst``), each at the lowest free offset.

The line margin is a rule of thumb rather than the exact row dependence of :mod:`overlap`; the
execution check shows whether it holds on a given graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernels.memplan.graph import Graph
from kernels.memplan.plan import Lifetimes, Placement, Plan, lifetimes

_WRAPPABLE = ("conv", "maxpool", "avgpool", "add", "sub", "mul", "max", "act", "affine")


@dataclass
class _Space:
    size: int
    birth: int
    death: int
    planes: list[str] = field(default_factory=list)


def plan_wraparound(graph: Graph, lt: Lifetimes | None = None) -> Plan:
    lt = lt or lifetimes(graph)
    consumers = graph.consumers()
    spaces: list[_Space] = []
    where: dict[str, tuple[int, int]] = {}  # tensor -> (space index, start offset inside the space)

    def fresh(t: str) -> None:
        spaces.append(_Space(graph.nbytes(t), lt.birth[t], lt.death[t], [t]))
        where[t] = (len(spaces) - 1, 0)

    for t in graph.inputs:
        fresh(t)
    for op in graph.ops:
        v = op.output
        cands = [u for u in dict.fromkeys(op.inputs)
                 if len(consumers[u]) == 1 and u not in graph.outputs and spaces[where[u][0]].planes[-1] == u]
        if op.kind not in _WRAPPABLE or not cands:
            fresh(v)
            continue
        u = max(cands, key=graph.nbytes)
        k, start_u = where[u]
        sp = spaces[k]
        margin = op.pad[0] // op.stride[0] if op.kind in ("conv", "maxpool", "avgpool") else 0
        need = max(graph.nbytes(u), graph.nbytes(v)) + (margin + 1) * graph.row_bytes(v)
        sp.size = max(sp.size, need)
        where[v] = (k, (start_u + graph.nbytes(u)) % sp.size)
        sp.planes.append(v)
        sp.death = max(sp.death, lt.death[v])

    order = sorted(range(len(spaces)), key=lambda i: (-(spaces[i].death - spaces[i].birth), -spaces[i].size, i))
    base: dict[int, int] = {}
    for i in order:
        s = spaces[i]
        taken = sorted((base[j], base[j] + spaces[j].size) for j in base
                       if spaces[j].birth <= s.death and s.birth <= spaces[j].death)
        pos = 0
        for a, b in taken:
            if a - pos >= s.size:
                break
            pos = max(pos, b)
        base[i] = pos
    arena = max(base[i] + spaces[i].size for i in base)
    placements = {}
    for t, (k, start) in where.items():
        s = spaces[k]
        placements[t] = (Placement(base[k] + start, base[k], s.size) if len(s.planes) > 1
                         else Placement(base[k]))
    return Plan("wraparound", arena, placements)
