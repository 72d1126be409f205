"""EPIC-KITCHENS-55 action segments (``EPIC_train_action_labels.csv`` layout: ``uid`` first, noun table
``EPIC_noun_classes.csv`` with ``noun_id,class_key,nouns``).

Classes are the 352 EPIC-55 noun classes (pass the table among the inputs, or the copy shipped in
``traces/data/epic_kitchens_55`` is used); class id = noun class id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from traces.format import LabelTrace
from traces.importers.common import ImportOptions
from traces.importers.epic import Layout, import_epic

DATA = Path(__file__).resolve().parents[1] / "data" / "epic_kitchens_55"

LAYOUT = Layout(
    name="epic55",
    dataset="EPIC-KITCHENS-55",
    id_column="uid",
    noun_id="noun_id",
    noun_key="class_key",
    default_nouns=DATA / "EPIC_noun_classes.csv",
    attribution=("EPIC-KITCHENS-55 annotations, (c) University of Bristol / University of Toronto / University of "
                 "Catania: D. Damen et al., 'Scaling Egocentric Vision: The EPIC-KITCHENS Dataset', ECCV 2018; "
                 "https://github.com/epic-kitchens/epic-kitchens-55-annotations. Changed: segments sampled to frames."),
    other="epic100",
)


def import_files(paths: Sequence[Path], options: ImportOptions) -> LabelTrace:
    return import_epic(paths, options, LAYOUT)
