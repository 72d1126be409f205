"""Measure a compiled model on a device: every block, the whole model, and the semantic lookup at each
exit point for a range of cache sizes.

Blocks and the whole model are timed interleaved, round by round (one sample of each per round, after
warm-up rounds), so slow phases of the machine (other processes, frequency changes) hit all of them
alike and the sum of the per-block medians stays comparable with the whole model's median.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from kernels.tvm.compile import CompiledModel
from kernels.tvm.counters import EnergyCounter
from kernels.tvm.lookup import LookupInputs, compile_lookup
from kernels.tvm.rpc import Session
from kernels.tvm.timing import KernelTimer, TimingConfig

LOOKUP_ENTRIES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class ExitSpec:
    name: str
    feature_shape: tuple[int, int, int]
    dims: int
    encoder: Any = None  # kernels.reference.encoders.SemanticEncoder, or None for random projections


@dataclass
class Measurement:
    blocks: dict[str, list[float]]  # raw samples (ms), block order
    whole: list[float]
    numbers: dict[str, int]  # runs per sample
    lookup: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    lookup_entries: tuple[int, ...] = LOOKUP_ENTRIES
    energy_mj: dict[str, float] | None = None  # per block, from an energy counter
    counter: str | None = None
    config: TimingConfig = field(default_factory=TimingConfig)


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
) -> Measurement:
    rng = np.random.default_rng(seed)
    units = list(compiled.blocks) + ([compiled.whole] if compiled.whole is not None else [])
    timers: dict[str, KernelTimer] = {}
    for b in units:
        vm = session.load(b.executable, b.name)
        x = rng.standard_normal(b.input_shape).astype(np.float32)
        timers[b.name] = KernelTimer(vm, session.device, [session.tensor(x)])
    numbers = {name: t.calibrate(config.sample_ms) for name, t in timers.items()}

    samples: dict[str, list[float]] = {name: [] for name in timers}
    energy_uj = {name: 0.0 for name in timers}
    runs = {name: 0 for name in timers}
    rounds = config.warmup + config.repeats
    lookup_work = len(exits) * len(lookup_entries) * (config.lookup_repeats + 1)
    with _progress(rounds * len(timers) + lookup_work, f"profiling {compiled.model_name} on {session.address.url}", progress) as bar:
        for r in range(rounds):
            for name, t in timers.items():
                before = counter.read_uj() if counter is not None else 0
                ms = t.sample_ms()
                if r >= config.warmup:
                    samples[name].append(ms)
                    if counter is not None:
                        energy_uj[name] += counter.delta_uj(before, counter.read_uj())
                        runs[name] += t.number + 1  # time_evaluator's warm-up run included
                bar.update(1)

        lookup: dict[str, dict[int, list[float]]] = {}
        for e in exits:
            ex = compile_lookup(e.feature_shape, e.dims, compiled.target.target)
            vm = session.load(ex, f"lookup_{e.name}")
            lookup[e.name] = {}
            for n in lookup_entries:
                li = LookupInputs.make(e.feature_shape, e.dims, int(n), seed=seed, encoder=e.encoder)
                t = KernelTimer(vm, session.device, [session.tensor(a) for a in li.arrays()])
                t.calibrate(config.lookup_sample_ms)
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
    return Measurement(samples, whole, numbers, lookup, tuple(int(n) for n in lookup_entries), energy,
                       None if counter is None else counter.name, config)
