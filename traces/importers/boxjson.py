"""Helpers for the JSON box formats (Scalabel/BDD100K, Something-Else), which share the label layout
``{"category": str, "box2d": {"x1", "y1", "x2", "y2"}}``.

JSON files are often one long line, so locations are given as JSON paths (``[12].labels[3].category``)
rather than line numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from traces.format import LabelTrace, TraceMeta
from traces.importers.common import (
    RULE_LARGEST_BOX, Box, ImportOptions, Where, boxes_to_trace, describe_sources, filter_videos, make_policy,
)


def label_box(obj: Any, path: Path, pointer: str, video: str, frame: int) -> Box:
    where = Where(path, None, pointer)
    if not isinstance(obj, dict):
        raise where.error(f"expected a label object, got {type(obj).__name__}")
    cat = obj.get("category")
    if not isinstance(cat, str) or not cat.strip():
        raise where.error(f"missing or empty category (got {cat!r})", "category")
    box = obj.get("box2d")
    area = 0.0  # a label without a 2D box (a polygon, a tag) is in view but never wins the largest-box rule
    if box is not None:
        if not isinstance(box, dict):
            raise where.error("box2d must be an object with x1, y1, x2, y2", "box2d")
        try:
            x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
        except KeyError as exc:
            raise where.error(f"box2d lacks {exc.args[0]}", "box2d") from None
        except (TypeError, ValueError):
            raise where.error("box2d coordinates must be numbers", "box2d") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise where.error("box2d coordinates must be finite", "box2d")
        if x2 < x1 or y2 < y1:
            raise where.error(f"box2d has negative size (x1 {x1}, x2 {x2}, y1 {y1}, y2 {y2})", "box2d")
        area = (x2 - x1) * (y2 - y1)
    return Box(video, frame, cat.strip(), area, where)


def import_box_files(
    paths: Sequence[Path],
    options: ImportOptions,
    parse_file: Callable[[Path], list[Box]],
    *,
    format_name: str,
    describe: str,
    source_fps: float,
    license: str,
    attribution: str,
    default_ignore: Sequence[str] = (),
) -> LabelTrace:
    """Parse each file, refuse a video split across files, and build the largest-box label trace."""
    boxes: list[Box] = []
    seen: dict[str, Path] = {}
    for p in paths:
        file_boxes = parse_file(p)
        for v in dict.fromkeys(b.video for b in file_boxes):
            if v in seen:
                raise Where(p).error(f"video {v!r} also appears in {seen[v]}; import them separately")
            seen[v] = p
        boxes.extend(file_boxes)
    boxes = filter_videos(boxes, options.videos, "boxes")
    fps_in = options.source_fps or source_fps
    meta = TraceMeta(
        source=options.source or f"{describe} ({describe_sources(list(paths))})",
        license=options.license or license,
        attribution=options.attribution or attribution,
        fps=options.fps or fps_in,
        class_names=("placeholder",),
        primary_rule=RULE_LARGEST_BOX,
        provenance={"tool": "engram trace import", "format": format_name, "source_fps": fps_in,
                    "fps": options.fps or fps_in, "inputs": [p.name for p in paths]},
    )
    return boxes_to_trace(boxes, meta, make_policy(options, None, default_ignore), fps_in, options.fps)
