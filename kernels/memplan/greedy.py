"""Greedy-by-size offset planning over buffer lifetimes: what TFLite's arena planner and TVM's USMP
``greedy_by_size`` do.

Buffers are taken largest first (ties: earlier-born first) and each gets the lowest offset where it
overlaps no already placed buffer whose lifetime meets its own. A buffer is whole for its whole
lifetime: an input is never overlapped by its own output, except in the one case TFLite also handles,
an element-wise layer whose output has the shape of an input read for the last time, which then runs
in place in that input's buffer.
"""

from __future__ import annotations

from kernels.memplan.graph import Graph
from kernels.memplan.plan import Lifetimes, Placement, Plan, lifetimes


def buffers(graph: Graph, lt: Lifetimes, in_place: bool = True) -> dict[str, list[str]]:
    """Tensors sharing one buffer, keyed by the buffer's first tensor, in birth order."""
    home = {t: t for t in graph.tensors()}
    members: dict[str, list[str]] = {t: [t] for t in graph.tensors()}
    if in_place:
        for i, op in enumerate(graph.ops):
            if not op.is_elementwise:
                continue
            for u in lt.dying[i]:
                if graph.shapes[u] == graph.shapes[op.output] and u not in graph.outputs:
                    root = home[u]
                    members[root].append(op.output)
                    del members[op.output]
                    home[op.output] = root
                    break
    return members


def plan_greedy(graph: Graph, lt: Lifetimes | None = None, in_place: bool = True, name: str = "greedy") -> Plan:
    lt = lt or lifetimes(graph)
    groups = buffers(graph, lt, in_place)
    info = []
    for root, ts in groups.items():
        size = max(graph.nbytes(t) for t in ts)
        info.append((root, size, min(lt.birth[t] for t in ts), max(lt.death[t] for t in ts)))
    info.sort(key=lambda b: (-b[1], b[2], b[0]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, birth, death)
    offset_of: dict[str, int] = {}
    for root, size, birth, death in info:
        taken = sorted((o, e) for o, e, b, d in placed if b <= death and birth <= d)
        pos = 0
        for o, e in taken:
            if o - pos >= size:
                break
            pos = max(pos, e)
        placed.append((pos, pos + size, birth, death))
        offset_of[root] = pos
    arena = max((e for _, e, _, _ in placed), default=0)
    placements = {t: Placement(offset_of[root]) for root, ts in groups.items() for t in ts}
    return Plan(name, arena, placements)
