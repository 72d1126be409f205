"""Shared parsing of EPIC-KITCHENS action-segment CSVs (both layouts) and their noun-class tables.

The two layouts differ in column names (EPIC-55: ``uid``, noun table ``noun_id,class_key,nouns``;
EPIC-100: ``narration_id``, noun table ``id,key,instances,category``) but share the segment columns used
here: ``video_id``, ``start_timestamp``/``stop_timestamp`` (``HH:MM:SS.ff``), ``start_frame``/``stop_frame``,
``noun_class`` (the main noun) and ``all_noun_classes`` (every noun of the narration, e.g. ``[69, 1]``).

Times come from the timestamps, not the frame numbers: frame numbers refer to each video's own frame rate
(59.94, 50, 48, 29.97 or 90 fps depending on the video), timestamps do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from engram.errors import FormatError
from traces.format import LabelTrace, TraceMeta
from traces.importers.common import (
    DEFAULT_SEGMENT_FPS, RULE_LATEST_START, ImportOptions, Segment, Where, describe_sources, filter_videos,
    iter_csv, make_policy, parse_hms, parse_int, read_text, segments_to_trace,
)

LICENSE = "CC BY-NC 4.0 (https://creativecommons.org/licenses/by-nc/4.0/)"


@dataclass(frozen=True)
class Layout:
    name: str  # --format value
    dataset: str
    id_column: str  # the column that tells the layouts apart
    noun_id: str
    noun_key: str
    default_nouns: Path
    attribution: str
    other: str  # the other layout's --format, for a helpful error


SEGMENT_COLUMNS = ("video_id", "start_timestamp", "stop_timestamp", "start_frame", "stop_frame",
                   "noun_class", "all_noun_classes")


def _header(path: Path) -> list[str]:
    text = read_text(path)
    for _, row in iter_csv(path, text.split("\n", 1)[0] + "\n"):
        return [c.strip() for c in row]
    return []


def load_nouns(path: Path, layout: Layout) -> tuple[str, ...]:
    """Noun class names ordered by id; ids must run 0..N-1 so that ``noun_class`` indexes the list."""
    text = read_text(path)
    rows = iter_csv(path, text)
    _, header = next(rows)
    header = [c.strip() for c in header]
    if layout.noun_id not in header or layout.noun_key not in header:
        raise FormatError(f"not an {layout.dataset} noun table: expected columns {layout.noun_id!r}, "
                          f"{layout.noun_key!r}, got {header[:4]}", path=path, line=1)
    i_id, i_key = header.index(layout.noun_id), header.index(layout.noun_key)
    names: list[str] = []
    for line, row in rows:
        where = Where(path, line)
        if len(row) != len(header):
            raise where.error(f"expected {len(header)} fields, got {len(row)} (truncated or malformed row?)")
        nid = parse_int(row[i_id], where, layout.noun_id, minimum=0)
        if nid != len(names):
            raise where.error(f"noun ids must run 0, 1, 2...; expected {len(names)}, got {nid}", layout.noun_id)
        key = row[i_key].strip()
        if not key:
            raise where.error("empty class name", layout.noun_key)
        if key in names:
            raise where.error(f"class name {key!r} appears twice", layout.noun_key)
        names.append(key)
    if not names:
        raise FormatError("noun table has a header but no rows", path=path)
    return tuple(names)


def _noun_list(text: str, where: Where) -> list[int]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise where.error(f"expected a list of class ids like [69, 1], got {text[:40]!r}", "all_noun_classes") from None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise where.error(f"expected a list of class ids like [69, 1], got {text[:40]!r}", "all_noun_classes")
    return value


def parse_segments(path: Path, layout: Layout, nouns: Sequence[str]) -> list[Segment]:
    text = read_text(path)
    rows = iter_csv(path, text)
    line, header = next(rows)
    header = [c.strip() for c in header]
    if layout.id_column not in header:
        other = "uid" if layout.id_column == "narration_id" else "narration_id"
        hint = f"; it looks like the other layout, use --format {layout.other}" if other in header else ""
        raise FormatError(f"not an {layout.dataset} annotation file: no {layout.id_column!r} column{hint}",
                          path=path, line=line)
    missing = [c for c in SEGMENT_COLUMNS if c not in header]
    if missing:
        raise FormatError(f"missing column(s) {missing} (a test split without labels?)", path=path, line=line)
    col = {c: header.index(c) for c in SEGMENT_COLUMNS}
    segments: list[Segment] = []
    for line, row in rows:
        where = Where(path, line)
        if len(row) != len(header):
            raise where.error(f"expected {len(header)} fields, got {len(row)} (truncated or malformed row?)")
        video = row[col["video_id"]].strip()
        if not video:
            raise where.error("empty video id", "video_id")
        start = parse_hms(row[col["start_timestamp"]], where, "start_timestamp")
        stop = parse_hms(row[col["stop_timestamp"]], where, "stop_timestamp")
        if stop < start:
            raise where.error(f"stop_timestamp {row[col['stop_timestamp']]} is before start_timestamp "
                              f"{row[col['start_timestamp']]}", "stop_timestamp")
        f0 = parse_int(row[col["start_frame"]], where, "start_frame", minimum=0)
        f1 = parse_int(row[col["stop_frame"]], where, "stop_frame", minimum=0)
        if f1 < f0:
            raise where.error(f"stop_frame {f1} is before start_frame {f0}", "stop_frame")
        main = parse_int(row[col["noun_class"]], where, "noun_class")
        others = _noun_list(row[col["all_noun_classes"]].strip(), where)
        ids = [main] + [c for c in others if c != main]
        for c in ids:
            if not 0 <= c < len(nouns):
                fld = "noun_class" if c == main else "all_noun_classes"
                raise where.error(f"unknown noun class {c} (the noun table has classes 0..{len(nouns) - 1})", fld)
        segments.append(Segment(video, start, stop, tuple(dict.fromkeys(nouns[c] for c in ids)), where))
    if not segments:
        raise FormatError("annotation file has a header but no rows", path=path)
    return segments


def import_epic(paths: Sequence[Path], options: ImportOptions, layout: Layout) -> LabelTrace:
    annotations: list[Path] = []
    noun_tables: list[Path] = []
    for p in paths:
        header = _header(p)
        if layout.noun_key in header and layout.noun_id in header:
            noun_tables.append(p)
        elif "duration" in header and "fps" in header:
            continue  # the video-info table: timestamps already give real time
        else:
            annotations.append(p)
    if len(noun_tables) > 1:
        raise FormatError(f"several noun tables given ({describe_sources(noun_tables)}); pass one")
    if not annotations:
        raise FormatError("no annotation CSV among the inputs (only class tables)")
    nouns_path = noun_tables[0] if noun_tables else layout.default_nouns
    nouns = load_nouns(nouns_path, layout)
    segments: list[Segment] = []
    for p in annotations:
        segments.extend(parse_segments(p, layout, nouns))
    segments = filter_videos(segments, options.videos, "segments")
    fps = options.fps or DEFAULT_SEGMENT_FPS
    policy = make_policy(options, nouns)
    meta = TraceMeta(
        source=options.source or f"{layout.dataset} action segments ({describe_sources(annotations)}; "
                                 f"nouns: {nouns_path.name})",
        license=options.license or LICENSE,
        attribution=options.attribution or layout.attribution,
        fps=fps,
        class_names=nouns,
        primary_rule=RULE_LATEST_START,
        provenance={"tool": "engram trace import", "format": layout.name, "fps": fps,
                    "inputs": [p.name for p in annotations], "noun_table": nouns_path.name,
                    **({"videos": list(options.videos)} if options.videos else {})},
    )
    return segments_to_trace(segments, meta, policy, fps)
