"""``run_sim.py profile``: compile a model with TVM, time it on a device, and write its profile.

kernels/ does the compiling and timing (:mod:`kernels.tvm`); this module turns the measurement into a
:class:`profiles.format.Profile`: statistics after trimming, energy from a counter or a power model,
memory from the activation planner, and a description of the device.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import engram
from engram.errors import EngramError
from profiles.format import (BlockProfile, DeviceInfo, EnergyInfo, ExitLookup, LatencyStats, LookupTable, MemoryInfo,
                             ModelInfo, Processor, Profile, now_iso)
from profiles.power import DEVICE_DEFAULTS, PowerModel, get_power_model, offchip_bytes

ELEM_BYTES = 4  # float32 everywhere in this project
PLANNER = "overlap (Jokic et al., kernels.memplan)"


# ----------------------------------------------------------------------------------------------------------
# Pieces shared with the importers
# ----------------------------------------------------------------------------------------------------------


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


@dataclass(frozen=True)
class StaticBlock:
    """What a profile records about a block independent of the device."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    params: int
    is_exit: bool

    @property
    def param_bytes(self) -> int:
        return self.params * ELEM_BYTES

    def io_bytes(self, batch: int = 1) -> tuple[int, int]:
        return _prod(self.input_shape) * batch * ELEM_BYTES, _prod(self.output_shape) * batch * ELEM_BYTES

    def offchip(self, batch: int = 1) -> int:
        i, o = self.io_bytes(batch)
        return offchip_bytes(self.param_bytes, i, o)


def static_blocks(model: Any) -> list[StaticBlock]:
    from kernels.summary import block_costs

    return [StaticBlock(c.name, tuple(c.input_shape), tuple(c.output_shape), int(c.macs), int(c.params), bool(c.is_exit))
            for c in block_costs(model)]


def memory_info(model: Any, blocks: Sequence[StaticBlock]) -> MemoryInfo:
    """Weights (from the blocks) + activations as planned by kernels.memplan (issue 7)."""
    from kernels.memplan import graph_from_blockwise, plan_activation_memory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = graph_from_blockwise(model, elem_bytes=ELEM_BYTES)
    r = plan_activation_memory(graph)
    return MemoryInfo(sum(b.param_bytes for b in blocks), int(r.overlap_bytes), PLANNER, int(r.pingpong_bytes),
                      int(r.lower_bound_bytes), int(r.greedy_bytes))


def semantic_dims(model: Any, encoders: Mapping[str, Any] | None) -> dict[str, int]:
    """Exit point -> semantic vector size (the reference encoders', else min(32, channels))."""
    if encoders:
        return {e: int(encoders[e].dims) for e in model.exit_points}
    out = {}
    shapes = {b.name: b.output_shape for b in static_blocks(model)}
    for e in model.exit_points:
        out[e] = int(min(32, shapes[e][0]))
    return out


def model_info(model: Any, dims: Mapping[str, int] | None, tuning: Mapping[str, Any] | None = None, batch: int = 1) -> ModelInfo:
    fp = model.fingerprint()
    return ModelInfo(model.name, tuple(model.input_shape), batch, ELEM_BYTES, fp["architecture"], fp["weights"],
                     tuple(model.block_names), tuple(model.exit_points), None if dims is None else dict(dims),
                     None if tuning is None else dict(tuning))


def block_profile(b: StaticBlock, latency: Mapping[str, LatencyStats], energy: Mapping[str, float], batch: int = 1) -> BlockProfile:
    i, o = b.io_bytes(batch)
    return BlockProfile(b.name, b.input_shape, b.output_shape, b.macs,
                        b.params, b.param_bytes, i, o, b.is_exit, dict(latency), dict(energy))


def modelled_energy(b: StaticBlock, latency_ms: float, pm: PowerModel) -> float:
    return round(pm.energy_mj(latency_ms, b.offchip()), 9)


def lookup_offchip_bytes(feature_shape: Sequence[int], dims: int, entries: int) -> int:
    """Feature map read + encoder (mean, projection) + the cached entries."""
    c = int(feature_shape[0])
    return (_prod(feature_shape) + c + c * dims + entries * dims) * ELEM_BYTES


def energy_info(models: Mapping[str, PowerModel], counter: str | None, note: str | None = None) -> EnergyInfo:
    if counter is not None:
        note = note or (f"measured with {counter} around each block's timing (package energy per run, includes the "
                        "other cores' idle share); idle power from the power model")
        method = "measured"
    else:
        note = note or ("modelled: energy = active power x latency + off-chip bytes x energy per byte (see each "
                        "power model); no energy counter on this device")
        method = "modelled"
    return EnergyInfo(method, counter, dict(models), {p: m.idle_power_mw for p, m in models.items()}, note)


# ----------------------------------------------------------------------------------------------------------
# Local / RPC profiling
# ----------------------------------------------------------------------------------------------------------


def local_device_description() -> dict[str, Any]:
    cpu = None
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if cpu is None and line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if mhz is None and line.startswith("cpu MHz"):
                mhz = round(float(line.split(":", 1)[1]), 1)
    except OSError:
        pass
    try:
        mx = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().strip()
        mhz = round(int(mx) / 1000, 1)
    except (OSError, ValueError):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    return {"cpu_model": cpu or platform.processor() or None, "cores": cores, "frequency_mhz": mhz,
            "os": platform.platform()}


def load_profile_model(name: str, input_size: int | None = None) -> tuple[Any, dict | None]:
    """The model to profile and its semantic encoders (the trained reference CNN has real ones)."""
    if name == "reference":
        from kernels.reference.store import load_reference

        ref = load_reference()
        if input_size not in (None, ref.model.input_shape[-1]):
            raise EngramError(f"the trained reference CNN takes {ref.model.input_shape[-1]}x{ref.model.input_shape[-1]} "
                              f"inputs, not {input_size}")
        return ref.model, ref.encoders
    from kernels.tvm.tune import load_zoo_model

    return load_zoo_model(name, input_size), None


def profile_model(
    model: Any,
    device: str = "local",
    *,
    target: str | None = None,
    config: Any = None,
    power_model: str | None = None,
    dram_pj_per_byte: float | None = None,
    encoders: Mapping[str, Any] | None = None,
    device_name: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    command: str | None = None,
    compiled: Any = None,
) -> Profile:
    """Compile ``model`` for ``target`` (or reuse ``compiled``, a :class:`kernels.tvm.compile.CompiledModel` of
    it), time it on ``device`` and return its profile."""
    from kernels.tvm.compile import compile_model
    from kernels.tvm.counters import find_energy_counter
    from kernels.tvm.measure import ExitSpec, measure_model
    from kernels.tvm.rpc import open_session, parse_device
    from kernels.tvm.targets import resolve_target
    from kernels.tvm.timing import TimingConfig, latency_stats

    import tvm

    config = config or TimingConfig()
    addr = parse_device(device)
    spec = resolve_target(target)
    if addr.kind == "local" and not spec.runnable_locally:
        raise EngramError(f"target {spec.name} does not run on this machine; use --device rpc://HOST:PORT")
    if addr.kind == "local":
        from kernels.tvm.threads import use_threads

        # What the kernels really run with (the pool cannot change once started in this process): the runtime
        # runs with the profile's count.
        threads = use_threads(threads)
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    blocks = static_blocks(model)
    dims = semantic_dims(model, encoders)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if compiled is None:
            compiled = compile_model(model, spec)
        elif compiled.target.name != spec.name:
            raise EngramError(f"the compiled model is for {compiled.target.name}, not {spec.name}")
    for w in caught:
        if "tuning records" in str(w.message) or "untuned" in str(w.message):
            warn(str(w.message))

    by_name = {b.name: b for b in blocks}
    exits = [ExitSpec(e, tuple(by_name[e].output_shape), dims[e], (encoders or {}).get(e)) for e in model.exit_points]
    counter = find_energy_counter() if addr.kind == "local" else None
    with open_session(addr, spec) as session:
        m = measure_model(compiled, session, config, exits, progress=progress, counter=counter, log=warn)

    pm_name = power_model or DEVICE_DEFAULTS["local"]
    pm = get_power_model(pm_name, dram_pj_per_byte)
    if threads:
        pm = pm.for_cores(threads)  # as many cores busy as the kernels ran threads on
    proc = spec.kind
    prof_blocks, unsteady = [], False
    for b in blocks:
        st = latency_stats(m.blocks[b.name], config.trim)
        note = (f"in context (the blocks run in sequence, less the call overhead), {m.context_passes} passes per sample"
                if m.in_context
                else f"isolated (time_evaluator), {m.numbers[b.name]} runs per sample")
        lat = LatencyStats("measured", **st, note=note)
        if st["cv"] > config.cv_warn:
            warn(f"block {b.name}: variation {st['cv']:.1%} is above {config.cv_warn:.0%} (median "
                 f"{st['median_ms']:.4f} ms); the machine was busy or the block is too short to time reliably")
            unsteady = True
        energy = m.energy_mj[b.name] if m.energy_mj is not None else modelled_energy(b, st["median_ms"], pm)
        prof_blocks.append(block_profile(b, {proc: lat}, {proc: round(energy, 9)}))
    if unsteady and addr.kind == "local" and threads > 1:
        # Parallel kernels wait for their slowest thread: on a 2-vCPU VM whose host takes one vCPU away now and
        # then, two threads ran the reference CNN at 0.53 or 0.97 ms by phase, one thread at 0.71-0.74 ms.
        warn(f"{threads} threads: on a shared machine fewer (--threads) may time more steadily")
    whole = LatencyStats("measured", **latency_stats(m.whole, config.trim), note=f"{m.numbers['model']} runs per sample")

    lookup_exits = {}
    for e in exits:
        med, p90, cvs, en = [], [], [], []
        for n in m.lookup_entries:
            st = latency_stats(m.lookup[e.name][n], config.trim)
            med.append(st["median_ms"])
            p90.append(st["p90_ms"])
            cvs.append(st["cv"])
            en.append(round(pm.energy_mj(st["median_ms"], lookup_offchip_bytes(e.feature_shape, e.dims, n)), 9))
        lookup_exits[e.name] = ExitLookup(e.dims, tuple(e.feature_shape), tuple(med), tuple(en), tuple(p90), tuple(cvs))
    lookup = LookupTable(m.lookup_entries, "measured",
                         "TVM kernel per exit point: global average pool, subtract mean, project to d, L2-normalise, "
                         "cosine scores against n entries, top-1 score and index, runner-up score "
                         "(kernels.tvm.lookup); timed like the blocks", proc, lookup_exits)

    desc = local_device_description() if addr.kind == "local" else {"cpu_model": None, "cores": None,
                                                                      "frequency_mhz": None, "os": None}
    name = device_name or ("local: " + (desc["cpu_model"] or platform.machine()) if addr.kind == "local" else addr.url)
    device_info = DeviceInfo(
        name=name, kind=addr.kind, runtime=f"TVM {tvm.__version__} Relax VM", processors=(Processor(proc, spec.kind, spec.name),),
        default_processor=proc, address=None if addr.kind == "local" else addr.url, cpu_model=desc["cpu_model"],
        cores=desc["cores"], frequency_mhz=desc["frequency_mhz"], os=desc["os"], tvm_version=tvm.__version__,
        target=spec.to_json(), threads=threads)
    tuning = {**compiled.records.to_json(), "tuned_kernels": sum(b.scheduled for b in compiled.blocks),
              "kernels": sum(b.kernels for b in compiled.blocks)}
    measurement = {"method": "measured: TVM time_evaluator on the device, blocks and whole model interleaved by round",
                   **config.to_json(), "runs_per_sample": m.numbers, "block_timing": "isolated",
                   "attempts": {"worst_cv": [round(v, 6) for v in m.attempt_worst_cv], "kept": m.kept_attempt}}
    if m.in_context:
        measurement.update({
            "method": ("measured: blocks in context (the per-block VM functions called in sequence, each on the previous "
                       "block's output, perf_counter around each call, as the runtime runs them) less each block's "
                       "Python-level call overhead (the median over rounds of back-to-back calls minus time_evaluator "
                       "on the same input, side by side); whole model and the isolated blocks by TVM time_evaluator; all interleaved by round"),
            "block_timing": "in-context", "context_passes_per_sample": m.context_passes,
            "isolated_median_ms": {n: latency_stats(v, config.trim)["median_ms"] for n, v in m.isolated.items()},
            "call_overhead_median_ms": {n: round(v, 6) for n, v in m.call_overhead.items()},
            "blockwise_pass": latency_stats(m.chain, config.trim)})
    return Profile(
        created=now_iso(), generator={"engram": engram.__version__, "command": command or "profiles.profiler.profile_model"},
        device=device_info, model=model_info(model, dims, tuning), measurement=measurement, blocks=tuple(prof_blocks),
        whole_model={proc: whole}, lookup=lookup, energy=energy_info({proc: pm}, m.counter),
        memory=memory_info(model, blocks))


def high_variation(profile: Profile, threshold: float) -> list[tuple[str, float]]:
    out = []
    for b in profile.blocks:
        for s in b.latency.values():
            if s.cv is not None and s.cv > threshold:
                out.append((b.name, s.cv))
    return out
