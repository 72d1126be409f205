"""What the runtime costs beyond the kernels, measured the way it runs them (for a profile's ``runtime`` section).

A profile's block latencies are TVM ``time_evaluator`` medians: the kernel run back to back inside the VM, with no
Python in between. The runtime (:mod:`runtime.engine`) calls each block's VM function from Python, once per block
per frame, copies the frame in, encodes and searches with numpy, and updates its cache. This module times those
parts with the runtime's own code on this machine:

- ``dispatch_ms[block]``: the median of a Python-level ``vm["main"](x)`` call (timed with ``perf_counter`` around
  the call, as :meth:`runtime.engine.Runtime.step` does) minus ``time_evaluator``'s median of the same kernel on
  the same input, both measured here in interleaved rounds (clamped at 0);
- ``frame_ms``: a plain (no-cache) runtime's frame latency minus its blocks' timed calls: copying the frame in,
  reading the answer, the bookkeeping of a frame;
- ``lookup``: at each exit point, for 1..1024 cached entries, what the runtime does there: read the block's
  output, encode it (:class:`runtime.encoders.ExitEncoder`) and search the cache
  (:meth:`runtime.smtm.CacheDecider.lookup`, calibrated metric, no match), timed right after the exit's block has
  run (as in the runtime: a lookup straight after the block costs markedly more than the same lookup repeated);
- ``update_ms``: a confirmed frame's cache update (:meth:`runtime.smtm.CacheDecider.confirm`) and the refresh of
  the search view that the next frame then does.

Medians throughout, so that interference from other processes (which only ever slows a run down) counts little.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

ENTRIES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
METHOD = ("measured-runtime: Python-level block calls (perf_counter, as runtime.engine) minus TVM time_evaluator of "
          "the same kernel, interleaved rounds, medians; frame overhead = no-cache Runtime.step minus its block calls; "
          "lookup = runtime.encoders encode + runtime.smtm.CacheDecider.lookup (calibrated, no match) right after the exit's "
          "block; update = CacheDecider.confirm right after the last block + the next frame's view refresh; hit = "
          "CacheDecider.hit")


def _median_call_ms(fn: Callable[[], Any], calls: int) -> float:
    pc = time.perf_counter
    out = np.empty(calls)
    for i in range(calls):
        t0 = pc()
        fn()
        out[i] = pc() - t0
    return float(np.median(out)) * 1000.0


def _no_cache_bundle(model) -> Any:  # noqa: ANN001
    """What :class:`runtime.engine.Runtime` reads of a bundle, for a plain (no-cache) run of ``model``."""
    m = SimpleNamespace(blocks=list(model.blocks), input_shape=list(model.input_shape),
                        exit_points=list(model.exit_points), num_classes=int(model.num_classes))
    return SimpleNamespace(model=m, policy=SimpleNamespace(kind="no-cache"), enabled=(), encoders={}, path="(measured)")


def _lookup_decider(exits: Sequence[str], dims: Sequence[int], num_classes: int):
    """A CacheDecider with the smtm preset's cache and a calibrated metric that never matches."""
    from runtime.smtm import CacheDecider
    from simulator.policy import MetricConfig
    from simulator.presets import preset

    pol = preset("smtm", tuple(exits))
    pol = pol.model_copy(update={"metric": MetricConfig(kind="calibrated", thresholds=dict(pol.metric.thresholds),
                                                        calibration={e: [-50.0, 0.1, 0.1, 0.1] for e in exits})})
    return CacheDecider(pol, tuple(exits), tuple(exits), tuple(dims), num_classes)


def measure_overheads(model, encoders: Mapping[str, Any], blocks=None, *, rounds: int = 15, calls: int = 200,  # noqa: ANN001
                      entries: Sequence[int] = ENTRIES, seed: int = 0,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The ``runtime`` section of a profile for ``model`` (a BlockwiseModel) and its semantic encoders
    (``{exit: encoder}`` with ``mean``, ``components``, ``centres`` as numpy arrays) on this machine.

    ``blocks``: a :class:`runtime.blocks.TvmBlocks` (default: compiled here with the shipped tuning records).
    """
    from kernels.tvm.timing import KernelTimer
    from runtime.encoders import ExitEncoder
    from runtime.engine import Runtime

    say = progress or (lambda _msg: None)
    if blocks is None:
        from runtime.blocks import compiled_blocks

        say("compiling blocks")
        blocks = compiled_blocks(model)
    names = list(blocks.names)
    rng = np.random.default_rng(seed)
    x0 = rng.random((1, *model.input_shape), dtype=np.float32)
    # Each block's input, on the device.
    inputs, cur = [], blocks.input(x0)
    for fn in blocks.functions:
        inputs.append(cur)
        cur = fn(cur)
    # Dispatch and frame overhead: a plain (no-cache) runtime's frames, block by block as it times them, against
    # time_evaluator's samples of the same kernels, interleaved by round.
    say("dispatch and frame overhead")
    timers = [KernelTimer(vm, blocks.device, [x]) for vm, x in zip(blocks._keep, inputs)]
    for t in timers:
        t.calibrate(1.0)
    rt = Runtime(_no_cache_bundle(model), blocks)
    frames = rng.random((8, *model.input_shape), dtype=np.float32)
    per_round = max(10, calls // rounds)
    for i in range(per_round):  # warm-up
        rt.step(frames[i % len(frames)], t=float(i))
    te = np.zeros((rounds, len(names)))
    chain = np.zeros((rounds * per_round, len(names)))
    over = np.zeros(rounds * per_round)
    for r in range(rounds):
        te[r] = [t.sample_ms() for t in timers]
        for i in range(per_round):
            res = rt.step(frames[i % len(frames)], t=float(i))
            chain[r * per_round + i] = res.block_ms
            over[r * per_round + i] = res.latency_ms - float(res.block_ms.sum())
    dispatch = {n: round(max(0.0, float(np.median(chain[:, j]) - np.median(te[:, j]))), 6) for j, n in enumerate(names)}
    frame_ms = round(max(0.0, float(np.median(over))), 6)
    # Lookup: read the exit block's output, encode, search K entries (as Runtime.step does at an exit).
    say("lookup")
    exits = [e for e in model.exit_points if e in encoders]
    encs = [e if isinstance(e, ExitEncoder) else ExitEncoder(x, np.asarray(e.mean, np.float32),
                                                              np.asarray(e.components, np.float32),
                                                              np.asarray(e.centres, np.float32))
            for x, e in ((x, encoders[x]) for x in exits)]
    dims = [enc.dims for enc in encs]
    dec = _lookup_decider(exits, dims, int(model.num_classes))
    dmax = max(dims)
    vec = np.zeros((len(exits), dmax), dtype=np.float32)
    ins, cur = {}, blocks.input(x0)
    for j, fn in enumerate(blocks.functions):
        ins[names[j]] = (fn, cur)
        cur = fn(cur)
    to_numpy = blocks.to_numpy
    pc = time.perf_counter
    cts = []
    for n in entries:
        ct = rng.standard_normal((len(exits), dmax, int(n))).astype(np.float32)
        cts.append(ct / np.linalg.norm(ct, axis=1, keepdims=True))
    samples = np.zeros((rounds, len(entries), len(exits)))
    per_call = max(10, calls // rounds)
    for r in range(rounds):
        for a, n in enumerate(entries):
            dec.K, dec.n_hot, dec.slots = int(n), int(n), np.arange(int(n))
            dec.cold_stage = [False] * len(exits)
            dec.CT = cts[a]
            for k, (e, enc) in enumerate(zip(exits, encs)):
                fn, x = ins[e]
                d = dims[k]
                one = np.empty(per_call)
                for i in range(per_call):
                    # Right after the exit's block, as in the runtime (its threads, its caches).
                    fm = fn(x)
                    t0 = pc()
                    vec[k, :d] = enc.encode(to_numpy(fm))[0]
                    dec.lookup(k, vec[k])
                    one[i] = pc() - t0
                samples[r, a, k] = float(np.median(one)) * 1000.0
    med = np.median(samples, axis=0)  # (entries, exits)
    lookup = {e: [round(float(v), 6) for v in med[:, k]] for k, e in enumerate(exits)}
    # Update: a confirmed frame (insert, or moving average of a present class) and the next frame's view refresh.
    say("update")
    dec = _lookup_decider(exits, dims, int(model.num_classes))
    vecs = rng.standard_normal((64, len(exits), dmax)).astype(np.float32)
    classes = rng.integers(0, int(model.num_classes), size=calls * 2)
    upd = []
    last, x_last = ins[names[-1]]
    for i, c in enumerate(classes):
        dec.begin(float(i), False)
        last(x_last)  # right after the last block, as in the runtime
        t0 = pc()
        dec.confirm(int(c), vecs[i % len(vecs)])
        dec.begin(float(i) + 0.5, False)
        upd.append(pc() - t0)
    update_ms = round(float(np.median(upd[calls // 4:])) * 1000.0, 6)
    # Hit: recording the use of the matched class (a cold hit also promotes it), after a block and a lookup, as in
    # the runtime.
    say("hit")
    fn, x = ins[exits[0]]
    enc, d = encs[0], dims[0]
    hits = []
    for i in range(calls):
        occupied = np.flatnonzero(dec.cache.cls >= 0)
        slot = int(occupied[i % len(occupied)])
        dec.begin(float(len(classes) + i), False)
        vec[0, :d] = enc.encode(to_numpy(fn(x)))[0]
        dec.lookup(0, vec[0])
        t0 = pc()
        dec.hit(slot)
        hits.append(pc() - t0)
    hit_ms = round(float(np.median(hits)) * 1000.0, 6)
    return {"source": "measured-runtime", "method": METHOD, "processor": "cpu",
            "frame_ms": frame_ms, "dispatch_ms": dispatch, "update_ms": update_ms, "hit_ms": hit_ms,
            "lookup": {"entries": [int(n) for n in entries], "exits": lookup}}


def merge_overheads(profile_obj: Mapping[str, Any], runtime_section: Mapping[str, Any]) -> dict[str, Any]:
    """A profile (JSON object) with its ``runtime`` section set; nothing else changes."""
    from profiles.format import now_iso

    out = dict(profile_obj)
    sec = dict(runtime_section)
    sec.setdefault("created", now_iso())
    sec["processor"] = out["device"]["default_processor"] if sec.get("processor") not in \
        [p["name"] for p in out["device"]["processors"]] else sec["processor"]
    out["runtime"] = sec
    return out


def kernel_drift(blocks, model, profile_block_ms: Sequence[float], rounds: int = 5, seed: int = 0) -> dict[str, float]:  # noqa: ANN001
    """The blocks' kernels timed now (``time_evaluator``, as the profiler times them; medians of ``rounds``
    samples) against the profile's medians: tells a cost-model error from a machine that runs slower or faster
    now than when it was profiled (other load, frequency)."""
    from kernels.tvm.timing import KernelTimer

    rng = np.random.default_rng(seed)
    cur = blocks.input(rng.random((1, *model.input_shape), dtype=np.float32))
    inputs = []
    for fn in blocks.functions:
        inputs.append(cur)
        cur = fn(cur)
    timers = [KernelTimer(vm, blocks.device, [x]) for vm, x in zip(blocks._keep, inputs)]
    for t in timers:
        t.calibrate(1.0)
    now = np.median([[t.sample_ms() for t in timers] for _ in range(rounds)], axis=0)
    then = float(np.sum(profile_block_ms))
    return {"kernels_now_ms": float(np.sum(now)), "kernels_profiled_ms": then,
            "kernel_drift": float(np.sum(now)) / then - 1.0 if then else float("nan")}
