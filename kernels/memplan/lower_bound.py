"""The least activation memory any plan can have under layer-by-layer, row-by-row processing.

Assumptions: the layers run one after another in the graph's order, each row by row as in
:mod:`kernels.memplan.overlap`, and every tensor occupies one contiguous range of addresses (a circular
range counts as contiguous, so N2D2-style wrap-around plans obey the same bound).

While layer i runs, every tensor that is live across the step (skip connections, route sources, inputs
that later layers read again) needs its own bytes. So do the layer's inputs that it reads for the last
time: their rows die one by one, but the output can reuse the dead rows of at most one of them, because
the output's written part is one contiguous range that grows from one end, and every input of a
multi-input layer (concat, element-wise) keeps a live row until the last output row. The output then
needs ``d`` bytes beyond that input's range, where ``d`` is the minimum offset of :mod:`overlap` for the
better row order (or nothing, for an element-wise layer running in place). The bound is the largest
step of the network; for a single-input layer it equals the brief's ``max(D + H_in*R_in, H_out*R_out)``
plus everything else live.

No alignment or fragmentation is charged, so the distance of a plan to the bound is what packing costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels.memplan.graph import Graph
import numpy as np

from kernels.memplan.overlap import needed_rows, pair_geometry
from kernels.memplan.plan import Lifetimes, lifetimes


@dataclass(frozen=True)
class StepBound:
    step: int
    op: str
    bytes: int  # least live bytes while this layer runs
    mode: str  # the row order that achieves it


def step_bounds(graph: Graph, lt: Lifetimes | None = None) -> list[StepBound]:
    lt = lt or lifetimes(graph)
    out = []
    for i, op in enumerate(graph.ops):
        dying = lt.dying[i]
        others = sum(graph.nbytes(t) for t in lt.live[i] if t != op.output and t not in dying)
        if not dying:
            out.append(StepBound(i, op.name, others + graph.nbytes(op.output), "none"))
            continue
        extra: dict[str, int] = {}
        for u in dying:
            gs = [pair_geometry(graph, op, j) for j, t in enumerate(op.inputs) if t == u]
            extra[f"asc:{u}"] = max(g.d_asc for g in gs)
            extra[f"desc:{u}"] = max(g.d_desc for g in gs)
            if all(g.alias for g in gs):
                extra[f"alias:{u}"] = 0
        best = min(extra, key=lambda m: extra[m])
        pair = sum(graph.nbytes(u) for u in dying) + extra[best]
        out.append(StepBound(i, op.name, others + max(pair, graph.nbytes(op.output)), best))
    return out


def lower_bound(graph: Graph, lt: Lifetimes | None = None) -> int:
    """Least bytes of activation memory for ``graph`` in its given layer order (see module docstring)."""
    inputs = sum(graph.nbytes(t) for t in graph.inputs)  # the image must fit before the first layer runs
    return max([inputs] + [s.bytes for s in step_bounds(graph, lt)])


def live_bytes_bound(graph: Graph, lt: Lifetimes | None = None) -> int:
    """Most bytes live at any instant, whatever the layout (no contiguity assumed); see the module docstring."""
    lt = lt or lifetimes(graph)
    best = sum(graph.nbytes(t) for t in graph.inputs)
    for i, op in enumerate(graph.ops):
        dying = lt.dying[i]
        v = op.output
        others = sum(graph.nbytes(t) for t in lt.live[i] if t != v and t not in dying)
        h_out = graph.shapes[v][1]
        y = np.arange(h_out, dtype=np.int64)
        rv = graph.row_bytes(v)
        peaks = []
        aliases = [f"alias:{u}" for u in dying if op.is_elementwise and graph.shapes[u] == graph.shapes[v]]
        for mode in ["asc", "desc"] + aliases:
            if mode.startswith("alias"):
                total = np.zeros(h_out, np.int64)  # the output takes over the aliased input's bytes
            else:
                total = (y + 1) * rv if mode == "asc" else (h_out - y) * rv
            for u in dying:
                hu, ru = graph.shapes[u][1], graph.row_bytes(u)
                needs = [needed_rows(op, j, graph.shapes[u], graph.shapes[v])
                         for j, t in enumerate(op.inputs) if t == u]
                if mode == f"alias:{u}":
                    total = total + hu * ru
                elif mode == "desc":
                    total = total + (np.maximum.reduce([n[1] for n in needs]) + 1) * ru
                else:
                    total = total + (hu - np.minimum.reduce([n[0] for n in needs])) * ru
            peaks.append(int(total.max()))
        best = max(best, others + min(peaks))
    return best
