"""Measure a compiled model on a device: every block, the whole model, and the semantic lookup at each
exit point for a range of cache sizes.

Blocks and the whole model are timed interleaved, round by round (one sample of each per round, after
warm-up rounds), so slow phases of the machine (other processes, frequency changes) hit all of them
alike and the sum of the per-block medians stays comparable with the whole model's median.

On a local device every round also times the blocks *in context* (:class:`kernels.tvm.timing.ChainTimer`:
the blocks in sequence, each on the previous one's output, as the runtime runs them), less what a Python-level
call of the block costs beyond its kernels (:class:`kernels.tvm.timing.CallTimer` against ``time_evaluator``,
same block, same round: the whole model pays no such call between its blocks, and the runtime's profile
section charges it as dispatch). Those are the blocks' latencies; the isolated ``time_evaluator`` samples are
kept for comparison. Over RPC only the isolated timing is possible.

This machine's slow phases last seconds and move every block together, so a set of rounds that caught one
varies too much to trust whatever the trimming. While the worst trimmed CV (of the blocks as the profile will
record them, and the whole model) is above ``config.cv_warn``, the rounds are taken again, up to
``config.attempts`` times in all, and the steadiest attempt's samples are kept; the lookup table is timed once,
after them. The measurement says what each attempt gave.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from kernels.tvm.compile import CompiledModel, vms_by_unit
from kernels.tvm.counters import EnergyCounter
from kernels.tvm.lookup import LookupInputs, compile_lookup
from kernels.tvm.rpc import Session
from kernels.tvm.timing import CallTimer, ChainTimer, KernelTimer, TimingConfig, call_overhead_ms, latency_stats

LOOKUP_ENTRIES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class ExitSpec:
    name: str
    feature_shape: tuple[int, int, int]
    dims: int
    encoder: Any = None  # kernels.reference.encoders.SemanticEncoder, or None for random projections


@dataclass
class Measurement:
    blocks: dict[str, list[float]]  # raw samples (ms), block order: in context where measured, else isolated
    whole: list[float]
    numbers: dict[str, int]  # runs per sample
    lookup: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    lookup_entries: tuple[int, ...] = LOOKUP_ENTRIES
    energy_mj: dict[str, float] | None = None  # per block, from an energy counter
    counter: str | None = None
    config: TimingConfig = field(default_factory=TimingConfig)
    isolated: dict[str, list[float]] | None = None  # time_evaluator samples, when ``blocks`` holds in-context ones
    call_overhead: dict[str, float] | None = None  # per block: a Python-level call's cost beyond the kernels (ms)
    chain: list[float] | None = None  # in-context passes' totals (blocks + the glue between calls)
    context_passes: int = 0
    attempt_worst_cv: tuple[float, ...] = ()  # per attempt: the worst trimmed CV of the blocks and whole model
    kept_attempt: int = 0  # index into attempt_worst_cv of the attempt whose samples these are

    @property
    def in_context(self) -> bool:
        return self.isolated is not None


@dataclass
class _Attempt:
    """One attempt's rounds: raw samples of every unit, and on a local device the in-context ones."""

    samples: dict[str, list[float]]
    ctx: dict[str, list[float]]
    call_ms: dict[str, list[float]]
    totals: list[float]
    energy_uj: dict[str, float]
    runs: dict[str, int]
    worst_cv: float = 0.0


def _worst_cv(a: _Attempt, context: bool, trim: float) -> float:
    """The worst trimmed CV among what the profile will record as latencies: the blocks (in context where timed so,
    less their call overhead, a constant per block) and the whole model."""
    over = {n: call_overhead_ms(v) for n, v in a.call_ms.items()} if context else {}
    series = ([[x - over[n] for x in v] for n, v in a.ctx.items()] if context
              else [v for n, v in a.samples.items() if n != "model"])
    series += [a.samples["model"]] if "model" in a.samples else []
    return max((float(latency_stats(v, trim)["cv"]) for v in series if len(v)), default=0.0)


def _progress(total: int, desc: str, enabled: bool):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=not enabled, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def measure_model(
    compiled: CompiledModel,
    session: Session,
    config: TimingConfig = TimingConfig(),
    exits: Sequence[ExitSpec] = (),
    lookup_entries: Sequence[int] = LOOKUP_ENTRIES,
    progress: bool = True,
    counter: EnergyCounter | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    context: bool | None = None,
) -> Measurement:
    """``context``: time the blocks in context too (default: on a local device)."""
    rng = np.random.default_rng(seed)
    context = (session.remote is None) if context is None else context
    units = list(compiled.blocks) + ([compiled.whole] if compiled.whole is not None else [])
    timers: dict[str, KernelTimer] = {}
    vms = vms_by_unit(units, lambda b: session.load(b.executable, "model" if b.name == "model" else "blocks"))
    for b in units:
        vm = vms[b.name]
        x = rng.standard_normal(b.input_shape).astype(np.float32)
        timers[b.name] = KernelTimer(vm, session.device, [session.tensor(x)], func=b.function, run_trim=config.run_trim)
    numbers = {name: t.calibrate(config.sample_ms, min_number=config.min_runs) for name, t in timers.items()}
    chain = None
    if context:
        x0 = session.tensor(rng.standard_normal(compiled.blocks[0].input_shape).astype(np.float32))
        fns = [vms[b.name][b.function] for b in compiled.blocks]
        chain = ChainTimer(fns, x0, session.device, run_trim=config.run_trim)
        chain.calibrate(config.context_sample_ms, min_passes=config.min_runs)
        calls, cur = {}, x0
        for b, f in zip(compiled.blocks, fns):
            calls[b.name] = CallTimer(f, cur, numbers[b.name], run_trim=config.run_trim)
            cur = f(cur)
    rounds = config.warmup + config.repeats
    lookup_work = len(exits) * len(lookup_entries) * (config.lookup_repeats + 1)

    def run_rounds(bar) -> _Attempt:  # noqa: ANN001
        a = _Attempt({name: [] for name in timers}, {b.name: [] for b in compiled.blocks},
                     {b.name: [] for b in compiled.blocks}, [], {name: 0.0 for name in timers}, {name: 0 for name in timers})
        for r in range(rounds):
            for name, t in timers.items():
                before = counter.read_uj() if counter is not None else 0
                ms = t.sample_ms()
                if r >= config.warmup:
                    a.samples[name].append(ms)
                    if counter is not None:
                        a.energy_uj[name] += counter.delta_uj(before, counter.read_uj())
                        a.runs[name] += t.number + 1  # time_evaluator's warm-up run included
                bar.update(1)
            if chain is not None:
                per_block, total = chain.sample_ms()
                host = {name: t.sample_ms() for name, t in calls.items()}
                if r >= config.warmup:
                    for b, v in zip(compiled.blocks, per_block):
                        a.call_ms[b.name].append(host[b.name] - a.samples[b.name][-1])
                        a.ctx[b.name].append(float(v))
                    a.totals.append(total)
        return a

    attempts: list[_Attempt] = []
    with _progress(rounds * len(timers) + lookup_work, f"profiling {compiled.model_name} on {session.address.url}", progress) as bar:
        while True:
            attempts.append(run_rounds(bar))
            attempts[-1].worst_cv = _worst_cv(attempts[-1], chain is not None, config.trim)
            if attempts[-1].worst_cv <= config.cv_warn or len(attempts) >= config.attempts:
                break
            if log is not None:
                log(f"attempt {len(attempts)}: worst variation {attempts[-1].worst_cv:.1%} is above "
                    f"{config.cv_warn:.0%}; timing the blocks again")
            bar.total += rounds * len(timers)
            bar.refresh()
        kept = min(range(len(attempts)), key=lambda i: attempts[i].worst_cv)
        best = attempts[kept]
        samples, ctx, call_ms, totals, energy_uj, runs = best.samples, best.ctx, best.call_ms, best.totals, best.energy_uj, best.runs

        lookup: dict[str, dict[int, list[float]]] = {}
        for e in exits:
            ex = compile_lookup(e.feature_shape, e.dims, compiled.target.target)
            vm = session.load(ex, f"lookup_{e.name}")
            lookup[e.name] = {}
            for n in lookup_entries:
                li = LookupInputs.make(e.feature_shape, e.dims, int(n), seed=seed, encoder=e.encoder)
                t = KernelTimer(vm, session.device, [session.tensor(a) for a in li.arrays()], run_trim=config.run_trim)
                t.calibrate(config.lookup_sample_ms, min_number=config.min_runs)
                bar.update(1)
                vals = []
                for _ in range(config.lookup_repeats):
                    vals.append(t.sample_ms())
                    bar.update(1)
                lookup[e.name][int(n)] = vals

    whole = samples.pop("model", []) if compiled.whole is not None else []
    energy = None
    if counter is not None:
        energy = {n: energy_uj[n] / max(runs[n], 1) * 1e-3 for n in samples}
    isolated = None
    if chain is not None:
        # The blocks' kernels in context: each in-sequence call less what a Python-level call of that block costs
        # beyond time_evaluator's loop on the same input (a constant per block, so that the difference of two noisy
        # timings does not add to the samples' spread).
        over = {n: call_overhead_ms(v) for n, v in call_ms.items()}
        isolated, samples = samples, {n: [x - over[n] for x in v] for n, v in ctx.items()}
    return Measurement(samples, whole, numbers, lookup, tuple(int(n) for n in lookup_entries), energy,
                       None if counter is None else counter.name, config, isolated,
                       over if chain else None, totals if chain else None, chain.passes if chain else 0,
                       tuple(a.worst_cv for a in attempts), kept)
