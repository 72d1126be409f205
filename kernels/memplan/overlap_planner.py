"""Our whole-network planner: one arena, overlap wherever the row model allows it, lifetimes for the rest.

Rules a plan obeys (checked by :mod:`kernels.memplan.execute`):

* two tensors alive at the same step never share a byte, except
* the output of a layer and an input that this layer reads for the last time, which may overlap by
  the layer's minimum offset in the row order chosen for that layer (:mod:`overlap`): the output starts
  at least ``d_asc`` bytes before the input (ascending rows) or ends at least ``d_desc`` bytes after it
  (descending rows); an element-wise layer may also run exactly in place.
  Tensors that later layers still need (skip connections, routes, concat sources) are never overlapped.

Search. For an arena of ``M`` bytes, tensors are placed in the order they are created. The places a new
tensor may take form a union of intervals (the complement of what its live neighbours forbid); its
candidates are the ends of those intervals, so every tensor is flush against the arena's edge or a
neighbour, and the two row orders give two sets. Candidates are tried best first, judged by the largest
free block left for the next layer (where its own dying inputs count as free, since its output may
overlap them), then by keeping long-lived tensors against an end of the arena, with depth-first
backtracking under a node budget. Alternating row orders lets a chain of layers swing between the
arena's ends instead of drifting, which is what keeps long equal-width stacks (DnCNN) at the lower
bound. ``M`` starts at the lower bound and rises only if the search fails; the returned plan is never
worse than the greedy and ping-pong plans (it falls back to the better of them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kernels.memplan.graph import Graph
from kernels.memplan.greedy import plan_greedy
from kernels.memplan.lower_bound import lower_bound
from kernels.memplan.overlap import ASC, DESC, PairGeometry, pair_geometry
from kernels.memplan.pingpong import plan_pingpong
from kernels.memplan.plan import Lifetimes, Placement, Plan, align_up, lifetimes


@dataclass(frozen=True)
class SearchStats:
    arena_tries: tuple[tuple[int, bool], ...]  # (arena bytes, found a plan)
    nodes: int
    seconds: float


def _free(forbidden: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """Closed intervals of [0, top] not inside any open interval of ``forbidden``."""
    out = []
    cur = 0
    for a, b in sorted(forbidden):
        if b <= cur or a >= b:
            continue
        if a >= cur and cur <= top:
            out.append((cur, min(a, top)))
        cur = max(cur, b)
        if cur > top:
            break
    if cur <= top:
        out.append((cur, top))
    return out


def _largest_gap(taken: list[tuple[int, int]], arena: int) -> int:
    best, cur = 0, 0
    for a, b in sorted(taken):
        if a > cur:
            best = max(best, a - cur)
        cur = max(cur, b)
    return max(best, arena - cur)


class _Search:
    def __init__(self, graph: Graph, lt: Lifetimes) -> None:
        self.g = graph
        self.lt = lt
        self.n = len(graph.ops)
        self.size = {t: graph.nbytes(t) for t in graph.tensors()}
        # Creation order: inputs at step 0, then each layer's output at its step.
        self.order: list[tuple[str, int]] = ([(t, -1) for t in graph.inputs]
                                             + [(op.output, i) for i, op in enumerate(graph.ops)])
        self.geo: list[dict[str, PairGeometry]] = []
        for i, op in enumerate(graph.ops):
            d = {}
            for u in lt.dying[i]:
                gs = [pair_geometry(graph, op, j) for j, t in enumerate(op.inputs) if t == u]
                d[u] = PairGeometry(max(x.d_asc for x in gs), max(x.d_desc for x in gs), all(x.alias for x in gs))
            self.geo.append(d)
        self.nodes = 0

    def candidates(self, k: int, pos: dict[str, int], arena: int) -> list[tuple[int, str]]:
        t, i = self.order[k]
        s = self.size[t]
        top = arena - s
        if top < 0:
            return []
        step = max(i, 0)
        dying = self.geo[i] if i >= 0 else {}
        base = [(pos[w] - s, pos[w] + self.size[w]) for w in self.lt.live[step] if w in pos and w not in dying]
        out: list[tuple[int, str]] = []
        for mode in ((ASC, DESC) if dying else (ASC,)):
            forb = list(base)
            for u, gm in dying.items():
                a, su = pos[u], self.size[u]
                if mode == ASC:
                    forb.append((a - gm.d_asc, a + su))
                else:
                    forb.append((a - s, a + su + gm.d_desc - s))
            for lo, hi in _free(forb, top):
                out.append((lo, mode))
                if hi != lo:
                    out.append((hi, mode))
        for u, gm in dying.items():
            a = pos[u]
            if gm.alias and a <= top and all(not (x < a < y) for x, y in base):
                out.append((a, "alias"))
        # Best first: most room for the next layer, long-lived tensors at the ends, in-place, ascending, low.
        scored = []
        seen = set()
        for p, mode in out:
            if (p, mode) in seen:
                continue
            seen.add((p, mode))
            pos[t] = p
            # A tensor that outlives the next layer is better kept against an end of the arena.
            off_edge = self.lt.death[t] > i + 1 and p != 0 and p + s != arena
            scored.append((-self.room(i + 1, pos, arena), off_edge, mode != "alias", mode != ASC, p, mode))
            del pos[t]
        scored.sort()
        return [(p, mode) for *_, p, mode in scored]

    def room(self, step: int, pos: dict[str, int], arena: int) -> int:
        if step >= self.n:
            return arena
        dying = self.lt.dying[step]
        taken = [(pos[w], pos[w] + self.size[w]) for w in self.lt.live[step] if w in pos and w not in dying]
        return _largest_gap(taken, arena)

    def run(self, arena: int, budget: int) -> tuple[dict[str, int], dict[str, str]] | None:
        pos: dict[str, int] = {}
        mode_of: dict[str, str] = {}
        stack = [self.candidates(0, pos, arena)]
        k = 0
        spent = 0
        while True:
            if k == len(self.order):
                return pos, mode_of
            if not stack[k]:
                stack.pop()
                k -= 1
                if k < 0:
                    return None
                t = self.order[k][0]
                del pos[t]
                mode_of.pop(t, None)
                continue
            if spent >= budget:
                return None
            p, mode = stack[k].pop(0)
            spent += 1
            self.nodes += 1
            t = self.order[k][0]
            pos[t] = p
            mode_of[t] = mode
            k += 1
            if k < len(self.order):
                stack.append(self.candidates(k, pos, arena))


def plan_overlap(graph: Graph, lt: Lifetimes | None = None, fallbacks: tuple[Plan, ...] = (),
                 budget: int | None = None, lb: int | None = None) -> tuple[Plan, SearchStats]:
    """Plan ``graph`` with overlapping buffers; return the plan and how the search went."""
    t0 = time.perf_counter()
    lt = lt or lifetimes(graph)
    elem = graph.elem_bytes
    lb = lb if lb is not None else lower_bound(graph, lt)
    fallbacks = fallbacks or (plan_greedy(graph, lt), plan_pingpong(graph, lt))
    search = _Search(graph, lt)
    budget = budget if budget is not None else 8 * len(search.order) + 500
    tries: list[tuple[int, bool]] = []
    best: tuple[int, dict[str, int], dict[str, str]] | None = None

    def attempt(arena: int) -> bool:
        nonlocal best
        got = search.run(arena, budget)
        tries.append((arena, got is not None))
        if got is not None and (best is None or arena < best[0]):
            best = (arena, *got)
        return got is not None

    limit = min(p.arena_bytes for p in fallbacks)
    lo = align_up(lb, elem)
    if not attempt(lo):
        # Rising steps first (most graphs fit within a fraction of a percent), then bisection.
        fail = lo
        for f in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
            m = align_up(int(lb * (1 + f)), elem)
            if m >= limit:
                break
            if attempt(m):
                break
            fail = m
        hi = best[0] if best else limit
        for _ in range(8):
            mid = align_up((fail + hi) // 2, elem)
            if mid >= hi or mid <= fail or (hi - fail) <= max(elem, lb // 2000):
                break
            if attempt(mid):
                hi = mid
            else:
                fail = mid
    stats = lambda: SearchStats(tuple(tries), search.nodes, time.perf_counter() - t0)  # noqa: E731
    if best is None or best[0] >= limit:
        fb = min(fallbacks, key=lambda p: p.arena_bytes)
        return Plan("overlap", fb.arena_bytes, dict(fb.placements), dict(fb.order)), stats()
    arena, pos, mode_of = best
    order = {}
    for op in graph.ops:
        m = mode_of.get(op.output, ASC)
        if m == DESC:
            order[op.name] = DESC
    return Plan("overlap", arena, {t: Placement(p) for t, p in pos.items()}, order), stats()
