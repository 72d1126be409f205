"""What every importer shares: reading text safely, class resolution, and turning annotations into frames.

Importers parse their format into one of two neutral shapes and hand it to a builder here:

- :class:`Segment`: a class (or several) in view from ``start_s`` to ``stop_s`` (action-segment formats:
  EPIC-KITCHENS, EGTEA-style CSV). :func:`segments_to_trace` samples them on a grid of ``fps`` frames per
  second;
- :class:`Box`: one object in one annotated frame (box formats: KITTI, MOT, Scalabel, Something-Else).
  :func:`boxes_to_trace` groups them by frame.

Both carry the source line (or JSON path) so that a class error can name where it came from.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from engram.errors import FormatError
from traces.format import LabelTrace, PrimaryRule, TraceMeta

# Snap tolerance for "t = k / fps" comparisons: timestamps are given to 1 ms at best.
_GRID_EPS = 1e-6
# Guards against a corrupted timestamp turning into billions of frames: ~11.6 days per video, and a
# trace size that still fits comfortably in memory.
MAX_TIME_S = 1e6
MAX_FRAMES = 20_000_000

RULE_LATEST_START = PrimaryRule(
    "latest-start",
    "Segments are sampled at t = k / fps (a segment covers start <= t < stop). When several segments are "
    "active, the primary object is the main noun of the segment that started last (ties: the later row in "
    "the file), since it is the newest thing the camera wearer turned to; objects in view are all nouns of "
    "all active segments, primary first, then by latest start.",
)
RULE_LARGEST_BOX = PrimaryRule(
    "largest-box",
    "The primary object is the class of the largest box (area in pixels) in the frame (ties: the earlier "
    "line or list entry); objects in view are the distinct classes present, ordered by their largest box.",
)


@dataclass(frozen=True)
class Where:
    """A location in a source file, for error messages: a line number or a JSON path."""

    path: Path
    line: int | None = None
    pointer: str | None = None

    def error(self, message: str, field: str | None = None) -> FormatError:
        fld = field if self.pointer is None else (self.pointer if field is None else f"{self.pointer}.{field}")
        return FormatError(message, path=self.path, line=self.line, field=fld)


@dataclass(frozen=True)
class Segment:
    video: str
    start_s: float
    stop_s: float
    classes: tuple[str, ...]  # primary first
    where: Where


@dataclass(frozen=True)
class Box:
    video: str
    frame: int  # 0-based index in the source's annotation frame sequence
    cls: str
    area: float
    where: Where


@dataclass(frozen=True)
class ImportOptions:
    """Options common to all importers (format-specific ones live in their modules)."""

    fps: float | None = None  # segment formats: sampling rate; box formats: optional downsampling
    source_fps: float | None = None  # box formats and frame-based CSV: the annotation frame rate
    ignore_classes: tuple[str, ...] | None = None  # None: the format's default
    class_map: Mapping[str, str] | None = None  # source class name -> trace class name
    class_map_path: Path | None = None
    videos: tuple[str, ...] = ()  # keep only these videos (empty: all)
    source: str | None = None  # override the metadata's source / license / attribution
    license: str | None = None
    attribution: str | None = None


DEFAULT_SEGMENT_FPS = 5.0


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


def read_text(path: str | PathLike[str]) -> str:
    """A whole text file, UTF-8 (BOM tolerated); missing, binary or empty input is a FormatError."""
    path = Path(path)
    if not path.exists():
        raise FormatError("file not found", path=path)
    if path.is_dir():
        raise FormatError("is a directory, not an annotation file", path=path)
    data = path.read_bytes()
    if not data.strip():
        raise FormatError("empty file", path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FormatError("not UTF-8 text (binary or wrongly encoded file?)", path=path, line=line) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise FormatError("NUL byte in text (binary or corrupted file?)", path=path, line=line)
    return text


def read_json(path: str | PathLike[str]) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from None
    except RecursionError:
        raise FormatError("malformed JSON: nested too deeply", path=path) from None


def iter_csv(path: Path, text: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` for each non-blank row; a csv syntax error names its line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FormatError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from None
        if row and any(cell.strip() for cell in row):
            yield reader.line_num, row


def iter_whitespace(text: str) -> Iterator[tuple[int, list[str]]]:
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            yield n, fields


def parse_int(text: str, where: Where, field: str, *, minimum: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise where.error(f"expected an integer, got {text.strip()[:40]!r}", field) from None
    if minimum is not None and value < minimum:
        raise where.error(f"must be >= {minimum}, got {value}", field)
    return value


def parse_float(text: str, where: Where, field: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise where.error(f"expected a number, got {text.strip()[:40]!r}", field) from None
    if not math.isfinite(value):
        raise where.error(f"expected a finite number, got {text.strip()!r}", field)
    return value


def parse_hms(text: str, where: Where, field: str) -> float:
    """``HH:MM:SS.ff`` (EPIC-KITCHENS timestamps) or ``MM:SS.ff`` -> seconds."""
    parts = text.strip().split(":")
    if not 2 <= len(parts) <= 3:
        raise where.error(f"expected a timestamp HH:MM:SS.ff, got {text.strip()[:40]!r}", field)
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise where.error(f"expected a timestamp HH:MM:SS.ff, got {text.strip()[:40]!r}", field) from None
    if any(not math.isfinite(x) or x < 0 for x in nums) or any(x >= 60 for x in nums[1:]) or \
            any(x != int(x) for x in nums[:-1]):
        raise where.error(f"invalid timestamp {text.strip()!r}", field)
    seconds = 0.0
    for x in nums:
        seconds = seconds * 60 + x
    return seconds


def unique_video_name(name: str, taken: set[str], where: Where) -> str:
    if name in taken:
        raise where.error(f"video {name!r} comes from two sources; import them separately or rename one")
    taken.add(name)
    return name


# ----------------------------------------------------------------------------------------------------------
# Classes
# ----------------------------------------------------------------------------------------------------------


def load_class_map(path: str | PathLike[str]) -> dict[str, str]:
    """A source-class -> trace-class renaming: JSON object, or CSV/TSV with two columns (no header needed).

    Several source classes may map to one trace class (merging); mapping to an empty string is an error,
    use ``--ignore-class`` to drop a class.
    """
    path = Path(path)
    text = read_text(path)
    mapping: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        obj = read_json(path)
        for k, v in obj.items():
            if not isinstance(v, str) or not v.strip():
                raise FormatError(f"class {k!r} maps to {v!r}; expected a non-empty class name", path=path, field=k)
            mapping[str(k)] = v.strip()
        return mapping
    delim = "\t" if "\t" in text.splitlines()[0] else ","
    for line, row in iter_csv(path, text, delim):
        if len(row) != 2:
            raise FormatError(f"expected 2 columns (source class, trace class), got {len(row)}", path=path, line=line)
        src, dst = row[0].strip(), row[1].strip()
        if line == 1 and (src.lower(), dst.lower()) in {("source", "target"), ("from", "to"), ("source", "trace")}:
            continue
        if not src or not dst:
            raise FormatError("empty class name", path=path, line=line)
        if src in mapping and mapping[src] != dst:
            raise FormatError(f"class {src!r} is mapped twice", path=path, line=line)
        mapping[src] = dst
    if not mapping:
        raise FormatError("no class mapping rows", path=path)
    return mapping


@dataclass(frozen=True)
class ClassPolicy:
    """How source class names become trace class ids.

    ``vocabulary``: a format's fixed class list (ids stay stable across files, unseen classes included);
    None means the classes are discovered from the data and sorted by name.
    """

    vocabulary: tuple[str, ...] | None
    ignore: frozenset[str] = frozenset()
    class_map: Mapping[str, str] | None = None
    class_map_path: Path | None = None

    def apply(self, name: str, where: Where) -> str | None:
        """The trace class name for a source class, or None when it is ignored."""
        if name in self.ignore:
            return None
        if self.class_map is None:
            return name
        target = self.class_map.get(name)
        if target is None:
            mp = f" {self.class_map_path}" if self.class_map_path else ""
            raise where.error(f"class {name!r} is not in the class map{mp} (map it, or pass --ignore-class {name!r})")
        return target

    def class_names(self, used: Iterable[str]) -> tuple[str, ...]:
        if self.class_map is not None:
            # Order of first appearance among the map's targets: the user's own ordering.
            names = list(dict.fromkeys(self.class_map.values()))
            return tuple(names)
        if self.vocabulary is not None:
            return tuple(c for c in self.vocabulary if c not in self.ignore)
        return tuple(sorted(set(used), key=_natural_key))


def _natural_key(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def make_policy(options: ImportOptions, vocabulary: tuple[str, ...] | None, default_ignore: Sequence[str] = ()) -> ClassPolicy:
    ignore = frozenset(default_ignore if options.ignore_classes is None else options.ignore_classes)
    if vocabulary is not None:
        unknown = sorted(c for c in ignore if c not in vocabulary)
        if unknown:
            raise FormatError(f"--ignore-class {unknown[0]!r} is not a class of this format "
                              f"(classes: {', '.join(vocabulary[:20])}{'...' if len(vocabulary) > 20 else ''})")
    return ClassPolicy(vocabulary, ignore, options.class_map, options.class_map_path)


# ----------------------------------------------------------------------------------------------------------
# Builders (pure)
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Rows:
    """Per-frame rows collected by a builder before they become a LabelTrace."""

    video: list[str] = field(default_factory=list)
    frame: list[int] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)
    objects: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)


def _resolve_ids(items: Sequence[tuple[str, Where]], policy: ClassPolicy) -> tuple[tuple[str, ...], list[int | None]]:
    """Map each (source class, where) to a trace class id (None: ignored); fixed vocabularies keep ids."""
    targets = [policy.apply(name, where) for name, where in items]
    names = policy.class_names(t for t in targets if t is not None)
    index = {n: i for i, n in enumerate(names)}
    return names, [None if t is None else index[t] for t in targets]


def segments_to_trace(segments: Sequence[Segment], meta_base: TraceMeta, policy: ClassPolicy, fps: float) -> LabelTrace:
    """Sample segments at ``fps`` and apply the latest-start primary rule (see RULE_LATEST_START).

    Frame k of a video lies at t = k / fps; frames where no segment is active are left out, so the frame
    index keeps real time.
    """
    if not segments:
        raise FormatError("no annotation rows to import")
    if not fps > 0:
        raise FormatError(f"fps must be positive, got {fps}")
    for s in segments:
        if not 0 <= s.start_s <= s.stop_s <= MAX_TIME_S:
            raise s.where.error(f"segment {s.start_s:g}-{s.stop_s:g} s is outside 0..{MAX_TIME_S:g} s or reversed")
    total = sum(s.stop_s - s.start_s for s in segments) * fps
    if total > MAX_FRAMES:
        raise FormatError(f"sampling at {fps:g} fps would make up to {total:,.0f} frames (limit {MAX_FRAMES:,}); "
                          "lower --fps or import fewer videos")
    flat: list[tuple[str, Where]] = [(c, s.where) for s in segments for c in s.classes]
    names, ids = _resolve_ids(flat, policy)
    seg_ids: list[list[int]] = []
    k = 0
    for s in segments:
        cls = [c for c in ids[k: k + len(s.classes)] if c is not None]
        seg_ids.append(list(dict.fromkeys(cls)))
        k += len(s.classes)

    by_video: dict[str, list[int]] = {}
    for i, s in enumerate(segments):
        by_video.setdefault(s.video, []).append(i)

    rows = Rows()
    for video, idx in by_video.items():
        idx = [i for i in idx if seg_ids[i]]  # segments whose classes are all ignored show nothing
        if not idx:
            continue
        # Rank segments by (start, file order): the primary at a frame is the active one with the top rank.
        idx.sort(key=lambda i: (segments[i].start_s, i))
        starts = np.array([segments[i].start_s for i in idx])
        stops = np.array([segments[i].stop_s for i in idx])
        k_lo = np.ceil(starts * fps - _GRID_EPS).astype(np.int64)
        k_hi = np.ceil(stops * fps - _GRID_EPS).astype(np.int64)  # exclusive: a segment covers [start, stop)
        counts = np.maximum(k_hi - k_lo, 0)
        if counts.sum() == 0:
            continue
        rank = np.repeat(np.arange(len(idx)), counts)
        kk = np.repeat(k_lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        order = np.lexsort((-rank, kk))  # by frame, then newest segment first
        kk, rank = kk[order], rank[order]
        bounds = np.flatnonzero(np.diff(kk, prepend=-1) != 0)
        ends = np.append(bounds[1:], len(kk))
        for b, e in zip(bounds.tolist(), ends.tolist()):
            objs: list[int] = []
            for r in rank[b:e].tolist():
                objs.extend(seg_ids[idx[r]])
            rows.video.append(video)
            rows.frame.append(int(kk[b]))
            rows.time_s.append(int(kk[b]) / fps)
            rows.objects.append(list(dict.fromkeys(objs)))
    return _finish(rows, meta_base, names, fps)


def boxes_to_trace(boxes: Sequence[Box], meta_base: TraceMeta, policy: ClassPolicy, source_fps: float,
                   fps: float | None = None) -> LabelTrace:
    """Group boxes by (video, frame) and apply the largest-box primary rule (see RULE_LARGEST_BOX).

    With ``fps`` below ``source_fps`` the annotated frames are thinned to the first one in each period of
    the new grid; frame indices are then on the new grid (f = round(t * fps)).
    """
    if not boxes:
        raise FormatError("no boxes to import")
    if fps is not None and fps > source_fps * (1 + 1e-9):
        raise FormatError(f"--fps {fps:g} is above the annotation rate {source_fps:g}; box annotations cannot be upsampled")
    names, ids = _resolve_ids([(b.cls, b.where) for b in boxes], policy)
    per_frame: dict[str, dict[int, dict[int, tuple[float, int]]]] = {}
    for order, (b, cid) in enumerate(zip(boxes, ids)):
        frames = per_frame.setdefault(b.video, {})
        if cid is None:
            continue
        classes = frames.setdefault(b.frame, {})
        best = classes.get(cid)
        if best is None or b.area > best[0]:
            classes[cid] = (b.area, order)
    rows = Rows()
    grid_fps = fps if fps is not None else source_fps
    for video, frames in per_frame.items():
        last_cell = None
        for f in sorted(frames):
            classes = frames[f]
            if not classes:
                continue
            t = f / source_fps
            if fps is not None:
                cell = math.floor(t * fps + _GRID_EPS)
                if cell == last_cell:
                    continue
                last_cell = cell
            # Largest box first; on equal areas the class whose box came first in the file.
            objs = sorted(classes, key=lambda c: (-classes[c][0], classes[c][1]))
            rows.video.append(video)
            rows.frame.append(f if fps is None else int(round(t * fps)))
            rows.time_s.append(t)
            rows.objects.append(objs)
    return _finish(rows, meta_base, names, grid_fps)


def _finish(rows: Rows, meta_base: TraceMeta, names: tuple[str, ...], fps: float) -> LabelTrace:
    if not names:
        raise FormatError("every class was ignored: nothing left to import")
    if len(rows) == 0:
        raise FormatError("no frame has an object in view after sampling/ignoring (is --fps too low?)")
    meta = TraceMeta(meta_base.source, meta_base.license, meta_base.attribution, fps, names,
                     meta_base.primary_rule, meta_base.provenance)
    return LabelTrace.from_frames(meta, rows.video, rows.frame, rows.time_s, rows.objects)


def describe_sources(paths: Sequence[Path], limit: int = 4) -> str:
    names = [p.name for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def filter_videos(items: list, videos: Sequence[str], kind: str = "annotations") -> list:
    if not videos:
        return items
    wanted = set(videos)
    kept = [x for x in items if x.video in wanted]
    missing = wanted - {x.video for x in kept}
    if missing:
        raise FormatError(f"--video {sorted(missing)[0]!r} has no {kind} in the input")
    return kept
