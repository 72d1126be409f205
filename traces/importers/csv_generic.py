"""Any delimited action-segment (or per-frame label) file, through a column mapping.

Fields and where they come from (``--map FIELD=COLUMN``; COLUMN is a header name, or a 0-based index
for files without a header; ``N+`` means column N and every column after it):

- ``video``: the video id (default: the file name without extension);
- ``start`` and ``stop``: a segment's bounds, or ``frame`` for one labelled frame per row;
- ``label``: the class(es); with several (``3+``, or ``--label-sep`` inside one cell) the first is primary.

``--extract COLUMN=REGEX`` pulls fields out of one cell with named groups, e.g. for EGTEA Gaze+ split
files, whose lines look like ``OP01-R01-PastaSalad-66680-68130-F001597-F001639 23 11 6`` (clip name with
start/stop in ms and frames, then action, verb and noun ids, no header)::

    --delimiter whitespace --no-header --time-unit ms --map label=3+ --classes noun_idx.txt \\
    --extract '0=(?P<video>.+)-(?P<start>\\d+)-(?P<stop>\\d+)-F\\d+-F\\d+'

Times are in ``--time-unit`` (s, ms, or frames at ``--source-fps``); ``HH:MM:SS.ff`` values are read
as clock times. ``--classes FILE`` gives the class list, one per line, either ``name`` (id = line
number from ``--class-base``) or ``name id`` (EGTEA's ``noun_idx.txt``); labels may then be ids or
names. Without it, labels are names and the classes are those found, sorted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from engram.errors import FormatError
from traces.format import LabelTrace, PrimaryRule, TraceMeta
from traces.importers.common import (
    DEFAULT_SEGMENT_FPS, RULE_LATEST_START, Box, ImportOptions, Segment, Where, boxes_to_trace, describe_sources,
    filter_videos, iter_csv, iter_whitespace, make_policy, parse_float, parse_hms, read_text, segments_to_trace,
)

FIELDS = ("video", "start", "stop", "frame", "label")
TIME_UNITS = {"s": 1.0, "ms": 1e-3}
RULE_FIRST_LABEL = PrimaryRule(
    "first-label",
    "One row per labelled frame: the first label of the row is the primary object; several rows for one "
    "frame are merged in file order.",
)


@dataclass(frozen=True)
class ColumnSpec:
    name: str | None = None  # header name
    index: int | None = None  # 0-based index
    rest: bool = False  # this column and all after it

    @classmethod
    def parse(cls, text: str) -> "ColumnSpec":
        text = text.strip()
        if not text:
            raise ValueError("empty column")
        rest = text.endswith("+") and text[:-1].isdigit()
        core = text[:-1] if rest else text
        if core.isdigit():
            return cls(index=int(core), rest=rest)
        return cls(name=text)

    def __str__(self) -> str:
        return self.name if self.name is not None else f"{self.index}{'+' if self.rest else ''}"


@dataclass(frozen=True)
class CsvLayout:
    delimiter: str = ","  # or "whitespace"
    header: bool = True
    columns: Mapping[str, ColumnSpec] = field(default_factory=dict)
    extract: tuple[tuple[ColumnSpec, re.Pattern], ...] = ()
    time_unit: str = "s"  # s | ms | frames
    classes_path: Path | None = None
    class_base: int = 0
    label_sep: str | None = None

    def check(self) -> None:
        from_regex = {g for _, rx in self.extract for g in rx.groupindex}
        unknown = sorted(g for g in from_regex if g not in FIELDS)
        if unknown:
            raise FormatError(f"--extract group {unknown[0]!r} is not a field; fields are {', '.join(FIELDS)}")
        have = set(self.columns) | from_regex
        if "label" not in have:
            raise FormatError("no label column: pass --map label=COLUMN")
        if not ({"start", "stop"} <= have or "frame" in have):
            raise FormatError("need --map start=... and --map stop=... (segments) or --map frame=... (labelled frames)")
        if "frame" in have and ({"start", "stop"} & have):
            raise FormatError("map either start/stop (segments) or frame (labelled frames), not both")
        if self.time_unit not in ("s", "ms", "frames"):
            raise FormatError(f"unknown --time-unit {self.time_unit!r}; use s, ms or frames")
        for f, spec in self.columns.items():
            if spec.rest and f != "label":
                raise FormatError(f"--map {f}={spec}: only label may span several columns")
            if spec.name is not None and not self.header:
                raise FormatError(f"--map {f}={spec}: without a header, columns are 0-based numbers")


def load_classes(path: Path, base: int) -> tuple[tuple[str, ...], dict[int, str]]:
    """Class names in id order and id -> name. Lines: ``name`` (implicit ids) or ``name id``."""
    text = read_text(path)
    explicit: list[tuple[int, str, int]] = []
    plain: list[tuple[str, int]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.rsplit(None, 1)
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            explicit.append((int(parts[1]), parts[0].strip(), line))
        else:
            plain.append((s, line))
    if explicit and plain:
        raise FormatError("mixes 'name' and 'name id' lines", path=path, line=plain[0][1])
    if explicit:
        items = sorted(explicit)
    else:
        items = [(base + k, name, line) for k, (name, line) in enumerate(plain)]
    if not items:
        raise FormatError("no class names", path=path)
    by_id: dict[int, str] = {}
    names: set[str] = set()
    for cid, name, line in items:
        if cid in by_id:
            raise FormatError(f"class id {cid} appears twice", path=path, line=line)
        if name in names:
            raise FormatError(f"class name {name!r} appears twice", path=path, line=line)
        by_id[cid] = name
        names.add(name)
    return tuple(by_id[c] for c in sorted(by_id)), by_id


def _resolve(spec: ColumnSpec, header: list[str] | None, path: Path, what: str) -> ColumnSpec:
    if spec.name is None:
        return spec
    assert header is not None
    if spec.name not in header:
        raise FormatError(f"{what}: no column {spec.name!r} in the header {header[:12]}", path=path, line=1)
    return ColumnSpec(index=header.index(spec.name))


def _cells(row: list[str], spec: ColumnSpec, where: Where, fld: str) -> list[str]:
    assert spec.index is not None
    if spec.index >= len(row):
        raise where.error(f"row has {len(row)} columns, {fld} is column {spec.index} (truncated row?)", fld)
    return [c.strip() for c in (row[spec.index:] if spec.rest else [row[spec.index]])]


def _time(text: str, where: Where, fld: str, layout: CsvLayout, source_fps: float | None) -> float:
    if ":" in text:
        return parse_hms(text, where, fld)
    value = parse_float(text, where, fld)
    if value < 0:
        raise where.error(f"negative time {value}", fld)
    if layout.time_unit == "frames":
        assert source_fps is not None
        return value / source_fps
    return value * TIME_UNITS[layout.time_unit]


def parse_file(path: Path, layout: CsvLayout, options: ImportOptions,
               ids: Mapping[int, str] | None, names: frozenset[str] | None) -> tuple[list[Segment], list[Box]]:
    text = read_text(path)
    if layout.delimiter == "whitespace":
        rows = iter_whitespace(text)
    else:
        rows = iter_csv(path, text, layout.delimiter)
    header = None
    if layout.header:
        try:
            _, header = next(rows)
        except StopIteration:
            raise FormatError("empty file", path=path) from None
        header = [h.strip() for h in header]
    cols = {f: _resolve(s, header, path, f"--map {f}") for f, s in layout.columns.items()}
    extract = [(_resolve(s, header, path, "--extract"), rx) for s, rx in layout.extract]
    segments: list[Segment] = []
    boxes: list[Box] = []
    count = 0
    for line, row in rows:
        count += 1
        where = Where(path, line)
        values: dict[str, list[str]] = {}
        for spec, rx in extract:
            cell = _cells(row, spec, where, f"column {spec.index}")[0]
            m = rx.fullmatch(cell)
            if m is None:
                raise where.error(f"{cell[:60]!r} does not match --extract pattern {rx.pattern!r}")
            for g, v in m.groupdict().items():
                if v is not None:
                    values[g] = [v.strip()]
        for f, spec in cols.items():
            values[f] = _cells(row, spec, where, f)
        video = values.get("video", [path.stem])[0]
        if not video:
            raise where.error("empty video id", "video")
        raw_labels = [c for c in values["label"] if c]
        if layout.label_sep:
            raw_labels = [p.strip() for c in raw_labels for p in c.split(layout.label_sep) if p.strip()]
        if not raw_labels:
            raise where.error("no label", "label")
        labels = [_class_name(v, where, ids, names) for v in raw_labels]
        classes = tuple(dict.fromkeys(labels))
        if "frame" in values:
            fr = parse_float(values["frame"][0], where, "frame")
            if fr < 0 or fr != int(fr):
                raise where.error(f"frame must be a whole number >= 0, got {values['frame'][0]!r}", "frame")
            for c in classes:
                boxes.append(Box(video, int(fr), c, 0.0, where))
        else:
            start = _time(values["start"][0], where, "start", layout, options.source_fps)
            stop = _time(values["stop"][0], where, "stop", layout, options.source_fps)
            if stop < start:
                raise where.error(f"stop {values['stop'][0]} is before start {values['start'][0]}", "stop")
            segments.append(Segment(video, start, stop, classes, where))
    if count == 0:
        raise FormatError("no data rows", path=path)
    return segments, boxes


def _class_name(value: str, where: Where, ids: Mapping[int, str] | None, names: frozenset[str] | None) -> str:
    if ids is None:
        return value
    if re.fullmatch(r"-?\d+", value):
        name = ids.get(int(value))
        if name is None:
            raise where.error(f"unknown class id {value} (not in the --classes file)", "label")
        return name
    if names is not None and value in names:
        return value
    raise where.error(f"unknown class {value!r} (not in the --classes file)", "label")


def import_files(paths: Sequence[Path], options: ImportOptions, layout: CsvLayout) -> LabelTrace:
    layout.check()
    if layout.time_unit == "frames" and options.source_fps is None:
        raise FormatError("--time-unit frames needs --source-fps")
    vocabulary, ids = (load_classes(layout.classes_path, layout.class_base) if layout.classes_path
                       else (None, None))
    names = frozenset(vocabulary) if vocabulary else None
    segments: list[Segment] = []
    boxes: list[Box] = []
    for p in paths:
        s, b = parse_file(p, layout, options, ids, names)
        segments += s
        boxes += b
    policy = make_policy(options, vocabulary)
    common = dict(
        source=options.source or f"CSV annotations ({describe_sources(list(paths))})",
        license=options.license or "unspecified (pass --license)",
        attribution=options.attribution or "unspecified (pass --attribution)",
        class_names=("placeholder",),
    )
    prov = {"tool": "engram trace import", "format": "csv", "inputs": [p.name for p in paths],
            "delimiter": layout.delimiter, "header": layout.header, "time_unit": layout.time_unit,
            "map": {f: str(s) for f, s in layout.columns.items()},
            "extract": {str(s): rx.pattern for s, rx in layout.extract}}
    if segments:
        segments = filter_videos(segments, options.videos, "segments")
        fps = options.fps or DEFAULT_SEGMENT_FPS
        meta = TraceMeta(fps=fps, primary_rule=RULE_LATEST_START, provenance={**prov, "fps": fps}, **common)
        return segments_to_trace(segments, meta, policy, fps)
    if options.source_fps is None:
        raise FormatError("labelled-frame rows need --source-fps (the rate the frame numbers count at)")
    boxes = filter_videos(boxes, options.videos, "rows")
    meta = TraceMeta(fps=options.fps or options.source_fps, primary_rule=RULE_FIRST_LABEL,
                     provenance={**prov, "source_fps": options.source_fps}, **common)
    # Equal (zero) areas make boxes_to_trace keep file order: the first label of a frame stays primary.
    return boxes_to_trace(boxes, meta, policy, options.source_fps, options.fps)
