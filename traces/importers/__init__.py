"""Importers: real annotation formats -> label traces. One module per format; :func:`import_trace` picks one.

Every importer returns a validated-on-write :class:`traces.format.LabelTrace` and raises
:class:`engram.errors.FormatError` (file, line or JSON path, field) on bad input.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from engram.errors import FormatError
from traces.format import LabelTrace
from traces.importers.common import ImportOptions

# --format value -> (module, kind, one-line description)
FORMATS: dict[str, tuple[str, str, str]] = {
    "epic100": ("traces.importers.epic100", "segments", "EPIC-KITCHENS-100 action CSV (EPIC_100_validation.csv layout)"),
    "epic55": ("traces.importers.epic55", "segments", "EPIC-KITCHENS-55 action CSV (EPIC_train_action_labels.csv layout)"),
    "kitti": ("traces.importers.kitti", "boxes", "KITTI tracking label_02/NNNN.txt"),
    "mot": ("traces.importers.mot", "boxes", "MOTChallenge gt/gt.txt (+ seqinfo.ini)"),
    "scalabel": ("traces.importers.scalabel", "boxes", "Scalabel / BDD100K MOT box-track JSON"),
    "something-else": ("traces.importers.something_else", "boxes", "Something-Else annotations.json"),
    "csv": ("traces.importers.csv_generic", "segments", "any delimited segment or labelled-frame file, with a column mapping"),
}


def import_trace(fmt: str, paths: Sequence[str | Path], options: ImportOptions | None = None, csv_layout=None) -> LabelTrace:
    """Parse annotation files of format ``fmt`` into a label trace."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not paths:
        raise FormatError("no input files")
    options = options or ImportOptions()
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FormatError("file not found", path=p)
    module = importlib.import_module(FORMATS[fmt][0])
    if fmt == "csv":
        if csv_layout is None:
            raise FormatError("the csv format needs a column mapping (--map)")
        return module.import_files(paths, options, csv_layout)
    return module.import_files(paths, options)
