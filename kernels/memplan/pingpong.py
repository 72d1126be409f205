"""Ping-pong buffering, the baseline of Jokic et al.: a layer's input and output never share bytes.

The two buffers grow from the two ends of the arena: each layer writes its output at the end opposite
to its (first) input, so on a chain the arena is exactly the largest input+output pair, the
``H_in*R_in + H_out*R_out`` of the brief summed with whatever else is live. Tensors that stay alive
(skip connections, routes) keep their place at their end; a new tensor goes to the first gap at its end
that no live tensor of that end occupies.
"""

from __future__ import annotations

from kernels.memplan.graph import Graph
from kernels.memplan.plan import Lifetimes, Placement, Plan, lifetimes


def _first_fit(size: int, taken: list[tuple[int, int]]) -> int:
    pos = 0
    for a, b in sorted(taken):
        if a - pos >= size:
            break
        pos = max(pos, b)
    return pos


def plan_pingpong(graph: Graph, lt: Lifetimes | None = None) -> Plan:
    lt = lt or lifetimes(graph)
    side: dict[str, int] = {t: 0 for t in graph.inputs}
    for op in graph.ops:
        side[op.output] = 1 - side[op.inputs[0]]
    dist: dict[str, int] = {}  # distance of the tensor's near edge from its own end of the arena
    step_of = lt.birth
    for t in graph.tensors():
        same = [u for u in lt.live[min(step_of[t], len(graph.ops) - 1)] if u in dist and side[u] == side[t]]
        dist[t] = _first_fit(graph.nbytes(t), [(dist[u], dist[u] + graph.nbytes(u)) for u in same])
    ext = {t: dist[t] + graph.nbytes(t) for t in dist}
    arena = max(ext.values())
    for live in lt.live:
        bottom = max((ext[t] for t in live if side[t] == 0), default=0)
        top = max((ext[t] for t in live if side[t] == 1), default=0)
        arena = max(arena, bottom + top)
    placements = {t: Placement(dist[t] if side[t] == 0 else arena - ext[t]) for t in dist}
    return Plan("pingpong", arena, placements)
