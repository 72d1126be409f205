"""Scalabel JSON box tracks, the format of BDD100K MOT (``box_track_20/*.json``).

A file is a list of frames (or a Scalabel dataset object with a ``frames`` list)::

    [{"name": "...jpg", "videoName": "b1c66a42-6f7d68ca", "frameIndex": 0,
      "labels": [{"id": "...", "category": "car", "box2d": {"x1": 0, "y1": 346.5, "x2": 75.4, "y2": 407.4}}, ...]},
     ...]

``frameIndex`` counts annotated frames from 0; BDD100K MOT annotates at 5 fps (``--source-fps`` for other
data). Classes are the categories found in the input, sorted by name (BDD100K: pedestrian, rider, car,
truck, bus, train, motorcycle, bicycle, plus 'other person', 'other vehicle', 'trailer' in some files).
Within a video, frames must appear in increasing ``frameIndex`` order. The primary object is the one with
the largest box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engram.errors import FormatError
from traces.format import LabelTrace
from traces.importers.boxjson import import_box_files, label_box
from traces.importers.common import (
    Box, ImportOptions, Where, read_json,
)

SOURCE_FPS = 5.0
LICENSE = "BDD100K license (https://doc.bdd100k.com/license.html) for BDD100K data; check your dataset's own terms"
ATTRIBUTION = ("BDD100K: F. Yu et al., 'BDD100K: A Diverse Driving Dataset for Heterogeneous Multitask Learning', "
               "CVPR 2020; Scalabel format (https://github.com/scalabel/scalabel). Changed: boxes reduced to the "
               "classes in view per frame.")


def parse_file(path: Path) -> list[Box]:
    data = read_json(path)
    if isinstance(data, dict) and "frames" in data:
        data, base = data["frames"], "frames"
    else:
        base = ""
    if not isinstance(data, list):
        raise FormatError("expected a list of frames (Scalabel JSON)", path=path)
    if not data:
        raise FormatError("no frames in the file", path=path)
    boxes: list[Box] = []
    last: dict[str, int] = {}
    for i, fr in enumerate(data):
        ptr = f"{base}[{i}]"
        where = Where(path, None, ptr)
        if not isinstance(fr, dict):
            raise where.error(f"expected a frame object, got {type(fr).__name__}")
        video = fr.get("videoName")
        if not isinstance(video, str) or not video:
            raise where.error("missing videoName (a Scalabel file of single images is not a video trace)", "videoName")
        idx = fr.get("frameIndex")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise where.error(f"frameIndex must be an integer >= 0, got {idx!r}", "frameIndex")
        if video in last and idx <= last[video]:
            raise where.error(f"frame index {idx} out of order in video {video!r} (after {last[video]})", "frameIndex")
        last[video] = idx
        labels = fr.get("labels") or []
        if not isinstance(labels, list):
            raise where.error("labels must be a list", "labels")
        boxes.extend(label_box(lab, path, f"{ptr}.labels[{j}]", video, idx) for j, lab in enumerate(labels))
    return boxes


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    return import_box_files(paths, options, parse_file, format_name="scalabel", describe="Scalabel box tracks", source_fps=SOURCE_FPS,
                            license=LICENSE, attribution=ATTRIBUTION)
