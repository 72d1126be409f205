"""MOTChallenge ground truth (``<sequence>/gt/gt.txt``).

Comma-separated, one box per line, 1-based frames, sorted by track then frame::

    frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility     (MOT16/17/20: 9 values)
    frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z               (MOT15: 10 values, all pedestrians)

``conf`` 0 marks boxes ignored by the benchmark's evaluation (static people, vehicles, occluders...); they
are still objects in view and are kept. Class ids 1..13: pedestrian, person on vehicle, car, bicycle,
motorbike, non motorized vehicle, static person, distractor, occluder, occluder on the ground, occluder
full, reflection, crowd (MOT20). The frame rate and sequence name come from ``<sequence>/seqinfo.ini``
(``frameRate``, ``name``) when present; otherwise pass ``--source-fps`` and the folder name is used.
Frames are renumbered from 0.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Sequence

from engram.errors import FormatError
from traces.format import LabelTrace, TraceMeta
from traces.importers.common import (
    RULE_LARGEST_BOX, Box, ImportOptions, Where, boxes_to_trace, filter_videos, iter_csv,
    make_policy, parse_float, parse_int, read_text, unique_video_name,
)

CLASSES = ("pedestrian", "person on vehicle", "car", "bicycle", "motorbike", "non motorized vehicle",
           "static person", "distractor", "occluder", "occluder on the ground", "occluder full", "reflection", "crowd")
LICENSE = "CC BY-NC-SA 3.0 (https://creativecommons.org/licenses/by-nc-sa/3.0/)"
ATTRIBUTION = ("MOTChallenge benchmark: A. Milan, L. Leal-Taixe, I. Reid, S. Roth, K. Schindler, 'MOT16: A Benchmark "
               "for Multi-Object Tracking', arXiv:1603.00831; P. Dendorfer et al., 'MOTChallenge: A Benchmark for "
               "Single-Camera Multiple Target Tracking', IJCV 2021; https://motchallenge.net. Changed: boxes reduced "
               "to the classes in view per frame.")


def read_seqinfo(gt: Path) -> tuple[str | None, float | None]:
    ini = gt.resolve().parent.parent / "seqinfo.ini"
    if not ini.exists():
        return None, None
    parser = configparser.ConfigParser()
    try:
        parser.read_string(read_text(ini), source=str(ini))
    except configparser.Error as exc:
        raise FormatError(f"malformed seqinfo.ini: {str(exc).splitlines()[0]}", path=ini) from None
    if not parser.has_section("Sequence"):
        raise FormatError("no [Sequence] section", path=ini)
    sec = parser["Sequence"]
    name = sec.get("name", "").strip() or None
    rate = sec.get("frameRate")
    fps = None
    if rate is not None:
        try:
            fps = float(rate)
        except ValueError:
            raise FormatError(f"frameRate {rate!r} is not a number", path=ini, field="frameRate") from None
        if not fps > 0:
            raise FormatError(f"frameRate must be positive, got {rate}", path=ini, field="frameRate")
    return name, fps


def parse_file(path: Path, video: str) -> list[Box]:
    boxes: list[Box] = []
    last: dict[int, int] = {}  # track id -> last frame
    width = None
    for line, row in iter_csv(path, read_text(path)):
        where = Where(path, line)
        if width is None:
            width = len(row)
            if width not in (9, 10):
                raise where.error(f"expected 9 values (MOT16/17/20 gt) or 10 (MOT15 gt), got {width}")
        if len(row) != width:
            raise where.error(f"expected {width} values like the first line, got {len(row)} (truncated?)")
        frame = parse_int(row[0], where, "frame", minimum=1)
        track = parse_int(row[1], where, "id")
        if track < 0:
            raise where.error("id -1: this is a detection file (det.txt), not ground truth", "id")
        if track in last and frame <= last[track]:
            raise where.error(f"frame index {frame} out of order for track {track} (after frame {last[track]})", "frame")
        last[track] = frame
        _, _, w, h = (parse_float(v, where, n) for v, n in zip(row[2:6], ("bb_left", "bb_top", "bb_width", "bb_height")))
        if w < 0 or h < 0:
            raise where.error(f"negative box size {w} x {h}", "bb_width")
        parse_float(row[6], where, "conf")
        if width == 9:
            cls = parse_int(row[7], where, "class")
            if not 1 <= cls <= len(CLASSES):
                raise where.error(f"unknown class id {cls}; MOT class ids are 1..{len(CLASSES)}", "class")
            vis = parse_float(row[8], where, "visibility")
            if not 0 <= vis <= 1:
                raise where.error(f"visibility {vis} is outside [0, 1]", "visibility")
        else:
            cls = 1  # MOT15 annotates pedestrians only
        boxes.append(Box(video, frame - 1, CLASSES[cls - 1], w * h, where))
    return boxes


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    boxes: list[Box] = []
    taken: set[str] = set()
    rates: set[float] = set()
    for p in paths:
        name, rate = read_seqinfo(p)
        if rate is None and options.source_fps is None:
            raise FormatError("frame rate unknown: no seqinfo.ini next to gt/; pass --source-fps", path=p)
        rates.add(options.source_fps or rate)
        video = name or (p.resolve().parent.parent.name if p.parent.name == "gt" else p.stem)
        boxes.extend(parse_file(p, unique_video_name(video, taken, Where(p))))
    if len(rates) > 1:
        raise FormatError(f"sequences have different frame rates {sorted(rates)}; import them separately or "
                          "pass --source-fps")
    source_fps = rates.pop()
    boxes = filter_videos(boxes, options.videos, "boxes")
    meta = TraceMeta(
        source=options.source or f"MOTChallenge gt ({', '.join(sorted(taken))})",
        license=options.license or LICENSE,
        attribution=options.attribution or ATTRIBUTION,
        fps=options.fps or source_fps,
        class_names=CLASSES,
        primary_rule=RULE_LARGEST_BOX,
        provenance={"tool": "engram trace import", "format": "mot", "source_fps": source_fps,
                    "fps": options.fps or source_fps, "inputs": sorted(taken)},
    )
    return boxes_to_trace(boxes, meta, make_policy(options, CLASSES), source_fps, options.fps)
