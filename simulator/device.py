"""What the simulator needs to know about a device, as plain arrays.

Built from a device profile (``profiles.format.Profile``) by :func:`from_profile`, or by hand in tests. All
times are milliseconds, energies millijoules, powers milliwatts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from engram.errors import EngramError


@dataclass(frozen=True)
class ProcessorCosts:
    name: str
    block_ms: np.ndarray  # (blocks,) latency of each block, model order
    block_mj: np.ndarray  # (blocks,) energy of each block
    idle_mw: float  # power between frames
    active_mw: float  # power while searching the cache / updating it (lookup energy when not tabulated)
    # A block's extra ms when it has not run for some frames because they stopped at an exit point before it:
    # exit -> (blocks, gaps) array (0 up to the exit's block), at ``cold_gaps`` frames since the block last ran.
    cold_ms: Mapping[str, np.ndarray] = field(default_factory=dict)
    cold_gaps: tuple[int, ...] = ()
    # A block's extra ms in a frame that looked the cache up at an exit point before it: exit -> (blocks,) (0 up to
    # the exit's block).
    after_lookup_ms: Mapping[str, np.ndarray] = field(default_factory=dict)

    def cold_by_gap(self) -> dict[str, np.ndarray]:
        """Per exit, each block's cold price at every whole gap 0..max(cold_gaps) (blocks, gaps + 1): linear
        between the measured gaps, 0 at gap 0; a longer gap is priced as the longest."""
        if not self.cold_ms:
            return {}
        xs = np.concatenate(([0.0], np.asarray(self.cold_gaps, np.float64)))
        whole = np.arange(int(self.cold_gaps[-1]) + 1, dtype=np.float64)
        return {e: np.array([np.interp(whole, xs, np.concatenate(([0.0], row))) for row in t])
                for e, t in self.cold_ms.items()}


@dataclass(frozen=True)
class DeviceModel:
    name: str
    model_name: str
    fingerprint: Mapping[str, str] | None
    blocks: tuple[str, ...]
    exits: tuple[str, ...]  # exit points, each named after the block it follows
    processors: Mapping[str, ProcessorCosts]
    default_processor: str
    lookup_entries: np.ndarray  # table points (number of cached entries compared)
    lookup_ms: Mapping[str, np.ndarray]  # exit -> ms at lookup_entries (encode + search)
    lookup_mj: Mapping[str, np.ndarray]  # exit -> mJ at lookup_entries
    update_ms: float  # writing one class's reference vectors into the cache (all exits)
    model_bytes: int  # weights + planned activations
    semantic_dims: Mapping[str, int] = field(default_factory=dict)
    source: str = ""
    hit_ms: float = 0.0  # recording a cache hit (the runtime's bookkeeping; 0 unless the profile measured it)
    temporal_ms: float = 0.0  # the temporal exit metric's drift per frame (0 unless the profile measured it)
    input_ms: float | None = None  # an input level's descriptor and comparison per frame (None: not measured)
    # exit -> what a lookup that also searches the cold level adds beyond the table's one-level search of as many
    # entries (the runtime's second top-two and exit metric; empty unless the profile measured it)
    cold_stage_ms: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.exits:
            if e not in self.blocks:
                raise EngramError(f"exit point {e!r} is not a block of {self.model_name}")
        if self.default_processor not in self.processors:
            raise EngramError(f"default processor {self.default_processor!r} is not among {list(self.processors)}")

    def processor(self, name: str | None) -> ProcessorCosts:
        p = name or self.default_processor
        try:
            return self.processors[p]
        except KeyError:
            raise EngramError(f"processor {p!r} is not in the profile (it has: {', '.join(self.processors)})") from None

    def input_reuse_cost(self, processor: str | None = None) -> tuple[float, float]:
        """(ms, mJ) of an input level's probe on every frame: describing the input and comparing it with one
        stored descriptor. Where the runtime's overheads were not measured, it is charged as a lookup at the
        model's first exit against one entry (averaging the frame down and one dot product are of the same order
        as pooling and projecting that exit's small feature map)."""
        if self.input_ms is not None:
            return self.input_ms, self.input_ms * self.processor(processor).active_mw / 1000.0
        return self.lookup_cost(self.exits[0], 1) if self.exits else (0.0, 0.0)

    def exit_block_index(self, exit: str) -> int:
        return self.blocks.index(exit)

    def lookup_cost(self, exit: str, entries: int) -> tuple[float, float]:
        """(ms, mJ) of encoding at ``exit`` and comparing against ``entries`` cached entries (0 -> no lookup)."""
        if entries <= 0:
            return 0.0, 0.0
        xs = self.lookup_entries
        return _interp(xs, self.lookup_ms[exit], entries), _interp(xs, self.lookup_mj[exit], entries)


    def lookup_costs(self, exit: str, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`lookup_cost`."""
        entries = np.asarray(entries, dtype=np.float64)
        ms = _interp_many(self.lookup_entries, self.lookup_ms[exit], entries)
        mj = _interp_many(self.lookup_entries, self.lookup_mj[exit], entries)
        zero = entries <= 0
        return np.where(zero, 0.0, ms), np.where(zero, 0.0, mj)


def _interp_many(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])) if len(xs) > 1 else 0.0
    out = np.interp(x, xs, ys)  # clamps at both ends
    return np.where(x > xs[-1], ys[-1] + slope * (x - xs[-1]), out)


def _interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Linear in the table; below the first point its value; above the last, the last slope extended."""
    if x <= xs[0]:
        return float(ys[0])
    if x <= xs[-1]:
        return float(np.interp(x, xs, ys))
    slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
    return float(ys[-1] + slope * (x - xs[-1]))


# Cost of writing one class's reference vectors into the cache, as a multiple of the cheapest lookup
# (comparing against one entry reads the same number of values). Profiles do not time updates separately.
UPDATE_PER_LOOKUP = 1.0


def _over_blocks(per_exit: Mapping[str, Mapping[str, object]], blocks: Sequence[str],
                 each: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``{exit: {block after it: value(s)}}`` as ``{exit: array over every block}`` (0 up to the exit's block)."""
    out = {}
    for e, per_block in per_exit.items():
        t = np.zeros((len(blocks), *each))
        for b, v in per_block.items():
            t[blocks.index(b)] = v
        out[e] = t
    return out


def from_profile(profile, semantic_dims: Mapping[str, int] | None = None) -> DeviceModel:
    """Arrays from a ``profiles.format.Profile`` (median latencies)."""
    blocks = tuple(profile.block_names)
    rt = getattr(profile, "runtime", None)  # the runtime's own overheads (optional; older profiles have none)
    procs = {}
    for p in profile.processors:
        if not all(p in b.latency for b in profile.blocks):
            continue  # a processor that does not run every block cannot run the model
        ms = np.array([profile.latency_ms(b, p) for b in blocks], dtype=np.float64)
        mj = np.array([profile.energy_mj(b, p) for b in blocks], dtype=np.float64)
        idle = profile.idle_power_mw(p)
        active = float(np.sum(mj) / np.sum(ms) * 1000.0) if np.sum(ms) > 0 else idle
        if rt is not None and rt.processor == p:
            # Every block executed costs its dispatch as the runtime calls it; the frame's own overhead (copy-in,
            # answer) is charged with the first block, which every frame runs. Energy: the processor's active
            # power over the added time.
            extra = np.array([rt.dispatch_ms[b] for b in blocks], dtype=np.float64)
            extra[0] += rt.frame_ms
            ms = ms + extra
            mj = mj + extra * active / 1000.0
        own = rt is not None and rt.processor == p
        cold = _over_blocks(rt.cold_ms, blocks, (len(rt.cold_gaps or ()),)) if own and rt.cold_ms else {}
        after = _over_blocks(rt.after_lookup_ms, blocks, ()) if own and rt.after_lookup_ms else {}
        procs[p] = ProcessorCosts(p, ms, mj, idle, active, cold, tuple(rt.cold_gaps or ()) if cold else (), after)
    if not procs:
        raise EngramError("the profile has no processor with a latency for every block", path=profile.path, field="blocks")
    if profile.lookup is None:
        raise EngramError("the profile has no lookup-cost table; profile the device with `run_sim.py profile`",
                          path=profile.path, field="lookup")
    entries = np.asarray(profile.lookup.entries, dtype=np.float64)
    lookup_ms = {e: np.asarray(profile.lookup.exits[e].median_ms, np.float64) for e in profile.lookup.exits}
    lookup_mj = {e: np.asarray(profile.lookup.exits[e].energy_mj, np.float64) for e in profile.lookup.exits}
    update_ms = None
    hit_ms = float(rt.hit_ms) if rt is not None and rt.hit_ms is not None else 0.0
    temporal_ms = float(rt.temporal_ms) if rt is not None and rt.temporal_ms is not None else 0.0
    input_ms = float(rt.input_ms) if rt is not None and rt.input_ms is not None else None
    cold_stage_ms = {e: float(v) for e, v in (rt.cold_stage_ms or {}).items()} if rt is not None else {}
    if rt is not None and rt.lookup_ms is not None:
        # The runtime's own encode + search, at the kernel table's entry counts; energy at the kernel table's
        # power (its mJ per ms at each point).
        xs = np.asarray(rt.lookup_entries, dtype=np.float64)
        for e, ys in rt.lookup_ms.items():
            if e not in lookup_ms:
                continue
            new = np.array([_interp(xs, np.asarray(ys, np.float64), x) for x in entries])
            lookup_mj[e] = lookup_mj[e] * new / np.maximum(lookup_ms[e], 1e-12)
            lookup_ms[e] = new
    if rt is not None and rt.update_ms is not None:
        update_ms = float(rt.update_ms)
    exits = tuple(profile.model.exit_points)
    missing = [e for e in exits if e not in lookup_ms]
    if missing:
        raise EngramError(f"the lookup table has no entry for exit points {missing}", path=profile.path, field="lookup.exits")
    dims = dict(profile.model.semantic_dims or {})
    dims.update(semantic_dims or {})
    default = profile.device.default_processor if profile.device.default_processor in procs else next(iter(procs))
    return DeviceModel(
        name=profile.device.name,
        model_name=profile.model.name,
        fingerprint=dict(profile.fingerprint),
        blocks=blocks,
        exits=exits,
        processors=procs,
        default_processor=default,
        lookup_entries=entries,
        lookup_ms=lookup_ms,
        lookup_mj=lookup_mj,
        update_ms=update_ms if update_ms is not None else float(min(v[0] for v in lookup_ms.values()))
        * UPDATE_PER_LOOKUP,
        model_bytes=int(profile.memory.total_bytes()),
        semantic_dims=dims,
        source=str(profile.path or profile.device.name),
        hit_ms=hit_ms,
        temporal_ms=temporal_ms,
        input_ms=input_ms,
        cold_stage_ms=cold_stage_ms,
    )


def synthetic_device(
    blocks: Sequence[str],
    exits: Sequence[str],
    block_ms: Sequence[float],
    lookup_ms_per_entry: float = 0.001,
    lookup_base_ms: float = 0.01,
    active_mw: float = 2000.0,
    idle_mw: float = 100.0,
    dims: Mapping[str, int] | None = None,
) -> DeviceModel:
    """A hand-made device for tests and what-if studies: lookup cost = base + per_entry x entries."""
    ms = np.asarray(block_ms, dtype=np.float64)
    entries = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], dtype=np.float64)
    look = {e: lookup_base_ms + lookup_ms_per_entry * entries for e in exits}
    proc = ProcessorCosts("cpu", ms, ms * active_mw / 1000.0, idle_mw, active_mw)
    return DeviceModel(
        name="synthetic", model_name="synthetic", fingerprint=None, blocks=tuple(blocks), exits=tuple(exits),
        processors={"cpu": proc}, default_processor="cpu", lookup_entries=entries, lookup_ms=look,
        lookup_mj={e: v * active_mw / 1000.0 for e, v in look.items()}, update_ms=lookup_base_ms + lookup_ms_per_entry,
        model_bytes=0, semantic_dims=dict(dims or {}), source="synthetic",
    )
