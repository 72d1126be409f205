"""The device profile format (version 1): one JSON file per model and device.

A profile holds, for one model (identified by its fingerprint) on one device: per block and processor the
latency statistics (and whether they were measured, imported or predicted), MACs, parameter and activation
bytes and energy; the whole model's latency; the cost of the semantic lookup at each exit point as a function
of the number of cached entries; how energy was obtained (a counter, or which power model with which
parameters); and memory (weights plus planned activations). The JSON Schema is
``profiles/schema/profile.schema.json``; :func:`read_profile` checks it and then everything a schema cannot
(block chaining, exit points, table lengths, statistics in order, units of bytes), and names the file and
field of the first problem. The simulator reads profiles only through :func:`read_profile` and the typed
:class:`Profile` it returns::

    p = read_profile("profiles/data/reference_local.json", model=ref.model)  # refuses another model
    p.latency_ms("b3")                    # median, default processor
    p.latency_ms("b3", stat="p90_ms")
    p.segment_latency_ms("stem", "b3")    # stem..b3 inclusive
    p.lookup_ms("b3", entries=37)         # linear interpolation in the table (see LookupTable)
    p.energy_mj("b3"); p.idle_power_mw(); p.memory.total_bytes()
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engram.errors import EngramError, FormatError, MismatchError
from engram.fileio import write_json_atomic
from profiles.power import PowerModel

FORMAT_NAME = "engram.profile"
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "profile.schema.json"
SOURCES = ("measured", "predicted", "imported", "sum-of-blocks")
#: Relative slack for "statistics in order" checks (values are rounded when written).
_ORDER_SLACK = 1e-6


# ----------------------------------------------------------------------------------------------------------
# Typed view
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one block (or the whole model) on one processor, in milliseconds.

    ``source``: ``measured`` (timed here), ``imported`` (measured elsewhere, e.g. nn-Meter's tables),
    ``predicted`` (a fitted predictor: see ``note``), ``sum-of-blocks`` (whole model only).
    Only ``median_ms`` is always present; imported values usually carry no spread.
    """

    source: str
    median_ms: float
    mean_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    cv: float | None = None
    samples: int | None = None
    note: str | None = None

    @property
    def measured(self) -> bool:
        return self.source in ("measured", "imported")

    def get(self, stat: str) -> float:
        value = getattr(self, stat)
        if value is None:
            raise EngramError(f"statistic {stat!r} is not in this profile ({self.source} latency has only the median)")
        return float(value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "median_ms": self.median_ms}
        for k in ("mean_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "cv", "samples", "note"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "LatencyStats":
        return cls(**{k: obj.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class BlockProfile:
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    params: int
    param_bytes: int
    input_bytes: int
    output_bytes: int
    is_exit: bool
    latency: Mapping[str, LatencyStats]  # by processor name
    energy_mj: Mapping[str, float]  # by processor name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "macs": self.macs, "params": self.params, "param_bytes": self.param_bytes, "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes, "is_exit": self.is_exit,
            "latency": {p: s.to_json() for p, s in self.latency.items()},
            "energy_mj": dict(self.energy_mj),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "BlockProfile":
        return cls(obj["name"], tuple(obj["input_shape"]), tuple(obj["output_shape"]), obj["macs"], obj["params"],
                   obj["param_bytes"], obj["input_bytes"], obj["output_bytes"], obj["is_exit"],
                   {p: LatencyStats.from_json(s) for p, s in obj["latency"].items()}, dict(obj["energy_mj"]))


@dataclass(frozen=True)
class ExitLookup:
    dims: int
    feature_shape: tuple[int, ...]
    median_ms: tuple[float, ...]
    energy_mj: tuple[float, ...]
    p90_ms: tuple[float, ...] | None = None
    cv: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dims": self.dims, "feature_shape": list(self.feature_shape), "median_ms": list(self.median_ms),
                "p90_ms": None if self.p90_ms is None else list(self.p90_ms),
                "cv": None if self.cv is None else list(self.cv), "energy_mj": list(self.energy_mj)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ExitLookup":
        opt = lambda k: None if obj.get(k) is None else tuple(obj[k])  # noqa: E731
        return cls(obj["dims"], tuple(obj["feature_shape"]), tuple(obj["median_ms"]), tuple(obj["energy_mj"]),
                   opt("p90_ms"), opt("cv"))


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation; beyond either end, the nearest segment's line is extended (the cost of
    a search grows linearly with the entries; below the first entry it is clamped to the first value)."""
    if x <= xs[0]:
        return float(ys[0])
    for i in range(1, len(xs)):
        if x <= xs[i]:
            t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return float(ys[-1] + max(slope, 0.0) * (x - xs[-1]))


@dataclass(frozen=True)
class LookupTable:
    """Cost of the semantic lookup at each exit point (encode the feature map, then cosine search against
    ``n`` cached entries), tabulated at ``entries`` (1, 2, 4, ..., 1024).

    Between table points the cost is interpolated linearly in ``n``; above the last point the last segment's
    slope is extended; ``n <= 1`` costs the first value (``n = 0`` means no lookup: cost 0).
    """

    entries: tuple[int, ...]
    source: str  # measured | modelled
    method: str
    processor: str
    exits: Mapping[str, ExitLookup]
    interpolation: str = "linear"

    def _exit(self, exit: str) -> ExitLookup:
        try:
            return self.exits[exit]
        except KeyError:
            raise EngramError(f"no lookup cost for exit {exit!r} (exits: {', '.join(self.exits)})") from None

    def latency_ms(self, exit: str, entries: float, stat: str = "median_ms") -> float:
        if entries <= 0:
            return 0.0
        e = self._exit(exit)
        ys = getattr(e, stat)
        if ys is None:
            raise EngramError(f"statistic {stat!r} is not in this lookup table")
        return interpolate(self.entries, ys, entries)

    def energy_mj(self, exit: str, entries: float) -> float:
        if entries <= 0:
            return 0.0
        return interpolate(self.entries, self._exit(exit).energy_mj, entries)

    def to_json(self) -> dict[str, Any]:
        return {"entries": list(self.entries), "interpolation": self.interpolation, "source": self.source,
                "method": self.method, "processor": self.processor,
                "exits": {k: v.to_json() for k, v in self.exits.items()}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "LookupTable":
        return cls(tuple(obj["entries"]), obj["source"], obj["method"], obj["processor"],
                   {k: ExitLookup.from_json(v) for k, v in obj["exits"].items()}, obj["interpolation"])


@dataclass(frozen=True)
class RuntimeOverheads:
    """Optional: what the on-device runtime (``runtime/``) costs beyond the kernels on this device, measured the way
    it runs them (``runtime.overheads``, ``run_sim.py profile runtime-overheads``).

    ``dispatch_ms``: per block, the runtime's call of the block's VM function minus the block's time measured the
    way the profile measured it (in context less the call overhead, or ``time_evaluator``); ``frame_ms``: per frame, what the runtime does outside blocks and
    lookups (copying the frame in, the answer, bookkeeping); ``lookup``: the runtime's own encode + search at each
    exit point against ``entries`` cached entries (replaces the kernel lookup table); ``update_ms``: its cache
    update after a frame that ran to the end; ``temporal_ms``: what the ``temporal`` exit metric adds per frame
    (the drift from the last confirmed frame, at the first enabled exit); ``input_ms``: a policy's input level
    (``input_reuse``) on every frame, describing the frame and comparing it with the last one that ran the model;
    ``cold_stage_ms``: per exit point, what a lookup adds when the hot level was not confident and it also searches
    the cold level (a second top-two and exit metric), beyond the table's one-level search of as many entries.
    """

    source: str  # measured-runtime
    method: str
    processor: str
    frame_ms: float
    dispatch_ms: Mapping[str, float]
    update_ms: float | None = None
    hit_ms: float | None = None  # recording a cache hit
    lookup_entries: tuple[int, ...] | None = None
    lookup_ms: Mapping[str, tuple[float, ...]] | None = None
    created: str | None = None
    temporal_ms: float | None = None  # the temporal exit metric's drift, per frame
    cold_gaps: tuple[int, ...] | None = None  # frames since a block last ran
    cold_ms: Mapping[str, Mapping[str, tuple[float, ...]]] | None = None  # exit -> block after it -> extra ms per gap
    after_lookup_ms: Mapping[str, Mapping[str, float]] | None = None  # exit -> block after it -> extra ms
    input_ms: float | None = None  # an input level's probe per frame: describing the frame, one comparison
    cold_stage_ms: Mapping[str, float] | None = None  # exit -> a lookup's cold stage, beyond the one-level table

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "method": self.method, "processor": self.processor}
        if self.created is not None:
            out["created"] = self.created
        out.update({"frame_ms": self.frame_ms, "dispatch_ms": dict(self.dispatch_ms), "update_ms": self.update_ms,
                    **({} if self.hit_ms is None else {"hit_ms": self.hit_ms}),
                    **({} if self.temporal_ms is None else {"temporal_ms": self.temporal_ms}),
                    **({} if self.input_ms is None else {"input_ms": self.input_ms}),
                    "lookup": None if self.lookup_ms is None else {
                        "entries": list(self.lookup_entries or ()),
                        "exits": {k: list(v) for k, v in self.lookup_ms.items()}}})
        if self.cold_stage_ms is not None:
            out["cold_stage_ms"] = dict(self.cold_stage_ms)
        if self.cold_ms is not None:
            out["cold"] = {"gaps": list(self.cold_gaps or ()),
                           "after_exit": {e: {b: list(v) for b, v in d.items()} for e, d in self.cold_ms.items()}}
        if self.after_lookup_ms is not None:
            out["after_lookup"] = {e: dict(d) for e, d in self.after_lookup_ms.items()}
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "RuntimeOverheads":
        look, cold = obj.get("lookup"), obj.get("cold")
        return cls(obj["source"], obj["method"], obj["processor"], float(obj["frame_ms"]),
                   {k: float(v) for k, v in obj["dispatch_ms"].items()}, obj.get("update_ms"), obj.get("hit_ms"),
                   None if look is None else tuple(look["entries"]),
                   None if look is None else {k: tuple(v) for k, v in look["exits"].items()}, obj.get("created"),
                   obj.get("temporal_ms"), None if cold is None else tuple(int(g) for g in cold["gaps"]),
                   None if cold is None else {e: {b: tuple(float(x) for x in v) for b, v in d.items()}
                                              for e, d in cold["after_exit"].items()},
                   None if obj.get("after_lookup") is None else {e: {b: float(v) for b, v in d.items()}
                                                                 for e, d in obj["after_lookup"].items()},
                   obj.get("input_ms"),
                   None if obj.get("cold_stage_ms") is None else {e: float(v) for e, v in obj["cold_stage_ms"].items()})


@dataclass(frozen=True)
class Processor:
    name: str
    kind: str
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description}


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    kind: str  # local | rpc | imported
    runtime: str
    processors: tuple[Processor, ...]
    default_processor: str
    address: str | None = None
    cpu_model: str | None = None
    cores: int | None = None
    frequency_mhz: float | None = None
    os: str | None = None
    tvm_version: str | None = None
    target: Mapping[str, Any] | None = None
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "address": self.address, "cpu_model": self.cpu_model,
            "cores": self.cores, "frequency_mhz": self.frequency_mhz, "os": self.os, "runtime": self.runtime,
            "tvm_version": self.tvm_version, "target": None if self.target is None else dict(self.target),
            "threads": self.threads, "processors": [p.to_json() for p in self.processors],
            "default_processor": self.default_processor,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "DeviceInfo":
        procs = tuple(Processor(p["name"], p["kind"], p.get("description", "")) for p in obj["processors"])
        return cls(obj["name"], obj["kind"], obj["runtime"], procs, obj["default_processor"], obj.get("address"),
                   obj.get("cpu_model"), obj.get("cores"), obj.get("frequency_mhz"), obj.get("os"),
                   obj.get("tvm_version"), obj.get("target"), obj.get("threads"))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_shape: tuple[int, ...]
    batch: int
    elem_bytes: int
    architecture_sha: str
    weights_sha: str
    blocks: tuple[str, ...]
    exit_points: tuple[str, ...]
    semantic_dims: Mapping[str, int] | None = None
    tuning: Mapping[str, Any] | None = None

    @property
    def fingerprint(self) -> dict[str, str]:
        return {"architecture": self.architecture_sha, "weights": self.weights_sha}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape), "batch": self.batch,
                "elem_bytes": self.elem_bytes, "fingerprint": self.fingerprint, "blocks": list(self.blocks),
                "exit_points": list(self.exit_points),
                "semantic_dims": None if self.semantic_dims is None else dict(self.semantic_dims),
                "tuning": None if self.tuning is None else dict(self.tuning)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ModelInfo":
        return cls(obj["name"], tuple(obj["input_shape"]), obj["batch"], obj["elem_bytes"],
                   obj["fingerprint"]["architecture"], obj["fingerprint"]["weights"], tuple(obj["blocks"]),
                   tuple(obj["exit_points"]), obj.get("semantic_dims"), obj.get("tuning"))


@dataclass(frozen=True)
class EnergyInfo:
    method: str  # measured | modelled
    counter: str | None
    models: Mapping[str, PowerModel]  # by processor name
    idle_power_mw: Mapping[str, float]  # by processor name
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "counter": self.counter,
                "models": {p: m.to_json() for p, m in self.models.items()},
                "idle_power_mw": dict(self.idle_power_mw), "note": self.note}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "EnergyInfo":
        return cls(obj["method"], obj["counter"], {p: PowerModel.from_json(m) for p, m in obj["models"].items()},
                   dict(obj["idle_power_mw"]), obj["note"])


@dataclass(frozen=True)
class MemoryInfo:
    """Weights plus activations; activations as planned by ``kernels.memplan`` (overlapping buffers, Jokic et
    al.), with ping-pong buffering and the lower bound for reference."""

    weights_bytes: int
    planned_activation_bytes: int
    planner: str
    pingpong_activation_bytes: int
    lower_bound_bytes: int
    greedy_activation_bytes: int | None = None

    def total_bytes(self, activations: str = "planned") -> int:
        """Weights + activations (``planned`` or ``pingpong``); the semantic cache is the simulator's to add."""
        act = {"planned": self.planned_activation_bytes, "pingpong": self.pingpong_activation_bytes}.get(activations)
        if act is None:
            raise EngramError(f"activations must be 'planned' or 'pingpong', not {activations!r}")
        return self.weights_bytes + act

    def to_json(self) -> dict[str, Any]:
        return {"weights_bytes": self.weights_bytes, "activations": {
            "planned_bytes": self.planned_activation_bytes, "planner": self.planner,
            "pingpong_bytes": self.pingpong_activation_bytes, "greedy_bytes": self.greedy_activation_bytes,
            "lower_bound_bytes": self.lower_bound_bytes}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "MemoryInfo":
        a = obj["activations"]
        return cls(obj["weights_bytes"], a["planned_bytes"], a["planner"], a["pingpong_bytes"], a["lower_bound_bytes"],
                   a.get("greedy_bytes"))


@dataclass(frozen=True)
class Profile:
    created: str
    generator: Mapping[str, Any]
    device: DeviceInfo
    model: ModelInfo
    measurement: Mapping[str, Any]
    blocks: tuple[BlockProfile, ...]
    whole_model: Mapping[str, LatencyStats]
    lookup: LookupTable | None
    energy: EnergyInfo
    memory: MemoryInfo
    path: str | None = field(default=None, compare=False)
    version: int = FORMAT_VERSION
    runtime: RuntimeOverheads | None = None  # optional (absent in older profiles): the runtime's own overheads

    # -- lookups ---------------------------------------------------------------------------------------
    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    @property
    def processors(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.device.processors)

    @property
    def fingerprint(self) -> dict[str, str]:
        return self.model.fingerprint

    @property
    def blocks_in_context(self) -> bool:
        """Whether the blocks were timed in context (in sequence, as the runtime runs them) rather than each on
        its own (older and RPC profiles)."""
        return self.measurement.get("block_timing") == "in-context"

    def block(self, name: str) -> BlockProfile:
        for b in self.blocks:
            if b.name == name:
                return b
        raise EngramError(f"{name!r} is not a block of this profile (blocks: {', '.join(self.block_names)})")

    def _proc(self, processor: str | None) -> str:
        p = processor or self.device.default_processor
        if p not in self.processors:
            raise EngramError(f"processor {p!r} is not in this profile (processors: {', '.join(self.processors)})")
        return p

    def stats(self, block: str, processor: str | None = None) -> LatencyStats:
        p = self._proc(processor)
        b = self.block(block)
        if p not in b.latency:
            raise EngramError(f"block {block!r} has no latency on processor {p!r}")
        return b.latency[p]

    def latency_ms(self, block: str, processor: str | None = None, stat: str = "median_ms") -> float:
        return self.stats(block, processor).get(stat)

    def segment_latency_ms(self, first: str, last: str, processor: str | None = None, stat: str = "median_ms") -> float:
        """Sum over blocks ``first`` .. ``last`` inclusive."""
        names = self.block_names
        i, j = names.index(self.block(first).name), names.index(self.block(last).name)
        if j < i:
            raise EngramError(f"block {last!r} comes before {first!r}")
        return sum(self.latency_ms(n, processor, stat) for n in names[i:j + 1])

    def model_latency_ms(self, processor: str | None = None, stat: str = "median_ms") -> float:
        p = self._proc(processor)
        if p not in self.whole_model:
            raise EngramError(f"no whole-model latency on processor {p!r}")
        return self.whole_model[p].get(stat)

    def energy_mj(self, block: str, processor: str | None = None) -> float:
        p = self._proc(processor)
        b = self.block(block)
        if p not in b.energy_mj:
            raise EngramError(f"block {block!r} has no energy on processor {p!r}")
        return float(b.energy_mj[p])

    def idle_power_mw(self, processor: str | None = None) -> float:
        return float(self.energy.idle_power_mw[self._proc(processor)])

    def lookup_ms(self, exit: str, entries: float, stat: str = "median_ms") -> float:
        if self.lookup is None:
            raise EngramError("this profile has no lookup-cost table (profile the device with `run_sim.py profile`)")
        return self.lookup.latency_ms(exit, entries, stat)

    def lookup_energy_mj(self, exit: str, entries: float) -> float:
        if self.lookup is None:
            raise EngramError("this profile has no lookup-cost table")
        return self.lookup.energy_mj(exit, entries)

    def block_sources(self, processor: str | None = None) -> dict[str, str]:
        """Block name -> measured / imported / predicted."""
        p = self._proc(processor)
        return {b.name: b.latency[p].source for b in self.blocks if p in b.latency}

    def check_model(self, model_or_fingerprint: Any, *, what: str = "model") -> None:
        """Raise :class:`MismatchError` unless the model (a BlockwiseModel or a fingerprint dict) is this one."""
        fp = model_or_fingerprint.fingerprint() if hasattr(model_or_fingerprint, "fingerprint") and callable(
            model_or_fingerprint.fingerprint) else model_or_fingerprint
        for k in ("architecture", "weights"):
            if fp.get(k) != self.model.fingerprint[k]:
                raise MismatchError(
                    f"profile is for another {what} ({self.model.name}, {k} {self.model.fingerprint[k][:12]}..., "
                    f"given {str(fp.get(k))[:12]}...)", path=self.path, field=f"model.fingerprint.{k}")

    # -- serialisation ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "created": self.created,
            "generator": dict(self.generator),
            "device": self.device.to_json(),
            "model": self.model.to_json(),
            "measurement": dict(self.measurement),
            "blocks": [b.to_json() for b in self.blocks],
            "whole_model": {p: s.to_json() for p, s in self.whole_model.items()},
            "lookup": None if self.lookup is None else self.lookup.to_json(),
            "energy": self.energy.to_json(),
            "memory": self.memory.to_json(),
            **({} if self.runtime is None else {"runtime": self.runtime.to_json()}),
        }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator():  # noqa: ANN202
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _field(parts: Iterable[Any]) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_check(obj: Any, path: str | None) -> None:
    if not isinstance(obj, Mapping):
        raise FormatError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    if obj.get("format") != FORMAT_NAME:
        raise FormatError(f"not an Engram profile (format is {obj.get('format')!r}, expected {FORMAT_NAME!r})",
                          path=path, field="format")
    version = obj.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise FormatError(f"profile format version {version} is newer than this reader (version {FORMAT_VERSION}); "
                          "update Engram", path=path, field="version")
    errors = list(_validator().iter_errors(obj))
    if errors:
        # The deepest error first (the most specific message), then by position.
        err = sorted(errors, key=lambda e: (-len(e.absolute_path), [str(p) for p in e.absolute_path]))[0]
        if err.validator in ("oneOf", "anyOf") and err.context:
            err = sorted(err.context, key=lambda e: -len(e.absolute_path))[0]
        raise FormatError(_short(err.message), path=path, field=_field(err.absolute_path))


def _num_ok(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and math.isfinite(x))


def _check_stats(s: Mapping[str, Any], where: str, path: str | None) -> None:
    for k, v in s.items():
        if k not in ("source", "note") and not _num_ok(v):
            raise FormatError("must be a finite number", path=path, field=f"{where}.{k}")
    order = [k for k in ("min_ms", "p10_ms", "median_ms", "p90_ms", "max_ms") if s.get(k) is not None]
    for a, b in zip(order, order[1:]):
        if s[a] > s[b] * (1 + _ORDER_SLACK):
            raise FormatError(f"{a} {s[a]} is above {b} {s[b]}", path=path, field=f"{where}.{a}")


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


INPUT_KEY = "input"  # a cold table's row for frames that a policy's input level answered (no block ran)


def _check_after_exits(per_exit: Mapping[str, Mapping[str, Any]], exits: Sequence[str], names: Sequence[str],
                       path: str | None, field: str, input_row: bool = False) -> None:
    """A table keyed by exit point, then by every block after that exit point (and no other); with ``input_row``,
    also ``input`` (nothing ran), then every block."""
    for e, per_block in per_exit.items():
        if input_row and e == INPUT_KEY:
            after = list(names)
        elif e not in exits:
            raise FormatError(f"{e!r} is not an exit point" + (" (nor 'input')" if input_row else ""), path=path,
                              field=f"{field}.{e}")
        else:
            after = list(names[list(names).index(e) + 1:])
        if sorted(per_block) != sorted(after):
            raise FormatError(f"must give every block after {e} ({', '.join(after)})", path=path, field=f"{field}.{e}")


def _semantic_check(obj: Mapping[str, Any], path: str | None) -> None:
    dev, model, blocks = obj["device"], obj["model"], obj["blocks"]
    procs = [p["name"] for p in dev["processors"]]
    if len(set(procs)) != len(procs):
        raise FormatError(f"duplicate processor names {procs}", path=path, field="device.processors")
    if dev["default_processor"] not in procs:
        raise FormatError(f"{dev['default_processor']!r} is not one of the processors {procs}", path=path,
                          field="device.default_processor")
    if dev["kind"] == "rpc" and not dev.get("address"):
        raise FormatError("an rpc device needs its address", path=path, field="device.address")

    names = [b["name"] for b in blocks]
    if len(set(names)) != len(names):
        raise FormatError("duplicate block names", path=path, field="blocks")
    if list(model["blocks"]) != names:
        raise FormatError(f"model.blocks {model['blocks']} do not match the blocks' names {names}", path=path,
                          field="model.blocks")
    exits = list(model["exit_points"])
    for e in exits:
        if e not in names:
            raise FormatError(f"exit point {e!r} is not a block", path=path, field="model.exit_points")
        if e == names[-1]:
            raise FormatError(f"exit point {e!r} is the last block", path=path, field="model.exit_points")
    if [names.index(e) for e in exits] != sorted({names.index(e) for e in exits}):
        raise FormatError("exit points must be distinct and in block order", path=path, field="model.exit_points")
    dims = model.get("semantic_dims")
    if dims is not None and set(dims) != set(exits):
        raise FormatError(f"semantic_dims are for {sorted(dims)}, exit points are {exits}", path=path,
                          field="model.semantic_dims")

    batch, eb = model["batch"], model["elem_bytes"]
    if list(blocks[0]["input_shape"]) != list(model["input_shape"]):
        raise FormatError(f"first block's input {blocks[0]['input_shape']} is not the model input {model['input_shape']}",
                          path=path, field="blocks[0].input_shape")
    for i, b in enumerate(blocks):
        w = f"blocks[{i}]"
        if b["is_exit"] != (b["name"] in exits):
            raise FormatError(f"is_exit disagrees with model.exit_points for {b['name']!r}", path=path, field=f"{w}.is_exit")
        if i + 1 < len(blocks) and list(b["output_shape"]) != list(blocks[i + 1]["input_shape"]):
            raise FormatError(f"output {b['output_shape']} does not feed the next block's input "
                              f"{blocks[i + 1]['input_shape']}", path=path, field=f"{w}.output_shape")
        for k, shape in (("input_bytes", b["input_shape"]), ("output_bytes", b["output_shape"])):
            want = _prod(shape) * batch * eb
            if b[k] != want:
                raise FormatError(f"{b[k]} bytes, but shape {shape} x batch {batch} x {eb} bytes is {want}",
                                  path=path, field=f"{w}.{k}")
        if b["param_bytes"] != b["params"] * eb:
            raise FormatError(f"{b['param_bytes']} bytes for {b['params']} parameters of {eb} bytes", path=path,
                              field=f"{w}.param_bytes")
        if dev["default_processor"] not in b["latency"]:
            raise FormatError(f"no latency on the default processor {dev['default_processor']!r}", path=path,
                              field=f"{w}.latency")
        for p, s in b["latency"].items():
            if p not in procs:
                raise FormatError(f"unknown processor {p!r} (processors: {procs})", path=path, field=f"{w}.latency.{p}")
            if s["source"] == "sum-of-blocks":
                raise FormatError("a block's latency cannot be a sum of blocks", path=path, field=f"{w}.latency.{p}.source")
            _check_stats(s, f"{w}.latency.{p}", path)
        if set(b["energy_mj"]) != set(b["latency"]):
            raise FormatError(f"energy for {sorted(b['energy_mj'])} but latency for {sorted(b['latency'])}", path=path,
                              field=f"{w}.energy_mj")
        for p, v in b["energy_mj"].items():
            if not _num_ok(v):
                raise FormatError("must be a finite number", path=path, field=f"{w}.energy_mj.{p}")

    for p, s in obj["whole_model"].items():
        if p not in procs:
            raise FormatError(f"unknown processor {p!r}", path=path, field=f"whole_model.{p}")
        _check_stats(s, f"whole_model.{p}", path)
    if dev["default_processor"] not in obj["whole_model"]:
        raise FormatError("no whole-model latency on the default processor", path=path, field="whole_model")

    lk = obj["lookup"]
    if lk is not None:
        ent = lk["entries"]
        if ent[0] != 1 or any(b <= a for a, b in zip(ent, ent[1:])):
            raise FormatError("entries must start at 1 and increase strictly", path=path, field="lookup.entries")
        if lk["processor"] not in procs:
            raise FormatError(f"unknown processor {lk['processor']!r}", path=path, field="lookup.processor")
        if set(lk["exits"]) != set(exits):
            raise FormatError(f"lookup costs for {sorted(lk['exits'])}, exit points are {exits}", path=path,
                              field="lookup.exits")
        for e, t in lk["exits"].items():
            for k in ("median_ms", "p90_ms", "cv", "energy_mj"):
                if t.get(k) is not None:
                    if len(t[k]) != len(ent):
                        raise FormatError(f"{len(t[k])} values for {len(ent)} entries", path=path,
                                          field=f"lookup.exits.{e}.{k}")
                    if not all(_num_ok(v) for v in t[k]):
                        raise FormatError("values must be finite numbers", path=path, field=f"lookup.exits.{e}.{k}")
            if dims is not None and t["dims"] != dims.get(e):
                raise FormatError(f"dims {t['dims']} but model.semantic_dims says {dims.get(e)}", path=path,
                                  field=f"lookup.exits.{e}.dims")
            out_shape = blocks[names.index(e)]["output_shape"]
            if list(t["feature_shape"]) != list(out_shape):
                raise FormatError(f"feature shape {t['feature_shape']} is not block {e!r}'s output {out_shape}",
                                  path=path, field=f"lookup.exits.{e}.feature_shape")

    en = obj["energy"]
    used = {p for b in blocks for p in b["latency"]}
    if en["method"] == "modelled":
        for p in sorted(used):
            if p not in en["models"]:
                raise FormatError(f"modelled energy needs a power model for processor {p!r}", path=path,
                                  field="energy.models")
    elif not en["counter"]:
        raise FormatError("measured energy must name its counter", path=path, field="energy.counter")
    for p in en["models"]:
        if p not in procs:
            raise FormatError(f"unknown processor {p!r}", path=path, field=f"energy.models.{p}")
    for p in sorted(used):
        if p not in en["idle_power_mw"]:
            raise FormatError(f"no idle power for processor {p!r}", path=path, field="energy.idle_power_mw")

    rt = obj.get("runtime")
    if rt is not None:
        if rt["processor"] not in procs:
            raise FormatError(f"unknown processor {rt['processor']!r}", path=path, field="runtime.processor")
        if sorted(rt["dispatch_ms"]) != sorted(names):
            raise FormatError(f"dispatch_ms must give every block ({', '.join(names)})", path=path,
                              field="runtime.dispatch_ms")
        if not _num_ok(rt["frame_ms"]) or not all(_num_ok(v) for v in rt["dispatch_ms"].values()):
            raise FormatError("values must be finite numbers", path=path, field="runtime")
        look = rt.get("lookup")
        if look is not None:
            xs = list(look["entries"])
            if xs[0] != 1 or any(b <= a for a, b in zip(xs, xs[1:])):
                raise FormatError("entries must start at 1 and increase", path=path, field="runtime.lookup.entries")
            for e, ys in look["exits"].items():
                if e not in exits:
                    raise FormatError(f"{e!r} is not an exit point", path=path, field=f"runtime.lookup.exits.{e}")
                if len(ys) != len(xs) or not all(_num_ok(v) for v in ys):
                    raise FormatError(f"needs {len(xs)} finite values, one per entry", path=path,
                                      field=f"runtime.lookup.exits.{e}")
        for e, v in (rt.get("cold_stage_ms") or {}).items():
            if e not in exits:
                raise FormatError(f"{e!r} is not an exit point", path=path, field=f"runtime.cold_stage_ms.{e}")
            if not _num_ok(v):
                raise FormatError("must be a finite number", path=path, field=f"runtime.cold_stage_ms.{e}")
        cold = rt.get("cold")
        if cold is not None:
            gaps = list(cold["gaps"])
            if any(b <= a for a, b in zip(gaps, gaps[1:])):
                raise FormatError("gaps must increase", path=path, field="runtime.cold.gaps")
            _check_after_exits(cold["after_exit"], exits, names, path, "runtime.cold.after_exit", input_row=True)
            for e, per_block in cold["after_exit"].items():
                for b, ys in per_block.items():
                    if len(ys) != len(gaps) or not all(_num_ok(v) for v in ys):
                        raise FormatError(f"needs {len(gaps)} finite values, one per gap", path=path,
                                          field=f"runtime.cold.after_exit.{e}.{b}")
        after_lookup = rt.get("after_lookup") or {}
        _check_after_exits(after_lookup, exits, names, path, "runtime.after_lookup")
        for e, per_block in after_lookup.items():
            if not all(_num_ok(v) for v in per_block.values()):
                raise FormatError("values must be finite numbers", path=path, field=f"runtime.after_lookup.{e}")

    mem = obj["memory"]
    wb = sum(b["param_bytes"] for b in blocks)
    if mem["weights_bytes"] != wb:
        raise FormatError(f"{mem['weights_bytes']} weight bytes, but the blocks' parameters make {wb}", path=path,
                          field="memory.weights_bytes")
    a = mem["activations"]
    if a["lower_bound_bytes"] > a["planned_bytes"]:
        raise FormatError("planned activation bytes below the lower bound", path=path,
                          field="memory.activations.planned_bytes")


def validate(obj: Any, path: str | PathLike[str] | None = None) -> None:
    """Raise :class:`FormatError` (naming file and field) unless ``obj`` is a valid version-1 profile."""
    p = None if path is None else str(path)
    _schema_check(obj, p)
    _semantic_check(obj, p)


def profile_from_json(obj: Any, path: str | PathLike[str] | None = None) -> Profile:
    validate(obj, path)
    return Profile(
        created=obj["created"], generator=dict(obj["generator"]), device=DeviceInfo.from_json(obj["device"]),
        model=ModelInfo.from_json(obj["model"]), measurement=dict(obj["measurement"]),
        blocks=tuple(BlockProfile.from_json(b) for b in obj["blocks"]),
        whole_model={p: LatencyStats.from_json(s) for p, s in obj["whole_model"].items()},
        lookup=None if obj["lookup"] is None else LookupTable.from_json(obj["lookup"]),
        energy=EnergyInfo.from_json(obj["energy"]), memory=MemoryInfo.from_json(obj["memory"]),
        path=None if path is None else str(path), version=obj["version"],
        runtime=None if obj.get("runtime") is None else RuntimeOverheads.from_json(obj["runtime"]))


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def read_profile(path: str | PathLike[str], *, model: Any = None) -> Profile:
    """Read and validate a profile; with ``model`` (a BlockwiseModel or fingerprint dict), refuse another model."""
    p = Path(path)
    if not p.exists():
        raise FormatError("file not found", path=p)
    if p.is_dir():
        raise FormatError("is a directory, not a profile", path=p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text: not a profile", path=p) from None
    except OSError as exc:
        raise FormatError(f"cannot read ({exc.strerror})", path=p) from None
    if not text.strip():
        raise FormatError("empty file", path=p)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated JSON" if truncated else "invalid JSON"
        raise FormatError(f"{what}: {exc.msg} (column {exc.colno})", path=p, line=exc.lineno) from None
    except ValueError as exc:
        raise FormatError(str(exc), path=p) from None
    prof = profile_from_json(obj, p)
    if model is not None:
        prof.check_model(model)
    return prof


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a profile (JSON has no {name})")


def write_profile(profile: Profile | Mapping[str, Any], path: str | PathLike[str]) -> Path:
    """Validate, then write atomically. Returns the path."""
    obj = profile.to_json() if isinstance(profile, Profile) else dict(profile)
    validate(obj, path)
    write_json_atomic(path, obj)
    return Path(path)
