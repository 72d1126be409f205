"""All planners on one graph, side by side: the pure planning result, the execution check, the report.

:func:`plan_activation_memory` is what the profiler calls: no files, no execution, a few milliseconds.
:func:`evaluate` adds the proof by execution (and TVM's planner for torch models) and gives the
report the ``memplan`` command and ``benchmarks/memory.py`` print.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kernels.memplan.execute import compare, execute_plan
from kernels.memplan.graph import Graph
from kernels.memplan.greedy import plan_greedy
from kernels.memplan.load import LoadedGraph
from kernels.memplan.lower_bound import live_bytes_bound, lower_bound
from kernels.memplan.overlap_planner import SearchStats, plan_overlap
from kernels.memplan.pingpong import plan_pingpong
from kernels.memplan.plan import Plan, lifetimes
from kernels.memplan.wraparound import plan_wraparound

PLANNERS = ("pingpong", "greedy", "wraparound", "overlap")
LABELS = {"pingpong": "ping-pong", "greedy": "greedy (TFLite/USMP)", "tvm": "TVM Relax",
          "wraparound": "N2D2 wrap-around", "overlap": "overlap (ours)"}


@dataclass(frozen=True)
class MemoryPlanResult:
    """Activation memory of one graph under every planner (bytes), with the plans themselves."""

    graph: str
    elem_bytes: int
    lower_bound_bytes: int
    live_bytes_bound: int  # the bound without per-tensor contiguity (lower_bound.live_bytes_bound)
    largest_tensor_bytes: int
    plans: dict[str, Plan]
    planning_seconds: float  # all planners and the bound together
    search: SearchStats

    @property
    def pingpong_bytes(self) -> int:
        return self.plans["pingpong"].arena_bytes

    @property
    def greedy_bytes(self) -> int:
        return self.plans["greedy"].arena_bytes

    @property
    def wraparound_bytes(self) -> int:
        return self.plans["wraparound"].arena_bytes

    @property
    def overlap_bytes(self) -> int:
        return self.plans["overlap"].arena_bytes

    def saving_vs_pingpong(self, planner: str = "overlap") -> float:
        return 1.0 - self.plans[planner].arena_bytes / self.pingpong_bytes


def plan_activation_memory(graph: Graph) -> MemoryPlanResult:
    """Plan ``graph``'s activations with every planner; the overlap plan is the one to use."""
    t0 = time.perf_counter()
    lt = lifetimes(graph)
    lb = lower_bound(graph, lt)
    pp = plan_pingpong(graph, lt)
    gr = plan_greedy(graph, lt)
    wr = plan_wraparound(graph, lt)
    ov, stats = plan_overlap(graph, lt, fallbacks=(pp, gr), lb=lb)
    return MemoryPlanResult(graph.name, graph.elem_bytes, lb, live_bytes_bound(graph, lt),
                            max(graph.nbytes(t) for t in graph.tensors()),
                            {"pingpong": pp, "greedy": gr, "wraparound": wr, "overlap": ov},
                            time.perf_counter() - t0, stats)


def activation_bytes(graph: Graph) -> int:
    """The planned activation memory of ``graph`` (our overlap plan), for the cost model."""
    return plan_activation_memory(graph).overlap_bytes


@dataclass(frozen=True)
class Verification:
    verified: bool
    max_rel_error: float
    violation: str | None
    seconds: float

    def to_json(self) -> dict:
        return {"verified": self.verified, "max_rel_error": self.max_rel_error, "violation": self.violation,
                "seconds": round(self.seconds, 3)}


def verify(loaded: LoadedGraph, plan: Plan, reference: dict | None = None) -> Verification:
    t0 = time.perf_counter()
    reference = reference if reference is not None else loaded.reference()
    res = execute_plan(loaded.graph, plan, loaded.weights, loaded.inputs)
    ok, err = compare(res.outputs, reference)
    return Verification(ok and res.clean, err, res.violations[0] if res.violations else None, time.perf_counter() - t0)


@dataclass
class Report:
    loaded: LoadedGraph
    result: MemoryPlanResult
    verification: dict[str, Verification] = field(default_factory=dict)
    tvm: object | None = None  # TvmMemory

    def to_json(self) -> dict:
        g = self.loaded.graph
        r = self.result
        pp = r.pingpong_bytes
        sizes = {p: r.plans[p].arena_bytes for p in PLANNERS}
        out = {
            "graph": g.name,
            "source": g.origin,
            "kind": self.loaded.kind,
            "input_shape": list(g.shapes[g.inputs[0]]),
            "layers": len(g.ops),
            "elem_bytes": g.elem_bytes,
            "largest_tensor_bytes": r.largest_tensor_bytes,
            "lower_bound_bytes": r.lower_bound_bytes,
            "live_bytes_bound": r.live_bytes_bound,
            "pingpong_bytes": sizes["pingpong"],
            "greedy_bytes": sizes["greedy"],
            "wraparound_bytes": sizes["wraparound"],
            "overlap_bytes": sizes["overlap"],
        }
        if self.tvm is not None:
            out["tvm_bytes"] = self.tvm.total_bytes
            out["tvm_planned_bytes"] = self.tvm.planned_bytes
            sizes["tvm"] = self.tvm.total_bytes
        out["saving_vs_pingpong"] = {p: round(1 - b / pp, 6) for p, b in sizes.items()}
        out["above_lower_bound"] = {p: round(b / r.lower_bound_bytes - 1, 6) for p, b in sizes.items()}
        out["verified"] = self.verification["overlap"].verified if "overlap" in self.verification else None
        out["verification"] = {p: v.to_json() for p, v in self.verification.items()}
        out["planning_seconds"] = round(r.planning_seconds, 4)
        out["overlap_plan"] = r.plans["overlap"].to_json()
        return out


def evaluate(loaded: LoadedGraph, run_checks: bool = True, with_tvm: bool = True) -> Report:
    report = Report(loaded, plan_activation_memory(loaded.graph))
    if run_checks:
        reference = loaded.reference()
        for name in PLANNERS:
            report.verification[name] = verify(loaded, report.result.plans[name], reference)
    if with_tvm and loaded.module is not None:
        from kernels.memplan.tvm_planner import tvm_activation_memory

        report.tvm = tvm_activation_memory(loaded.module, loaded.graph.shapes[loaded.graph.inputs[0]])
    return report
