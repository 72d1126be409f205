"""KITTI tracking ground truth (``training/label_02/NNNN.txt``, one file per sequence).

One object per line, space-separated, 17 values (18 with a trailing score in result files)::

    frame track_id type truncated occluded alpha left top right bottom h w l x y z rotation_y [score]

``frame`` is 0-based; the video is named after the file (``0000``). Types are KITTI's: Car, Van, Truck,
Pedestrian, Person_sitting (written ``Person`` in some tracking files; both map to Person_sitting),
Cyclist, Tram, Misc, DontCare. DontCare marks image regions, not objects, and is ignored by default.
Sequences were recorded at 10 fps. The primary object is the one with the largest 2D box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from traces.format import LabelTrace, TraceMeta
from traces.importers.common import (
    RULE_LARGEST_BOX, Box, ImportOptions, Where, boxes_to_trace, describe_sources, filter_videos, iter_whitespace,
    make_policy, parse_float, parse_int, read_text, unique_video_name,
)

CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
ALIASES = {"Person": "Person_sitting"}
DEFAULT_IGNORE = ("DontCare",)
SOURCE_FPS = 10.0
LICENSE = "CC BY-NC-SA 3.0 (https://creativecommons.org/licenses/by-nc-sa/3.0/)"
ATTRIBUTION = ("KITTI Vision Benchmark Suite, tracking benchmark: A. Geiger, P. Lenz, R. Urtasun, 'Are we ready for "
               "Autonomous Driving? The KITTI Vision Benchmark Suite', CVPR 2012; http://www.cvlibs.net/datasets/kitti. "
               "Changed: boxes reduced to the classes in view per frame.")


def parse_file(path: Path, video: str) -> list[Box]:
    boxes: list[Box] = []
    last_frame = -1
    for line, fields in iter_whitespace(read_text(path)):
        where = Where(path, line)
        if len(fields) not in (17, 18):
            raise where.error(f"expected 17 values (18 with a score), got {len(fields)} (truncated or not a "
                              "KITTI tracking label file?)")
        frame = parse_int(fields[0], where, "frame", minimum=0)
        if frame < last_frame:
            raise where.error(f"frame index {frame} out of order (after frame {last_frame})", "frame")
        last_frame = frame
        parse_int(fields[1], where, "track_id", minimum=-1)
        kind = ALIASES.get(fields[2], fields[2])
        if kind not in CLASSES:
            raise where.error(f"unknown class {fields[2]!r}; KITTI types are {', '.join(CLASSES)}", "type")
        nums = [parse_float(v, where, name) for v, name in zip(fields[3:], (
            "truncated", "occluded", "alpha", "left", "top", "right", "bottom", "height", "width", "length",
            "x", "y", "z", "rotation_y", "score"))]
        left, top, right, bottom = nums[3:7]
        if right < left or bottom < top:
            raise where.error(f"box has negative size (left {left}, top {top}, right {right}, bottom {bottom})", "bbox")
        boxes.append(Box(video, frame, kind, (right - left) * (bottom - top), where))
    return boxes


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    boxes: list[Box] = []
    taken: set[str] = set()
    for p in paths:
        boxes.extend(parse_file(p, unique_video_name(p.stem, taken, Where(p))))
    boxes = filter_videos(boxes, options.videos, "boxes")
    source_fps = options.source_fps or SOURCE_FPS
    meta = TraceMeta(
        source=options.source or f"KITTI tracking label_02 ({describe_sources(list(paths))})",
        license=options.license or LICENSE,
        attribution=options.attribution or ATTRIBUTION,
        fps=options.fps or source_fps,
        class_names=CLASSES,
        primary_rule=RULE_LARGEST_BOX,
        provenance={"tool": "engram trace import", "format": "kitti", "source_fps": source_fps,
                    "fps": options.fps or source_fps, "inputs": [p.name for p in paths]},
    )
    return boxes_to_trace(boxes, meta, make_policy(options, CLASSES, DEFAULT_IGNORE), source_fps, options.fps)
