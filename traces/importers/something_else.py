"""Something-Else box annotations (``annotations.json`` of https://github.com/joaanna/something_else).

A dict from Something-Something v2 video id to its annotated frames::

    {"151201": [{"name": "151201/0001.jpg", "labels": [{"category": "bottle", "box2d": {...},
                 "gt_annotation": "object 0", "standard_category": "0000"}, ...]}, ...], ...}

The frame number is the one in the image name (1-based, renumbered from 0). Something-Something v2 videos
run at 12 fps. Categories are free-form object names; classes are the categories found, sorted by name.
``hand`` is the actor's hand in nearly every frame rather than an object being looked at, so it is
ignored by default (``--keep-all-classes`` keeps it). The primary object is the one with the largest box.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from engram.errors import FormatError
from traces.format import LabelTrace
from traces.importers.boxjson import import_box_files, label_box
from traces.importers.common import (
    Box, ImportOptions, Where, read_json,
)

SOURCE_FPS = 12.0
DEFAULT_IGNORE = ("hand",)
FRAME_NUMBER = re.compile(r"(\d+)\.[A-Za-z0-9]+$")
LICENSE = ("Something-Else annotations: MIT (https://github.com/joaanna/something_else); the underlying "
           "Something-Something v2 videos and labels have their own terms")
ATTRIBUTION = ("Something-Else: J. Materzynska, T. Xiao, R. Herzig, H. Xu, X. Wang, T. Darrell, 'Something-Else: "
               "Compositional Action Recognition with Spatial-Temporal Interaction Networks', CVPR 2020. Changed: "
               "boxes reduced to the classes in view per frame.")


def parse_file(path: Path) -> list[Box]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise FormatError("expected an object mapping video ids to frame lists (Something-Else JSON)", path=path)
    if not data:
        raise FormatError("no videos in the file", path=path)
    boxes: list[Box] = []
    for video, frames in data.items():
        ptr = f"[{video!r}]"
        if not isinstance(frames, list):
            raise Where(path, None, ptr).error("expected a list of frames")
        last = 0
        for i, fr in enumerate(frames):
            fptr = f"{ptr}[{i}]"
            where = Where(path, None, fptr)
            if not isinstance(fr, dict):
                raise where.error(f"expected a frame object, got {type(fr).__name__}")
            name = fr.get("name")
            m = FRAME_NUMBER.search(name) if isinstance(name, str) else None
            if m is None:
                raise where.error(f"frame name {name!r} does not end in a frame number like 0001.jpg", "name")
            number = int(m.group(1))
            if number < 1:
                raise where.error(f"frame numbers start at 1, got {number}", "name")
            if number <= last:
                raise where.error(f"frame index {number} out of order (after {last})", "name")
            last = number
            labels = fr.get("labels") or []
            if not isinstance(labels, list):
                raise where.error("labels must be a list", "labels")
            boxes.extend(label_box(lab, path, f"{fptr}.labels[{j}]", str(video), number - 1)
                         for j, lab in enumerate(labels))
    return boxes


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    return import_box_files(paths, options, parse_file, format_name="something-else", describe="Something-Else boxes", source_fps=SOURCE_FPS,
                            license=LICENSE, attribution=ATTRIBUTION, default_ignore=DEFAULT_IGNORE)
