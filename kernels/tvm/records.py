"""Tuning records shipped with the project, per model and target.

Layout: ``kernels/tuning/<model>/<target name>/`` holds MetaSchedule's ``database_workload.json`` and
``database_tuning_record.json`` (pruned to the best schedule per workload) and ``tuning.json`` (what was
tuned, input shape, trials, time spent, TVM version). A fresh clone, the tests and CI compile with these
records and never tune.

The records are loaded into an in-memory database (the shipped files are never written to). When this
machine's CPU is not the one the records were tuned on (another ``mcpu``, or another architecture such as
a phone's aarch64), the schedules are still valid programs (MetaSchedule's CPU schedules are
target-independent TIR transformations): they are re-targeted to this CPU with a warning (possibly slower
than a fresh tuning there, never wrong). GPU targets never take CPU records. When no records fit at all,
compilation falls back to TVM's untuned default schedules, again with a warning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TUNING_ROOT = Path(__file__).resolve().parent.parent / "tuning"
META_FILE = "tuning.json"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


class TuningRecordsWarning(UserWarning):
    """The shipped tuning records do not fit this machine exactly (another CPU, or none at all)."""


@dataclass
class RecordsInfo:
    """Which records a compilation used, for the profile and for the user."""

    directory: str | None
    tuned_for: str | None  # target name the records were tuned on
    retargeted: bool  # tuned on another CPU of the same architecture
    meta: dict[str, Any] = field(default_factory=dict)
    records: int = 0

    def to_json(self) -> dict:
        return {"directory": self.directory, "tuned_for": self.tuned_for, "retargeted": self.retargeted,
                "records": self.records, "trials": self.meta.get("trials"), "tuning_seconds": self.meta.get("tuning_seconds")}


def model_key(model_name: str, input_shape: tuple[int, ...]) -> str:
    """Folder name for a model at an input size: ``reference`` at its own 64x64, ``mobilenetv2-224``..."""
    return f"{model_name}-{input_shape[-2]}x{input_shape[-1]}"


def records_dir(model_key_: str, target_name: str, root: Path | None = None) -> Path:
    return (root or TUNING_ROOT) / model_key_ / target_name


def _arch(target_name: str) -> str:
    # "llvm-x86_64-znver4" -> "x86_64"; "aarch64-cortex-a76" -> "aarch64"; "opencl-adreno" -> "opencl"
    parts = target_name.split("-")
    return parts[1] if target_name.startswith("llvm-") and len(parts) > 1 else parts[0]


def _is_cpu(target_name: str) -> bool:
    return _arch(target_name) not in ("opencl", "cuda", "vulkan", "metal", "rocm")


def available(model_key_: str, root: Path | None = None) -> list[str]:
    d = (root or TUNING_ROOT) / model_key_
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / RECORD_FILE).is_file() and (p / WORKLOAD_FILE).is_file())


def load_database(model_key_: str, target, target_name: str, root: Path | None = None, *, warn: bool = True):  # noqa: ANN001
    """An in-memory MetaSchedule database with the shipped records for this model and target.

    Returns ``(database or None, RecordsInfo)``.
    """
    from tvm.s_tir import meta_schedule as ms

    names = available(model_key_, root)
    chosen = target_name if target_name in names else None
    retargeted = False
    if chosen is None and _is_cpu(target_name):
        # CPU schedules are target-independent TIR: records of another CPU (same architecture first) still
        # give valid and usually far better code than the untuned defaults.
        cpus = sorted((n for n in names if _is_cpu(n)), key=lambda n: _arch(n) != _arch(target_name))
        if cpus:
            chosen, retargeted = cpus[0], True
    if chosen is None:
        if warn:
            warnings.warn(f"no tuning records for {model_key_} on {target_name} (have: {', '.join(names) or 'none'}); "
                          "compiling with TVM's untuned default schedules, which are much slower", TuningRecordsWarning, stacklevel=2)
        return None, RecordsInfo(None, None, False)
    d = records_dir(model_key_, chosen, root)
    meta: dict[str, Any] = {}
    if (d / META_FILE).is_file():
        meta = json.loads((d / META_FILE).read_text())
    src = ms.database.JSONDatabase(str(d / WORKLOAD_FILE), str(d / RECORD_FILE), allow_missing=False)
    db = ms.database.MemoryDatabase()
    n = 0
    for rec in src.get_all_tuning_records():
        if not rec.run_secs:
            continue
        wl = db.commit_workload(rec.workload.mod)
        db.commit_tuning_record(ms.database.TuningRecord(rec.trace, wl, rec.run_secs, target, rec.args_info))
        n += 1
    if retargeted and warn:
        warnings.warn(f"tuning records for {model_key_} were made on {chosen}, this CPU is {target_name}: using them "
                      "re-targeted (valid, but possibly slower than tuning here)", TuningRecordsWarning, stacklevel=2)
    return db, RecordsInfo(str(d), chosen, retargeted, meta, n)
