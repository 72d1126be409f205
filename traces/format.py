"""The trace file format (version 1): one Parquet file per trace, metadata as JSON in the Arrow schema.

Two levels share one file layout (the full specification is ``traces/FORMAT.md``):

- a **label trace** (:class:`LabelTrace`) says, per frame of one or more videos, which object classes are in
  view and which of them is the primary one;
- a **recorded trace** (:class:`RecordedTrace`) adds what a model computed on each frame: the semantic vector
  at every exit point, the heads' answers, the final prediction and a frame-difference score.

Everything here is pure except :func:`read_trace` and :func:`write_trace`. The same :func:`validate` runs
before a write and after a read, so a file this module wrote is always one it can read back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engram import input_descriptor
from engram.errors import EngramError, FormatError
from engram.fileio import atomic_path

FORMAT_NAME = "engram.trace"
FORMAT_VERSION = 1
METADATA_KEY = b"engram.trace"
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "trace-metadata.schema.json"

LABEL_COLUMNS = ("video", "frame", "time_s", "label", "objects")
EXIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# float16 keeps ~3 significant digits, so a unit vector stored in it has a norm within a few 1e-3 of 1.
UNIT_NORM_TOLERANCE = 2e-2
# The cheap input descriptor of a recorded frame (FoggyCache-style input-level reuse): the frame averaged
# down to 4x4 RGB, centred and L2-normalised.
INPUT_DESC_DIMS = input_descriptor.DIMS
# Entropy is at most ln(classes); a little slack for float32 rounding in the producer.
ENTROPY_SLACK = 1e-3


# ----------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrimaryRule:
    """How the primary object of a frame was chosen when several are in view (declared, not inferred)."""

    name: str
    description: str


@dataclass(frozen=True)
class TraceMeta:
    """Metadata shared by both levels."""

    source: str
    license: str
    attribution: str
    fps: float
    class_names: tuple[str, ...]
    primary_rule: PrimaryRule
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "fps", float(self.fps))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ModelInfo:
    """The model a recorded trace was made with, and how trace classes map onto its classes."""

    name: str
    architecture_sha: str
    weights_sha: str
    exit_points: tuple[str, ...]
    semantic_dims: tuple[int, ...]
    class_names: tuple[str, ...]
    class_mapping: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_points", tuple(self.exit_points))
        object.__setattr__(self, "semantic_dims", tuple(int(d) for d in self.semantic_dims))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "class_mapping", tuple(int(c) for c in self.class_mapping))

    @property
    def dims(self) -> dict[str, int]:
        return dict(zip(self.exit_points, self.semantic_dims))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": {"architecture": self.architecture_sha, "weights": self.weights_sha},
            "exit_points": list(self.exit_points),
            "semantic_dims": list(self.semantic_dims),
            "class_names": list(self.class_names),
            "class_mapping": list(self.class_mapping),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ModelInfo":
        return cls(
            name=obj["name"],
            architecture_sha=obj["fingerprint"]["architecture"],
            weights_sha=obj["fingerprint"]["weights"],
            exit_points=obj["exit_points"],
            semantic_dims=obj["semantic_dims"],
            class_names=obj["class_names"],
            class_mapping=obj["class_mapping"],
        )


def meta_to_json(meta: TraceMeta, level: str, model: ModelInfo | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "level": level,
        "source": meta.source,
        "license": meta.license,
        "attribution": meta.attribution,
        "fps": meta.fps,
        "class_names": list(meta.class_names),
        "primary_rule": {"name": meta.primary_rule.name, "description": meta.primary_rule.description},
    }
    if meta.provenance:
        obj["provenance"] = dict(meta.provenance)
    if model is not None:
        obj["model"] = model.to_json()
    return obj


def meta_from_json(obj: Mapping[str, Any]) -> TraceMeta:
    rule = obj["primary_rule"]
    return TraceMeta(
        source=obj["source"],
        license=obj["license"],
        attribution=obj["attribution"],
        fps=obj["fps"],
        class_names=tuple(obj["class_names"]),
        primary_rule=PrimaryRule(rule["name"], rule["description"]),
        provenance=dict(obj.get("provenance", {})),
    )


@lru_cache(maxsize=1)
def _schema_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check_metadata(obj: Any, *, path: str | PathLike[str] | None = None) -> None:
    """Validate metadata JSON against the shipped JSON Schema; raise one FormatError naming the field."""
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        version = obj.get("version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise FormatError(
                f"trace format version {version} is newer than this reader (version {FORMAT_VERSION}); "
                "update Engram", path=path, field="version")
    errors = sorted(_schema_validator().iter_errors(obj), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or None
        raise FormatError(f"metadata: {_short(err.message)}", path=path, field=where)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# Traces
# ----------------------------------------------------------------------------------------------------------


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class LabelTrace:
    """Per frame: video, frame index, timestamp, primary class and all classes in view.

    Rows are grouped by video (videos in file order); ``video`` holds indices into ``video_names``.
    ``objects`` is stored flat (CSR): the classes of row ``i`` are
    ``objects_values[objects_offsets[i]:objects_offsets[i + 1]]``, primary first.
    """

    meta: TraceMeta
    video_names: tuple[str, ...]
    video: np.ndarray  # int32 (n,)
    frame: np.ndarray  # int64 (n,)
    time_s: np.ndarray  # float64 (n,)
    label: np.ndarray  # int32 (n,)
    objects_offsets: np.ndarray  # int64 (n + 1,)
    objects_values: np.ndarray  # int32

    level = "labels"

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_names", tuple(self.video_names))
        for name, dtype in (("video", np.int32), ("frame", np.int64), ("time_s", np.float64), ("label", np.int32),
                            ("objects_offsets", np.int64), ("objects_values", np.int32)):
            object.__setattr__(self, name, _frozen(_as_dtype(getattr(self, name), dtype, name)))

    @classmethod
    def from_frames(
        cls,
        meta: TraceMeta,
        video: Sequence[str],
        frame: Sequence[int] | np.ndarray,
        time_s: Sequence[float] | np.ndarray,
        objects: Sequence[Sequence[int]],
    ) -> "LabelTrace":
        """Build from per-row values; ``objects[i]`` lists the classes in view, primary first."""
        names: list[str] = []
        index: dict[str, int] = {}
        codes = np.empty(len(video), dtype=np.int32)
        for i, v in enumerate(video):
            code = index.get(v)
            if code is None:
                code = index[v] = len(names)
                names.append(v)
            codes[i] = code
        lengths = np.fromiter((len(o) for o in objects), dtype=np.int64, count=len(objects))
        offsets = np.zeros(len(objects) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if np.any(lengths == 0):
            bad = int(np.flatnonzero(lengths == 0)[0])
            raise FormatError(f"row {bad}: a frame needs at least one object in view", field="objects")
        values = np.fromiter((c for o in objects for c in o), dtype=np.int64, count=int(offsets[-1]))
        label = values[offsets[:-1]]
        return cls(meta, tuple(names), codes, np.asarray(frame), np.asarray(time_s, dtype=np.float64), label, offsets, values)

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def objects(self, i: int) -> np.ndarray:
        return self.objects_values[self.objects_offsets[i]: self.objects_offsets[i + 1]]

    def objects_list(self) -> list[list[int]]:
        o = self.objects_offsets
        v = self.objects_values.tolist()
        return [v[o[i]: o[i + 1]] for i in range(len(self))]

    def video_bounds(self) -> list[tuple[str, int, int]]:
        """``(name, start_row, stop_row)`` for each video, in file order."""
        if len(self) == 0:
            return []
        starts = np.flatnonzero(np.diff(self.video, prepend=-1) != 0)
        stops = np.append(starts[1:], len(self))
        return [(self.video_names[self.video[s]], int(s), int(e)) for s, e in zip(starts, stops)]

    def video_start_mask(self) -> np.ndarray:
        """True on the first row of each video."""
        return np.diff(self.video, prepend=-1) != 0

    def with_meta(self, meta: TraceMeta) -> "LabelTrace":
        return LabelTrace(meta, self.video_names, self.video, self.frame, self.time_s, self.label,
                          self.objects_offsets, self.objects_values)

    def pick(self, videos: Sequence[str] | None, max_frames: int | None, path: str | Path | None = None,
             what: str = "record") -> "LabelTrace":
        """The frames of the named videos (all when None), at most ``max_frames`` of them, in trace order; an
        unknown video or nothing left is an error naming ``path``."""
        t = self
        if videos:
            unknown = [v for v in videos if v not in t.video_names]
            if unknown:
                raise EngramError(f"no video {unknown[0]!r} in the trace", path=path, field="video")
            codes = [t.video_names.index(v) for v in videos]
            t = t.select_rows(np.flatnonzero(np.isin(t.video, codes)))
        if max_frames is not None and max_frames < len(t):
            t = t.select_rows(np.arange(max_frames))
        if len(t) == 0:
            raise EngramError(f"no frames to {what}", path=path)
        return t

    def select_rows(self, rows: np.ndarray) -> "LabelTrace":
        """The sub-trace of the given rows (a boolean mask or ascending indices); videos keep their order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, dtype=np.int64)
        lengths = np.diff(self.objects_offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.objects_offsets[rows]
        gather = (np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])).astype(np.int64)
        values = self.objects_values[gather]
        used, codes = np.unique(self.video[rows], return_inverse=True)
        names = tuple(self.video_names[u] for u in used)
        return LabelTrace(self.meta, names, codes.astype(np.int32), self.frame[rows], self.time_s[rows],
                          self.label[rows], offsets, values)


@dataclass(frozen=True, eq=False)
class RecordedTrace:
    """A label trace plus what the model computed on every frame.

    ``vectors[e]`` is an ``(n, semantic_dims[e])`` float16 array of L2-normalised semantic vectors at exit
    point ``e``; ``head_pred[e]`` / ``head_entropy[e]`` are the top-1 class and softmax entropy (nats) of the
    cheap classifier head at that exit; ``prediction`` is the full model's top-1; ``true_class`` is the ground
    truth in the model's class space (``model.class_mapping[label]``); ``frame_diff`` is the share of the frame
    that changed since the previous frame of the same video (1.0 on a video's first frame); ``input_desc`` is a
    cheap descriptor of the input frame, computed without the model (``INPUT_DESC_DIMS`` values, unit norm,
    or all zero for a flat frame).
    """

    labels: LabelTrace
    model: ModelInfo
    true_class: np.ndarray  # int32 (n,)
    prediction: np.ndarray  # int32 (n,)
    vectors: Mapping[str, np.ndarray]  # exit -> float16 (n, d)
    head_pred: Mapping[str, np.ndarray]  # exit -> int32 (n,)
    head_entropy: Mapping[str, np.ndarray]  # exit -> float32 (n,)
    frame_diff: np.ndarray  # float32 (n,)
    input_desc: np.ndarray  # float16 (n, INPUT_DESC_DIMS)

    level = "recorded"

    def __post_init__(self) -> None:
        for name, dtype in (("true_class", np.int32), ("prediction", np.int32), ("frame_diff", np.float32),
                            ("input_desc", np.float16)):
            object.__setattr__(self, name, _frozen(_as_dtype(getattr(self, name), dtype, name)))
        for name, dtype in (("vectors", np.float16), ("head_pred", np.int32), ("head_entropy", np.float32)):
            src = getattr(self, name)
            if not isinstance(src, Mapping):
                raise FormatError(f"must map exit point names to arrays, got {type(src).__name__}", field=name)
            # Keep the model's exit order so that files are written in a stable column order.
            order = [e for e in self.model.exit_points if e in src] + [e for e in src if e not in self.model.exit_points]
            object.__setattr__(self, name, {e: _frozen(_as_dtype(src[e], dtype, f"{name}[{e}]")) for e in order})

    @property
    def meta(self) -> TraceMeta:
        return self.labels.meta

    def __len__(self) -> int:
        return len(self.labels)


Trace = LabelTrace | RecordedTrace


def _as_dtype(a: Any, dtype: type, name: str) -> np.ndarray:
    """Convert to ``dtype``, refusing conversions that would change values (int overflow, fractions)."""
    arr = np.asarray(a)
    if arr.dtype == dtype:
        return arr
    if np.issubdtype(dtype, np.integer):
        if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise FormatError(f"expected integers, got {arr.dtype}", field=name)
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise FormatError(f"values out of range for {np.dtype(dtype).name}", field=name)
        return arr.astype(dtype)
    if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise FormatError(f"expected numbers, got {arr.dtype}", field=name)
    return arr.astype(dtype)


# ----------------------------------------------------------------------------------------------------------
# Validation (pure)
# ----------------------------------------------------------------------------------------------------------


def _where(trace: LabelTrace, row: int) -> str:
    return f"row {row} (video {trace.video_names[trace.video[row]]!r}, frame {int(trace.frame[row])})"


def _fail(message: str, path: Any, column: str) -> None:
    raise FormatError(message, path=path, field=column)


def validate_labels(trace: LabelTrace, *, path: str | PathLike[str] | None = None) -> None:
    """Check every rule of the label level; raise one FormatError (file, column, row) on the first breach."""
    check_metadata(meta_to_json(trace.meta, "labels"), path=path)
    n = len(trace)
    if n == 0:
        _fail("the trace has no frames", path, "frame")
    for name in ("video", "time_s", "label"):
        if getattr(trace, name).shape != (n,):
            _fail(f"has shape {getattr(trace, name).shape}, expected ({n},)", path, name)
    if trace.frame.shape != (n,):
        _fail(f"has shape {trace.frame.shape}, expected ({n},)", path, "frame")

    # Videos: known names, unique, each one contiguous, in first-appearance order.
    names = trace.video_names
    if len(set(names)) != len(names):
        _fail("video names are not unique", path, "video")
    if any(not isinstance(v, str) or not v for v in names):
        _fail("video names must be non-empty strings", path, "video")
    v = trace.video
    if v.min() < 0 or v.max() >= len(names):
        _fail(f"video index out of range of {len(names)} names", path, "video")
    step = np.diff(v)
    if np.any(step < 0) or np.any(step > 1) or v[0] != 0 or v[-1] != len(names) - 1:
        row = int(np.flatnonzero((step < 0) | (step > 1))[0]) + 1 if np.any((step < 0) | (step > 1)) else 0
        _fail(f"rows are not grouped by video in first-appearance order at {_where(trace, row)}", path, "video")

    same_video = step == 0
    if np.any(trace.frame < 0):
        _fail(f"negative frame index at {_where(trace, int(np.flatnonzero(trace.frame < 0)[0]))}", path, "frame")
    bad = same_video & (np.diff(trace.frame) <= 0)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0]) + 1
        _fail(f"frame index not strictly increasing at {_where(trace, row)} (previous {int(trace.frame[row - 1])})",
              path, "frame")
    if not np.all(np.isfinite(trace.time_s)):
        _fail(f"non-finite timestamp at {_where(trace, int(np.flatnonzero(~np.isfinite(trace.time_s))[0]))}", path, "time_s")
    bad = same_video & (np.diff(trace.time_s) < 0)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0]) + 1
        _fail(f"timestamp decreases at {_where(trace, row)}", path, "time_s")

    c = trace.num_classes
    bad = (trace.label < 0) | (trace.label >= c)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"class id {int(trace.label[row])} at {_where(trace, row)} is outside the {c} class_names", path, "label")

    off, vals = trace.objects_offsets, trace.objects_values
    if off.shape != (n + 1,) or off[0] != 0 or off[-1] != vals.shape[0] or np.any(np.diff(off) < 0):
        _fail("objects offsets are inconsistent", path, "objects")
    lengths = np.diff(off)
    if np.any(lengths == 0):
        _fail(f"no object in view at {_where(trace, int(np.flatnonzero(lengths == 0)[0]))}", path, "objects")
    bad_val = (vals < 0) | (vals >= c)
    if np.any(bad_val):
        row = int(np.searchsorted(off, np.flatnonzero(bad_val)[0], side="right") - 1)
        _fail(f"class id outside the {c} class_names at {_where(trace, row)}", path, "objects")
    bad = vals[off[:-1]] != trace.label
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"the first object must be the primary label at {_where(trace, row)}", path, "objects")
    if vals.size > n:
        # Duplicates within a row: sort (row, class) pairs and look for equal neighbours.
        row_of = np.repeat(np.arange(n), lengths)
        order = np.lexsort((vals, row_of))
        dup = (np.diff(row_of[order]) == 0) & (np.diff(vals[order]) == 0)
        if np.any(dup):
            row = int(row_of[order][np.flatnonzero(dup)[0]])
            _fail(f"a class is listed twice at {_where(trace, row)}", path, "objects")


def validate_recorded(trace: RecordedTrace, *, path: str | PathLike[str] | None = None) -> None:
    """Check the label level, then every recorded column against the model metadata."""
    labels = trace.labels
    validate_labels(labels, path=path)
    model = trace.model
    check_metadata(meta_to_json(trace.meta, "recorded", model), path=path)
    n = len(labels)
    exits = model.exit_points
    if len(model.semantic_dims) != len(exits):
        _fail(f"{len(model.semantic_dims)} semantic_dims for {len(exits)} exit points", path, "model/semantic_dims")
    if len(model.class_mapping) != labels.num_classes:
        _fail(f"class_mapping has {len(model.class_mapping)} entries for {labels.num_classes} trace classes",
              path, "model/class_mapping")
    m = len(model.class_names)
    mapping = np.asarray(model.class_mapping, dtype=np.int64)
    if np.any(mapping >= m):
        i = int(np.flatnonzero(mapping >= m)[0])
        _fail(f"trace class {labels.meta.class_names[i]!r} maps to model class {int(mapping[i])}, "
              f"outside the model's {m} classes", path, "model/class_mapping")
    mapped = mapping[labels.label]
    if np.any(mapped < 0):
        row = int(np.flatnonzero(mapped < 0)[0])
        cls = labels.meta.class_names[labels.label[row]]
        _fail(f"trace class {cls!r} is a primary object ({_where(labels, row)}) but the class mapping leaves it unmapped",
              path, "model/class_mapping")

    for name in ("true_class", "prediction", "frame_diff"):
        if getattr(trace, name).shape != (n,):
            _fail(f"has shape {getattr(trace, name).shape}, expected ({n},)", path, name)
    bad = trace.true_class != mapped
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"true_class {int(trace.true_class[row])} at {_where(labels, row)} is not class_mapping[label] = "
              f"{int(mapped[row])}", path, "true_class")
    _check_class_ids(trace.prediction, m, labels, path, "prediction")

    for group in ("vectors", "head_pred", "head_entropy"):
        got = set(getattr(trace, group))
        if got != set(exits):
            missing, extra = sorted(set(exits) - got), sorted(got - set(exits))
            detail = (f"missing {missing}" if missing else "") + ("; " if missing and extra else "") + (
                f"not in the model's exit points {extra}" if extra else "")
            _fail(f"exit points do not match the model's {list(exits)}: {detail}", path, group)
    ln_m = math.log(m) if m > 1 else 0.0
    for e, d in zip(exits, model.semantic_dims):
        vec = trace.vectors[e]
        col = f"vec_{e}"
        if vec.shape != (n, d):
            _fail(f"has shape {vec.shape}, expected ({n}, {d}) from semantic_dims", path, col)
        v32 = vec.astype(np.float32)
        finite = np.all(np.isfinite(v32), axis=1)
        if not np.all(finite):
            _fail(f"non-finite value at {_where(labels, int(np.flatnonzero(~finite)[0]))}", path, col)
        norm = np.sqrt(np.einsum("ij,ij->i", v32, v32))
        bad = np.abs(norm - 1.0) > UNIT_NORM_TOLERANCE
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            _fail(f"vector not L2-normalised (norm {norm[row]:.4f}) at {_where(labels, row)}", path, col)
        _check_class_ids(trace.head_pred[e], m, labels, path, f"head_pred_{e}")
        ent = trace.head_entropy[e]
        col = f"head_entropy_{e}"
        if ent.shape != (n,):
            _fail(f"has shape {ent.shape}, expected ({n},)", path, col)
        bad = ~np.isfinite(ent) | (ent < 0) | (ent > ln_m + ENTROPY_SLACK)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            _fail(f"entropy {float(ent[row])} at {_where(labels, row)} is outside [0, ln({m})]", path, col)

    fd = trace.frame_diff
    bad = ~np.isfinite(fd) | (fd < 0) | (fd > 1)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"value {float(fd[row])} at {_where(labels, row)} is outside [0, 1]", path, "frame_diff")
    first = labels.video_start_mask()
    bad = first & (fd != 1.0)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"must be 1.0 on a video's first frame, got {float(fd[row])} at {_where(labels, row)}", path, "frame_diff")

    desc = trace.input_desc
    if desc.shape != (n, INPUT_DESC_DIMS):
        _fail(f"has shape {desc.shape}, expected ({n}, {INPUT_DESC_DIMS})", path, "input_desc")
    d32 = desc.astype(np.float32)
    finite = np.all(np.isfinite(d32), axis=1)
    if not np.all(finite):
        _fail(f"non-finite value at {_where(labels, int(np.flatnonzero(~finite)[0]))}", path, "input_desc")
    norm = np.sqrt(np.einsum("ij,ij->i", d32, d32))
    bad = (np.abs(norm - 1.0) > UNIT_NORM_TOLERANCE) & (norm > UNIT_NORM_TOLERANCE)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"descriptor neither unit-norm nor zero (norm {norm[row]:.4f}) at {_where(labels, row)}", path, "input_desc")


def _check_class_ids(a: np.ndarray, m: int, labels: LabelTrace, path: Any, column: str) -> None:
    if a.shape != (len(labels),):
        _fail(f"has shape {a.shape}, expected ({len(labels)},)", path, column)
    bad = (a < 0) | (a >= m)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        _fail(f"class id {int(a[row])} at {_where(labels, row)} is outside the model's {m} classes", path, column)


def validate(trace: Trace, *, path: str | PathLike[str] | None = None) -> None:
    if isinstance(trace, RecordedTrace):
        validate_recorded(trace, path=path)
    elif isinstance(trace, LabelTrace):
        validate_labels(trace, path=path)
    else:
        raise TypeError(f"not a trace: {type(trace).__name__}")


# ----------------------------------------------------------------------------------------------------------
# Arrow conversion
# ----------------------------------------------------------------------------------------------------------

VIDEO_TYPE = pa.dictionary(pa.int32(), pa.string())
OBJECTS_TYPE = pa.list_(pa.int32())


def to_table(trace: Trace) -> pa.Table:
    """The trace as an Arrow table with its metadata attached (no validation; see :func:`write_trace`)."""
    labels = trace.labels if isinstance(trace, RecordedTrace) else trace
    model = trace.model if isinstance(trace, RecordedTrace) else None
    video = pa.DictionaryArray.from_arrays(pa.array(labels.video, pa.int32()), pa.array(list(labels.video_names), pa.string()))
    objects = pa.ListArray.from_arrays(pa.array(labels.objects_offsets.astype(np.int32), pa.int32()),
                                       pa.array(labels.objects_values, pa.int32()))
    cols: dict[str, pa.Array] = {
        "video": video,
        "frame": pa.array(labels.frame, pa.int64()),
        "time_s": pa.array(labels.time_s, pa.float64()),
        "label": pa.array(labels.label, pa.int32()),
        "objects": objects,
    }
    if isinstance(trace, RecordedTrace):
        cols["true_class"] = pa.array(trace.true_class, pa.int32())
        cols["prediction"] = pa.array(trace.prediction, pa.int32())
        for e, d in zip(model.exit_points, model.semantic_dims):
            vec = np.ascontiguousarray(trace.vectors[e], dtype=np.float16)
            cols[f"vec_{e}"] = pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float16()), d)
            cols[f"head_pred_{e}"] = pa.array(trace.head_pred[e], pa.int32())
            cols[f"head_entropy_{e}"] = pa.array(trace.head_entropy[e], pa.float32())
        cols["frame_diff"] = pa.array(trace.frame_diff, pa.float32())
        desc = np.ascontiguousarray(trace.input_desc, dtype=np.float16)
        cols["input_desc"] = pa.FixedSizeListArray.from_arrays(pa.array(desc.reshape(-1), pa.float16()), INPUT_DESC_DIMS)
    meta_json = meta_to_json(labels.meta, trace.level, model)
    table = pa.table(cols)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta_json, separators=(",", ":")).encode("utf-8")})


def expected_types(model: ModelInfo | None) -> dict[str, pa.DataType]:
    """Column name -> Arrow type, in file order, for the label level or a recorded trace of ``model``."""
    types: dict[str, pa.DataType] = {
        "video": VIDEO_TYPE,
        "frame": pa.int64(),
        "time_s": pa.float64(),
        "label": pa.int32(),
        "objects": OBJECTS_TYPE,
    }
    if model is not None:
        types["true_class"] = pa.int32()
        types["prediction"] = pa.int32()
        for e, d in zip(model.exit_points, model.semantic_dims):
            types[f"vec_{e}"] = pa.list_(pa.float16(), d)
            types[f"head_pred_{e}"] = pa.int32()
            types[f"head_entropy_{e}"] = pa.float32()
        types["frame_diff"] = pa.float32()
        types["input_desc"] = pa.list_(pa.float16(), INPUT_DESC_DIMS)
    return types


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_list(want) and pa.types.is_list(got):
        return got.value_type == want.value_type
    if pa.types.is_fixed_size_list(want) and pa.types.is_fixed_size_list(got):
        return got.value_type == want.value_type and got.list_size == want.list_size
    if pa.types.is_dictionary(want):
        # Dictionary-encoded is what we write; a plain string column (another writer) carries the same data.
        return (pa.types.is_dictionary(got) and pa.types.is_string(got.value_type)) or pa.types.is_string(got) \
            or pa.types.is_large_string(got)
    return got == want


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    arr = pa.concat_arrays(col.chunks) if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        raise FormatError(f"{arr.null_count} missing (null) values", field=name)
    return arr


def _fixed_rows(col: pa.Array, n: int, d: int, name: str) -> np.ndarray:
    if col.values.null_count:
        raise FormatError("null value inside a vector", field=name)
    return np.asarray(col.flatten(), dtype=np.float16).reshape(n, d)


def from_table(table: pa.Table, *, path: str | PathLike[str] | None = None) -> Trace:
    """Parse and validate an Arrow table carrying trace metadata."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FormatError(f"no '{METADATA_KEY.decode()}' metadata: not an Engram trace", path=path)
    try:
        meta_json = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"metadata is not valid JSON ({exc})", path=path, field=METADATA_KEY.decode()) from None
    check_metadata(meta_json, path=path)
    meta = meta_from_json(meta_json)
    model = ModelInfo.from_json(meta_json["model"]) if meta_json["level"] == "recorded" else None
    if model is not None and len(model.semantic_dims) != len(model.exit_points):
        raise FormatError(f"{len(model.semantic_dims)} semantic_dims for {len(model.exit_points)} exit points",
                          path=path, field="model/semantic_dims")

    if table.num_rows == 0:
        raise FormatError("the trace has no frames", path=path)
    want = expected_types(model)
    present = table.schema.names
    if len(set(present)) != len(present):
        raise FormatError("duplicate column names", path=path)
    for name, typ in want.items():
        if name not in present:
            raise FormatError(f"missing column for a {meta_json['level']} trace", path=path, field=name)
        got = table.schema.field(name).type
        if not _same_type(got, typ):
            raise FormatError(f"has type {got}, expected {typ}", path=path, field=name)
    extra = [c for c in present if c not in want]
    if extra:
        hint = " (vector/head columns must match the metadata's exit points)" if any(
            c.startswith(("vec_", "head_")) for c in extra) else ""
        raise FormatError(f"unexpected column(s) {extra}{hint}", path=path, field=extra[0])

    try:
        video_arr = _column(table, "video")
        if pa.types.is_dictionary(video_arr.type):
            video_arr = video_arr.dictionary_decode()
        encoded = video_arr.dictionary_encode()
        objects = _column(table, "objects")
        if objects.values.null_count:
            raise FormatError("null class id inside a list", field="objects")
        offsets = np.asarray(objects.offsets, dtype=np.int64)
        values = np.asarray(objects.values, dtype=np.int32)[offsets[0]: offsets[-1]] if len(objects) else np.empty(0, np.int32)
        offsets = offsets - offsets[0]
        labels = LabelTrace(
            meta=meta,
            video_names=tuple(encoded.dictionary.to_pylist()),
            video=np.asarray(encoded.indices, dtype=np.int32),
            frame=_column(table, "frame").to_numpy(),
            time_s=_column(table, "time_s").to_numpy(),
            label=_column(table, "label").to_numpy(),
            objects_offsets=offsets,
            objects_values=values,
        )
        if model is None:
            validate_labels(labels, path=path)
            return labels
        n = len(labels)
        vectors, head_pred, head_entropy = {}, {}, {}
        for e, d in zip(model.exit_points, model.semantic_dims):
            vectors[e] = _fixed_rows(_column(table, f"vec_{e}"), n, d, f"vec_{e}")
            head_pred[e] = _column(table, f"head_pred_{e}").to_numpy()
            head_entropy[e] = _column(table, f"head_entropy_{e}").to_numpy()
        trace = RecordedTrace(
            labels=labels,
            model=model,
            true_class=_column(table, "true_class").to_numpy(),
            prediction=_column(table, "prediction").to_numpy(),
            vectors=vectors,
            head_pred=head_pred,
            head_entropy=head_entropy,
            frame_diff=_column(table, "frame_diff").to_numpy(),
            input_desc=_fixed_rows(_column(table, "input_desc"), n, INPUT_DESC_DIMS, "input_desc"),
        )
    except FormatError as exc:
        if exc.path is None and path is not None:
            raise FormatError(exc.message, path=path, line=exc.line, field=exc.field) from None
        raise
    validate_recorded(trace, path=path)
    return trace


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def write_trace(trace: Trace, path: str | PathLike[str]) -> Path:
    """Validate, then write atomically (the target is either untouched or the complete new file)."""
    validate(trace, path=path)
    table = to_table(trace)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=True)
    return path


def _read_table(path: Path) -> pa.Table:
    if not path.exists():
        raise FormatError("file not found", path=path)
    if path.is_dir():
        raise FormatError("is a directory, not a trace file", path=path)
    if path.stat().st_size == 0:
        raise FormatError("empty file", path=path)
    try:
        table = pq.read_table(path)
        # A damaged file can still decode into invalid strings or offsets: check them all now, once.
        table.validate(full=True)
        table.schema.names
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"not a readable Parquet file ({_short(str(exc), 120)})", path=path) from None
    return table


def read_trace(path: str | PathLike[str]) -> Trace:
    """Read and fully validate a trace file of either level."""
    path = Path(path)
    return from_table(_read_table(path), path=path)


def read_label_trace(path: str | PathLike[str]) -> LabelTrace:
    """The label level of any trace file (a recorded trace's labels)."""
    trace = read_trace(path)
    return trace.labels if isinstance(trace, RecordedTrace) else trace


def read_recorded_trace(path: str | PathLike[str]) -> RecordedTrace:
    trace = read_trace(path)
    if not isinstance(trace, RecordedTrace):
        raise FormatError("is a label trace; a recorded trace is needed (run `trace record` on it first)", path=path)
    return trace


def read_metadata(path: str | PathLike[str]) -> dict[str, Any]:
    """Only the metadata JSON (validated against the schema), without reading the columns."""
    path = Path(path)
    if not path.exists():
        raise FormatError("file not found", path=path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"not a readable Parquet file ({_short(str(exc), 120)})", path=path) from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FormatError(f"no '{METADATA_KEY.decode()}' metadata: not an Engram trace", path=path)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"metadata is not valid JSON ({exc})", path=path) from None
    check_metadata(obj, path=path)
    return obj


def iter_rows(trace: LabelTrace) -> Iterable[tuple[str, int, float, int, list[int]]]:
    """``(video, frame, time_s, label, objects)`` per row; for tests and small tools, not hot loops."""
    objs = trace.objects_list()
    for i in range(len(trace)):
        yield (trace.video_names[trace.video[i]], int(trace.frame[i]), float(trace.time_s[i]), int(trace.label[i]), objs[i])
