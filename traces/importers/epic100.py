"""EPIC-KITCHENS-100 action segments (``EPIC_100_train.csv`` / ``EPIC_100_validation.csv`` layout).

Classes are the 300 noun classes of ``EPIC_100_noun_classes_v2.csv`` (pass it among the inputs, or the
copy shipped in ``traces/data/epic_kitchens_100_val`` is used); class id = noun class id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from traces.format import LabelTrace
from traces.importers.common import ImportOptions
from traces.importers.epic import Layout, import_epic

DATA = Path(__file__).resolve().parents[1] / "data" / "epic_kitchens_100_val"

LAYOUT = Layout(
    name="epic100",
    dataset="EPIC-KITCHENS-100",
    id_column="narration_id",
    noun_id="id",
    noun_key="key",
    default_nouns=DATA / "EPIC_100_noun_classes_v2.csv",
    attribution=("EPIC-KITCHENS-100 annotations, (c) University of Bristol / University of Catania: D. Damen, "
                 "H. Doughty, G. M. Farinella, A. Furnari, E. Kazakos, J. Ma, D. Moltisanti, J. Munro, T. Perrett, "
                 "W. Price, M. Wray, 'Rescaling Egocentric Vision', IJCV 2022; "
                 "https://github.com/epic-kitchens/epic-kitchens-100-annotations. Changed: segments sampled to frames."),
    other="epic55",
)


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    return import_epic(paths, options, LAYOUT)
