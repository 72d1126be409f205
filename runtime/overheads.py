"""What the runtime costs beyond the kernels, measured the way it runs them (for a profile's ``runtime`` section).

A local profile's block latencies are timed in context: the blocks' VM functions called in sequence from Python,
as the runtime calls them (:class:`kernels.tvm.timing.ChainTimer`); older and RPC profiles have TVM
``time_evaluator`` medians instead (each kernel run back to back inside the VM). The runtime (:mod:`runtime.engine`) calls each block's VM function from Python, once per block
per frame, copies the frame in, encodes and searches with numpy, and updates its cache. This module times those
parts with the runtime's own code on this machine:

- ``dispatch_ms[block]``: the median of the runtime's own call of the block (timed with ``perf_counter`` around
  the call by :meth:`runtime.engine.Runtime.step`) minus the median of the block timed the way the profile timed
  it (in context, or ``time_evaluator``), both measured here in interleaved rounds (clamped at 0);
- ``frame_ms``: a plain (no-cache) runtime's frame latency minus its blocks' timed calls: copying the frame in,
  reading the answer, the bookkeeping of a frame;
- ``lookup``: at each exit point, for 1..1024 cached entries, what the runtime does there: read the block's
  output, encode it (:class:`runtime.encoders.ExitEncoder`), round it to the search precision and search the cache
  (:meth:`runtime.smtm.CacheDecider.lookup`, calibrated metric, no match), timed in context: frames run through
  every block with a lookup at every exit point, as the runtime runs a frame that finds no match (a lookup
  repeated on its own, or right after only its own block, finds its encoder in cache and cost about a third
  less on this machine);
- ``update_ms``: a confirmed frame's cache update (:meth:`runtime.smtm.CacheDecider.confirm`) and the refresh of
  the search view that the next frame then does, timed right after a frame through every block and lookup;
- ``temporal_ms``: what the ``temporal`` exit metric adds to a frame, its drift from the video's last confirmed
  frame (:meth:`runtime.smtm.CacheDecider.observe_drift`), and ``hit_ms``, recording a hit
  (:meth:`runtime.smtm.CacheDecider.hit`), both timed after a frame that stopped at the first exit point;
- ``cold``: what a block costs beyond its warm price when the frames before it stopped at an exit point before
  the block, or were answered by an input level (row ``input``), by exit point and by how many frames ago the
  block last ran (:func:`measure_cold`).
- ``after_lookup``: what a block costs beyond its plain price in a frame that looked the cache up at an exit point
  before it, by exit point (:func:`measure_after_lookup`);
- ``input_ms``: a policy's input level (:class:`runtime.input_level.InputLevel`) at the start of a frame after a
  full one: describing the new frame and comparing it with the last one that ran the model.
- ``cold_stage_ms``: per exit point, what a lookup adds when it also searches a cold level, beyond a one-level
  search of as many entries (:func:`measure_cold_stage`).

Medians throughout, so that interference from other processes (which only ever slows a run down) counts little.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from profiles.format import INPUT_KEY

ENTRIES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
METHOD = ("measured-runtime: the runtime's block calls (perf_counter, runtime.engine) minus the blocks timed as the "
          "profile timed them ({timing}), interleaved rounds, medians; frame overhead = no-cache Runtime.step minus its block calls; "
          "lookup = runtime.encoders encode, float16 rounding + runtime.smtm.CacheDecider.lookup (calibrated, no match) at every "
          "exit of frames run through all blocks; update = CacheDecider.confirm after a frame through all blocks and lookups + the next frame's view "
          "refresh; hit = CacheDecider.hit and temporal = CacheDecider.observe_drift after a frame stopped at the first exit; cold = a full frame's block calls after 1-8 frames that stopped at an exit (or that the "
          "input level answered), in steady patterns, against full frames in a row, patterns interleaved, medians; after_lookup = "
          "block calls in full frames with a lookup at one exit against none, interleaved frame by frame, medians; input = "
          "runtime.input_level describe + compare at the start of a frame after a full one; cold_stage = lookups "
          "searching a hot level of 8 then all 16 entries against one level of 16, rounds alternated, medians")


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


FRAMES = 8  # distinct inputs the lookup timer cycles through


class LookupTimer:
    """Times the runtime's lookup at every exit point for each of ``entries`` cached entries, in context: frames run
    through every block, and at each exit point the runtime's read, encode, float16 rounding and search
    (:meth:`runtime.smtm.CacheDecider.lookup`, calibrated metric, no match), as in a frame that finds no match (a
    lookup repeated on its own, or right after only its own block, finds its encoder in cache and cost about a
    third less on this machine). Every frame is a new input, as the runtime's are: with one input repeated, b1's
    lookup cost 37 us against 45 us with a new frame each time (medians of 12 alternating rounds, 2026-11-22)."""

    def __init__(self, blocks, model, encoders: Mapping[str, Any], entries: Sequence[int],  # noqa: ANN001
                 rng: np.random.Generator, exits: Sequence[str] | None = None) -> None:
        from runtime.encoders import ExitEncoder

        self.blocks, self.entries = blocks, [int(n) for n in entries]
        self.exits = [e for e in model.exit_points if e in encoders and (exits is None or e in exits)]
        self.encs = [e if isinstance(e, ExitEncoder) else ExitEncoder(x, np.asarray(e.mean, np.float32),
                                                                       np.asarray(e.components, np.float32),
                                                                       np.asarray(e.centres, np.float32))
                     for x, e in ((x, encoders[x]) for x in self.exits)]
        self.dims = [enc.dims for enc in self.encs]
        self.dec = _lookup_decider(self.exits, self.dims, int(model.num_classes))
        self.dmax = max(self.dims)
        self.vec = np.zeros((len(self.exits), self.dmax), dtype=np.float32)
        self.cts = []
        for n in self.entries:
            ct = rng.standard_normal((len(self.exits), self.dmax, n)).astype(np.float32)
            self.cts.append(ct / np.linalg.norm(ct, axis=1, keepdims=True))
        self.at_exit = {e: k for k, e in enumerate(self.exits)}
        self.frames = rng.random((FRAMES, *model.input_shape), dtype=np.float32)
        self._next = 0

    def use_entries(self, a: int, n_hot: int | None = None) -> None:
        """Search against the ``a``-th of ``entries`` from now on; with ``n_hot`` (fewer than them), the first
        ``n_hot`` as a hot level and then all of them (a cold stage) at every exit point, as a policy with a cold
        level searches."""
        dec, n = self.dec, self.entries[a]
        dec.K, dec.n_hot, dec.slots = n, n if n_hot is None else int(n_hot), np.arange(n)
        dec.cold_stage = [n_hot is not None] * len(self.exits)
        dec.CT = self.cts[a]

    def frame(self, upto: int, lookups: np.ndarray, calls: np.ndarray | None = None,
              at: frozenset[int] | None = None) -> None:
        """One frame on a new input through the first ``upto`` blocks, with the runtime's read, encode and search at
        each exit point on the way (``at``: only at these exit indices; as in a frame that finds no match until it
        stops), so that each lookup meets the caches the blocks before it left; each exit's lookup time (s) goes
        into ``lookups``, each block's call (s) into ``calls``."""
        from runtime.engine import SEARCH_DTYPE

        dec, vec, encs, dims, to_numpy, pc = self.dec, self.vec, self.encs, self.dims, self.blocks.to_numpy, time.perf_counter
        at_exit = self.at_exit
        cur = self.blocks.input(self.frames[self._next % FRAMES][None])
        self._next += 1
        for j, (fn, e) in enumerate(zip(self.blocks.functions[:upto], self.blocks.names)):
            tb = pc()
            cur = fn(cur)
            t0 = pc()
            if calls is not None:
                calls[j] = t0 - tb
            k = at_exit.get(e)
            if k is None or (at is not None and k not in at):
                continue
            vec[k, :dims[k]] = encs[k].encode(to_numpy(cur))[0].astype(SEARCH_DTYPE)
            dec.lookup(k, vec[k])
            lookups[k] = pc() - t0

    def sample(self, calls: int) -> np.ndarray:
        """Milliseconds, (entries, exits): per entry count the median of ``calls`` frames' lookups at each exit."""
        nb = len(self.blocks.functions)
        out = np.zeros((len(self.entries), len(self.exits)))
        one = np.empty((calls, len(self.exits)))
        for a in range(len(self.entries)):
            self.use_entries(a)
            for i in range(calls):
                self.frame(nb, one[i])
            out[a] = np.median(one, axis=0) * 1000.0
        return out


COLD_GAPS = (1, 2, 4, 8)  # frames since a block last ran, at which its cold price is measured


def _input_probe(frames: np.ndarray) -> Callable[[np.ndarray], None]:
    """The runtime's input-level probe on a frame (describe it, compare it with the last frame that ran the model),
    set never to match, so that every probe does the whole comparison."""
    from runtime.input_level import InputLevel

    level = InputLevel(1.0 + 1e-6, 1)
    level.ran(level.describe(frames[0]), 0)
    return lambda frame: level.reuse(level.describe(frame), False)


def measure_after_lookup(lt: LookupTimer, iterations: int, entries_index: int = 0,
                         seed: int = 0) -> dict[str, dict[str, float]]:
    """What a block costs beyond its price in plain inference when the frame looked the cache up at an exit point
    before it: the encoder's weights and the search push the later blocks' weights out of the caches. Inside the
    runtime's frames of a cached policy (exits b1 and b6; 2026-11-22, 1,800 frames), b7, b8 and the head cost 28, 19
    and 35 us more than in the no-cache frames interleaved with them, with the previous frame a full one (so not for
    lack of a recent run: :func:`measure_cold`); with every frame run to the end, its lookups at b1 and b6 never
    matching, 10, 5 and 11 us more. This measurement gave 7-10, 1 and 5-6 us: it accounts for the frame's own
    lookups, not for all of what the mix of a cached policy's frames costs the blocks.

    For each of ``lt``'s exit points ``e``: full frames with a lookup at ``e`` only, against full frames without
    one, every block's call timed; the conditions interleaved frame by frame, in a new random order each
    iteration; medians over ``iterations``. Returns ``{exit: {block after it: extra ms}}``, clamped at 0."""
    rng = np.random.default_rng(seed)
    nb = len(lt.blocks.functions)
    names = list(lt.blocks.names)
    conds = [frozenset()] + [frozenset([k]) for k in range(len(lt.exits))]
    lookups = np.empty(len(lt.exits))
    timed = np.empty((len(conds), iterations, nb))
    lt.use_entries(entries_index)
    for _ in range(2):  # warm-up
        lt.frame(nb, lookups)
    for i in range(iterations):
        for c in rng.permutation(len(conds)):
            lt.frame(nb, lookups, timed[c, i], at=conds[c])
    med = np.median(timed, axis=1) * 1000.0  # (conditions, blocks)
    out: dict[str, dict[str, float]] = {}
    for k, e in enumerate(lt.exits):
        j0 = names.index(e) + 1
        out[e] = {names[j]: round(max(0.0, float(med[k + 1, j] - med[0, j])), 6) for j in range(j0, nb)}
    return out


def measure_cold_stage(lt: LookupTimer, rounds: int, calls: int, entries_index: int = 0) -> dict[str, float]:
    """What a lookup costs beyond a one-level search of as many entries when the policy has a cold level and the hot
    level was not confident: :meth:`runtime.smtm.CacheDecider.lookup` then finds the top two of all the entries and
    applies the exit metric a second time. The similarities are computed once for both levels, so the kernel
    table's difference between the two entry counts does not price this; on this machine it was 5.2-6.4 us per lookup
    (2026-11-22), where the table's difference between 9 and 13 entries is under 1 us.

    In rounds, the ``entries_index``-th entry count searched as one level, then as a hot level of half of it plus
    the cold stage (never matching, so that every lookup does both), frames through every block with a lookup at
    every exit point; per exit the median over rounds of the difference of the rounds' medians, clamped at 0."""
    nb = len(lt.blocks.functions)
    n = lt.entries[entries_index]
    one = np.empty((calls, len(lt.exits)))
    diffs = np.empty((rounds, len(lt.exits)))
    for r in range(rounds):
        med = []
        for n_hot in (None, max(1, n // 2)):
            lt.use_entries(entries_index, n_hot)
            for i in range(calls):
                lt.frame(nb, one[i])
            med.append(np.median(one, axis=0))
        diffs[r] = med[1] - med[0]
    lt.use_entries(entries_index)
    return {e: round(max(0.0, float(v)) * 1000.0, 6) for e, v in zip(lt.exits, np.median(diffs, axis=0))}


COLD_PERIODS = 6  # periods of a pattern run in a row; the first two (the pattern settling in) are not timed


def measure_cold(lt: LookupTimer, iterations: int, gaps: Sequence[int] = COLD_GAPS, entries_index: int = 0,
                 seed: int = 0, input_row: bool = True) -> dict[str, dict[str, list[float]]]:
    """What a block costs beyond its warm price when it has not run for some frames because they stopped at an exit
    point before it: its weights and code are no longer in the caches. Inside the runtime's frames of a cached
    policy (exits b1 and b6; 1,800 frames, 2026-11-22), b7 cost 34 us more than in plain inference when the frame
    before had stopped at b6 and 57 us more when b7 had not run for 8 frames or more.

    For each exit ``e`` and gap ``g``, a steady pattern: ``g`` frames that stop at ``e`` (with the lookups on the
    way), then a full frame whose block calls are timed, ``COLD_PERIODS`` times in a row; against full frames in a
    row. What the blocks cost depends on more than the last frame: interleaving single periods of the conditions
    frame by frame had measured b7 after b6 at 5-21 us for gaps 1-8, where steady patterns gave 32-50 (and the
    runtime's frames 34-57). The patterns are interleaved in a new random order each iteration (each lasts well
    under the machine's slow and fast phases, seconds long here); medians over the timed frames, made
    non-decreasing in the gap. Returns ``{exit: {block after it: [extra ms at each gap]}}``, clamped at 0.

    With ``input_row``, also ``input``: frames that a policy's input level answered (the runtime describes the frame
    and compares it, :class:`runtime.input_level.InputLevel`, and runs no block), then a full frame that describes
    its frame first, as the runtime does; priced for every block."""
    from scipy.optimize import isotonic_regression

    rng = np.random.default_rng(seed)
    nb = len(lt.blocks.functions)
    names = list(lt.blocks.names)
    rows_of = [*lt.exits, *([INPUT_KEY] if input_row else [])]
    conds = [(None, 0)] + [(e, int(g)) for e in rows_of for g in gaps]
    input_probe = _input_probe(lt.frames)
    probe = lambda: input_probe(lt.frames[int(rng.integers(len(lt.frames)))])  # noqa: E731
    lookups = np.empty(len(lt.exits))
    kept = COLD_PERIODS - 2
    timed = np.empty((len(conds), iterations * kept, nb))
    lt.use_entries(entries_index)
    for _ in range(2):  # warm-up
        lt.frame(nb, lookups)
    for i in range(iterations):
        for c in rng.permutation(len(conds)):
            e, g = conds[c]
            at_input = e == INPUT_KEY
            stop = nb if e is None else 0 if at_input else names.index(e) + 1
            for r in range(COLD_PERIODS):
                for _ in range(g):
                    probe() if at_input else lt.frame(stop, lookups)
                if at_input:
                    probe()
                lt.frame(nb, lookups, timed[c, i * kept + r - 2] if r >= 2 else None)
    med = np.median(timed, axis=1) * 1000.0  # (conditions, blocks)
    out: dict[str, dict[str, list[float]]] = {}
    for e in rows_of:
        k = -1 if e == INPUT_KEY else names.index(e)
        rows = np.array([med[conds.index((e, int(g)))] - med[0] for g in gaps])  # (gaps, blocks)
        # More frames in between can only push more out of the caches: each block's prices are made non-decreasing
        # in the gap (a least-squares fit), which evens out single medians (one measurement gave b3 after b1
        # 9, 23, 7, 9 us at gaps 1, 2, 4, 8).
        out[e] = {names[j]: [round(max(0.0, float(v)), 6) for v in isotonic_regression(rows[:, j]).x]
                  for j in range(k + 1, nb)}
    return out


def measure_overheads(model, encoders: Mapping[str, Any], blocks=None, *, rounds: int = 15, calls: int = 200,  # noqa: ANN001
                      entries: Sequence[int] = ENTRIES, seed: int = 0, in_context: bool = True,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The ``runtime`` section of a profile for ``model`` (a BlockwiseModel) and its semantic encoders
    (``{exit: encoder}`` with ``mean``, ``components``, ``centres`` as numpy arrays) on this machine.

    ``blocks``: a :class:`runtime.blocks.TvmBlocks` (default: compiled here with the shipped tuning records).
    ``in_context``: the profile's blocks were timed in context (else by ``time_evaluator``).
    """
    from runtime.engine import Runtime

    say = progress or (lambda _msg: None)
    if blocks is None:
        from runtime.blocks import compiled_blocks

        say("compiling blocks")
        blocks = compiled_blocks(model)
    names = list(blocks.names)
    rng = np.random.default_rng(seed)
    x0 = rng.random((1, *model.input_shape), dtype=np.float32)
    inputs = _block_inputs(blocks, x0)
    # Dispatch and frame overhead: a plain (no-cache) runtime's frames, block by block as it times them, against
    # the blocks timed as the profile timed them, interleaved by round.
    say("dispatch and frame overhead")
    reference = _block_timer(blocks, inputs, in_context)
    rt = Runtime(_no_cache_bundle(model), blocks)
    frames = rng.random((8, *model.input_shape), dtype=np.float32)
    per_round = max(10, calls // rounds)
    for i in range(per_round):  # warm-up
        rt.step(frames[i % len(frames)], t=float(i))
    te = np.zeros((rounds, len(names)))
    chain = np.zeros((rounds * per_round, len(names)))
    over = np.zeros(rounds * per_round)
    for r in range(rounds):
        te[r] = reference()
        for i in range(per_round):
            res = rt.step(frames[i % len(frames)], t=float(i))
            chain[r * per_round + i] = res.block_ms
            over[r * per_round + i] = res.latency_ms - float(res.block_ms.sum())
    dispatch = {n: round(max(0.0, float(np.median(chain[:, j]) - np.median(te[:, j]))), 6) for j, n in enumerate(names)}
    frame_ms = round(max(0.0, float(np.median(over))), 6)
    # Lookup: read the exit block's output, encode, search K entries (as Runtime.step does at an exit).
    say("lookup")
    lt = LookupTimer(blocks, model, encoders, entries, rng)
    per_call = max(10, calls // rounds)
    med = np.median([lt.sample(per_call) for _ in range(rounds)], axis=0)  # (entries, exits)
    lookup = {e: [round(float(v), 6) for v in med[:, k]] for k, e in enumerate(lt.exits)}
    exits, dims, dmax = lt.exits, lt.dims, lt.dmax
    say("cold stage of a lookup")
    at16 = lt.entries.index(16) if 16 in lt.entries else 0
    cold_stage = measure_cold_stage(lt, rounds, per_call, entries_index=at16)
    say("cold blocks")
    cold = measure_cold(lt, max(5, calls // 25), entries_index=at16, seed=seed)
    say("blocks after a lookup")
    after_lookup = measure_after_lookup(lt, max(40, calls), entries_index=at16, seed=seed)
    pc = time.perf_counter
    # The decider's bookkeeping, each timed where the runtime does it, after a frame's blocks and lookups: in a
    # tight loop of its own it finds numpy's code and its data in cache. Timed inside 600 frames of the runtime
    # (2026-11-22), a confirm cost 68 us, a hit's record 9 and the temporal drift 13; the tight loops had measured
    # 30, 3 and 5 minutes before; timed here after a frame, minutes later, 71, 5 and 9.
    nb = len(names)
    first_exit = names.index(exits[0]) + 1
    looked = np.empty(len(exits))
    # Update: a confirmed frame (insert, or moving average of a present class), right after a frame that ran to the
    # end, and the next frame's view refresh.
    say("update")
    dec = _lookup_decider(exits, dims, int(model.num_classes))
    vecs = rng.standard_normal((64, len(exits), dmax)).astype(np.float32)
    classes = rng.integers(0, int(model.num_classes), size=calls * 2)
    upd = []
    for i, c in enumerate(classes):
        dec.begin(float(i), False)
        lt.frame(nb, looked)
        t0 = pc()
        dec.confirm(int(c), vecs[i % len(vecs)])
        dec.begin(float(i) + 0.5, False)
        upd.append(pc() - t0)
    update_ms = round(float(np.median(upd[calls // 4:])) * 1000.0, 6)
    # Hit and temporal drift: in a frame that stops at the first exit point, after its block and lookup: the drift
    # of its vector from the last confirmed frame's (temporal metric), and recording the use of the matched class
    # (a cold hit also promotes it).
    say("hit and temporal")
    dec.anchor = np.asarray(vecs[0, 0, :dims[0]], dtype=np.float64)[None, :]
    hits, drifts = [], []
    for i in range(calls):
        occupied = np.flatnonzero(dec.cache.cls >= 0)
        slot = int(occupied[i % len(occupied)])
        dec.begin(float(len(classes) + i), False)
        lt.frame(first_exit, looked)
        t0 = pc()
        dec.observe_drift(lt.vec[0])
        t1 = pc()
        dec.hit(slot)
        hits.append(pc() - t1)
        drifts.append(t1 - t0)
    hit_ms = round(float(np.median(hits)) * 1000.0, 6)
    temporal_ms = round(float(np.median(drifts)) * 1000.0, 6)
    # The input level's probe, at the start of a frame after a full one: describe a new frame, compare it with the
    # last one that ran the model (a miss, so that every probe compares).
    say("input level")
    input_probe = _input_probe(lt.frames)
    probes = []
    for i in range(calls):
        lt.frame(nb, looked)
        t0 = pc()
        input_probe(lt.frames[(i + 1) % len(lt.frames)])
        probes.append(pc() - t0)
    input_ms = round(float(np.median(probes)) * 1000.0, 6)
    timing = "blocks in context, kernels.tvm.timing.ChainTimer" if in_context else "TVM time_evaluator of each block"
    return {"source": "measured-runtime", "method": METHOD.format(timing=timing), "processor": "cpu",
            "frame_ms": frame_ms, "dispatch_ms": dispatch, "update_ms": update_ms, "hit_ms": hit_ms,
            "temporal_ms": temporal_ms, "input_ms": input_ms,
            "lookup": {"entries": [int(n) for n in entries], "exits": lookup}, "cold_stage_ms": cold_stage,
            "cold": {"gaps": list(COLD_GAPS), "after_exit": cold}, "after_lookup": after_lookup}


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


def _block_inputs(blocks, x0: np.ndarray) -> list:  # noqa: ANN001
    """Each block's input on the device: the outputs of one pass from the frame ``x0``."""
    inputs, cur = [], blocks.input(x0)
    for fn in blocks.functions:
        inputs.append(cur)
        cur = fn(cur)
    return inputs


def _block_timer(blocks, inputs, in_context: bool, config=None) -> Callable[[], np.ndarray]:  # noqa: ANN001
    """One sample of every block's milliseconds, timed the way a profile times them (``config``: the profiler's
    :class:`kernels.tvm.timing.TimingConfig`, default its defaults: sample lengths, runs per sample, the slowest
    runs dropped): in context (the blocks in sequence from the first one's input, less each block's Python-level
    call overhead, as :func:`kernels.tvm.measure.measure_model` defines it) or each on its own by
    ``time_evaluator``."""
    from kernels.tvm.timing import CallTimer, ChainTimer, KernelTimer, TimingConfig, call_overhead_ms

    cfg = config or TimingConfig()
    timers = [KernelTimer(blocks.vm, blocks.device, [x], func=f, run_trim=cfg.run_trim)
              for f, x in zip(blocks.function_names, inputs)]
    for t in timers:
        t.calibrate(cfg.sample_ms, min_number=cfg.min_runs)
    if not in_context:
        return lambda: np.array([t.sample_ms() for t in timers])
    calls = [CallTimer(fn, x, t.number, run_trim=cfg.run_trim) for fn, x, t in zip(blocks.functions, inputs, timers)]
    over = np.array([call_overhead_ms([c.sample_ms() - t.sample_ms() for _ in range(5)]) for c, t in zip(calls, timers)])
    chain = ChainTimer(blocks.functions, inputs[0], blocks.device, run_trim=cfg.run_trim)
    chain.calibrate(cfg.context_sample_ms, min_passes=cfg.min_runs)
    return lambda: chain.sample_ms()[0] - over


def kernel_drift(blocks, model, profile_block_ms: Sequence[float], rounds: int = 5, seed: int = 0,  # noqa: ANN001
                 in_context: bool = True) -> dict[str, float]:
    """The blocks timed now, as the profiler timed them (medians of ``rounds`` samples), against the profile's
    medians: tells a cost-model error from a machine that runs slower or faster now than when it was profiled
    (other load, frequency)."""
    rng = np.random.default_rng(seed)
    inputs = _block_inputs(blocks, rng.random((1, *model.input_shape), dtype=np.float32))
    sample = _block_timer(blocks, inputs, in_context)
    now = np.median([sample() for _ in range(rounds)], axis=0)
    then = float(np.sum(profile_block_ms))
    return {"kernels_now_ms": float(np.sum(now)), "kernels_profiled_ms": then,
            "kernel_drift": float(np.sum(now)) / then - 1.0 if then else float("nan")}


class LookupProbe:
    """The runtime's lookups timed now (:class:`LookupTimer`, at ``probe_entries``, which must be in the table, and at
    the exit points ``exits``) against the profile's runtime lookup table, one short sample at a time so that
    :func:`runtime.cli.validate_cmd` can take them between the chunks of its runs: the numpy lookups' speed on a
    shared machine swings with its phases independently of the kernels' (b1 against 16 entries measured
    0.034-0.066 ms in four runs within half an hour), and a probe before and after the runs missed what the runs
    in between paid.

    With ``input_level``, each sample also times the input level's probe at the start of a frame after a full one,
    as :func:`measure_overheads` does (``input_now_ms``): on every frame of such a policy it is the largest single
    part of the decider's work (about 45 us here), and its profiled value moved by a third between two
    measurements minutes apart (0.044 and 0.058 ms, 2026-11-22), more than the lookups' speed said.

    The samples rotate over ``instances`` timers, each with arrays of its own: in one process of three, timers
    built alike and sampled in turn ran at 303-342 and 421-446 us (medians of ten rounds, 2026-11-22); and two
    validations with a single timer had measured the lookups at 1.8x and 2.3x the table while the runs' own
    lookups cost 1.1-1.3x their usual, and predicted 11% too high."""

    def __init__(self, blocks, model, encoders: Mapping[str, Any], lookup_table: Mapping[str, Sequence[float]],  # noqa: ANN001
                 table_entries: Sequence[int], probe_entries: Sequence[int], exits: Sequence[str] | None = None,
                 calls: int = 20, seed: int = 0, input_level: bool = False, instances: int = 3) -> None:
        self.timers = [LookupTimer(blocks, model, encoders, probe_entries, np.random.default_rng([seed, j]), exits=exits)
                       for j in range(max(1, int(instances)))]
        self.timer = self.timers[0]
        idx = [list(table_entries).index(int(n)) for n in probe_entries]
        self.then = np.array([[float(lookup_table[e][i]) for e in self.timer.exits] for i in idx])
        self.calls = int(calls)
        self.samples: list[np.ndarray] = []
        self.input_probes = [_input_probe(t.frames) for t in self.timers] if input_level else None
        self.input_samples: list[float] = []

    def sample(self) -> None:
        k = len(self.samples) % len(self.timers)
        lt = self.timers[k]
        self.samples.append(lt.sample(self.calls))
        if self.input_probes is not None:
            probe, pc = self.input_probes[k], time.perf_counter
            nb, looked, took = len(lt.blocks.functions), np.empty(len(lt.exits)), np.empty(self.calls)
            for i in range(self.calls):
                lt.frame(nb, looked)
                t0 = pc()
                probe(lt.frames[lt._next % len(lt.frames)])
                took[i] = pc() - t0
            self.input_samples.append(float(np.median(took)) * 1000.0)

    def result(self) -> dict[str, float]:
        """The median of the samples so far (at least one is taken) against the table."""
        if not self.samples:
            self.sample()
        now, then = float(np.median(self.samples, axis=0).sum()), float(self.then.sum())
        out = {"lookups_now_ms": now, "lookups_profiled_ms": then, "lookup_probe_samples": len(self.samples),
               "lookup_drift": now / then - 1.0 if then > 0 else float("nan")}
        if self.input_samples:
            out["input_now_ms"] = float(np.median(self.input_samples))
        return out


def probe_entries(table_entries: Sequence[int], sizes: Sequence[int]) -> list[int]:
    """The table's entry counts nearest (on a log scale) to each of the cache ``sizes`` a policy searches."""
    table = np.asarray(list(table_entries), np.float64)
    out = {int(table[int(np.argmin(np.abs(np.log(table) - np.log(max(1, s)))))]) for s in sizes}
    return sorted(out)


def speed_factor(profiled_ms: Sequence[float], now_ms: Sequence[float]) -> float:
    """How much slower (> 1) or faster the blocks run now than profiled, all together."""
    then = float(np.sum(profiled_ms))
    return float(np.sum(now_ms)) / then if then > 0 else 1.0


def at_current_speed(device, processor: str | None, calls_ms: Sequence[float], frame_ms: float | None,  # noqa: ANN001, ANN201
                     decider_factor: float = 1.0, cold_factor: float = 1.0, input_ms: float | None = None):
    """``device`` (a simulator DeviceModel) at the speed the machine ran the runtime's parts during a validation:
    each block costs ``calls_ms`` (the runtime's call of it, kernels and dispatch, as timed in the no-cache runs
    interleaved with the policy's), the first block also ``frame_ms`` (those runs' per-frame overhead beside their
    calls; ``None`` where the profile models none), and the decider's numpy work (lookups and their cold stages, cache
    updates, hits, the temporal metric's drift, the input level's probe) is scaled by ``decider_factor`` (its speed now against the profile's: a probe's, or
    else the kernels'), and what the blocks cost more cold or after a lookup by ``cold_factor`` (the kernels' speed
    now); the input level's probe costs ``input_ms`` where it was timed during the runs (else it is scaled too). A
    phase of a shared machine does not slow its parts alike: in one slow phase
    (2026-11-22) the kernels ran 1.47x their profiled time, the runtime's per-frame overhead 0.9x and its
    lookups 1.2x. Energy stays as profiled."""
    import dataclasses

    ms = np.array(calls_ms, dtype=np.float64)
    if frame_ms is not None:
        ms[0] += float(frame_ms)
    g = float(decider_factor)
    pc = device.processor(processor)
    procs = dict(device.processors)
    procs[pc.name] = dataclasses.replace(pc, block_ms=ms, cold_ms={e: t * cold_factor for e, t in pc.cold_ms.items()},
                                         after_lookup_ms={e: t * cold_factor for e, t in pc.after_lookup_ms.items()})
    return dataclasses.replace(device, processors=procs, update_ms=device.update_ms * g, hit_ms=device.hit_ms * g,
                               temporal_ms=device.temporal_ms * g,
                               input_ms=(float(input_ms) if input_ms is not None
                                         else None if device.input_ms is None else device.input_ms * g),
                               cold_stage_ms={e: v * g for e, v in device.cold_stage_ms.items()},
                               lookup_ms={e: v * g for e, v in device.lookup_ms.items()})
