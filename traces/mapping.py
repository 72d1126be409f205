"""Which model class stands in for each class of a label trace when a video is rendered for it.

A label trace speaks of "plate" and "pan"; the reference CNN knows "red-stripes-star". The recorder needs a
declared, reproducible mapping between the two. Two ways:

- ``frequency-rank``: the trace's most frequent primary class gets the first model class of a seeded
  permutation, the second most frequent the second, and so on. The permutation keeps the long tail of the
  trace from landing on a run of look-alike model classes (neighbouring ids share shape and colour).
- a mapping file: JSON ``{"trace class (name or id)": "model class (name or id)", ...}``.

Either way every class that is some frame's primary label must be mapped; others may map to -1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engram.errors import EngramError, FormatError
from traces.format import LabelTrace


@dataclass(frozen=True)
class ClassMapping:
    rule: str  # "frequency-rank" or "file:<name>"
    mapping: np.ndarray  # (trace classes,) int64, model class id or -1
    seed: int | None = None

    def describe(self) -> dict:
        d: dict = {"rule": self.rule}
        if self.seed is not None:
            d["seed"] = self.seed
        return d


def _check_primaries_mapped(trace: LabelTrace, mapping: np.ndarray, source: str, model_classes: list[str]) -> None:
    used = np.unique(trace.label)
    missing = used[mapping[used] < 0]
    if len(missing):
        names = ", ".join(f"{trace.meta.class_names[c]!r}" for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise EngramError(f"{source} leaves {len(missing)} class(es) of the trace unmapped: {names}{more}")


def frequency_rank_mapping(trace: LabelTrace, model_classes: list[str], seed: int = 0) -> ClassMapping:
    k = trace.num_classes
    counts = np.bincount(trace.label, minlength=k)
    used = int(np.count_nonzero(counts))
    if used > len(model_classes):
        raise EngramError(
            f"the trace has {used} classes as primary labels but the model only {len(model_classes)}: "
            "map them with --mapping FILE (several trace classes may share a model class)"
        )
    # Most frequent first; ties by class id, so the order is fully determined by the trace.
    order = np.lexsort((np.arange(k), -counts))
    perm = np.random.default_rng([int(seed), 0x3A9]).permutation(len(model_classes))
    mapping = np.full(k, -1, dtype=np.int64)
    for rank, c in enumerate(order[:used]):
        mapping[c] = perm[rank]
    return ClassMapping("frequency-rank", mapping, seed)


def _resolve(key: str, names: list[str], what: str, path: Path) -> int:
    if key in names:
        return names.index(key)
    try:
        i = int(key)
    except ValueError:
        raise FormatError(f"unknown {what} class {key!r}", path=path, field=key) from None
    if not 0 <= i < len(names):
        raise FormatError(f"{what} class id {i} out of range [0, {len(names)})", path=path, field=key)
    return i


def file_mapping(path: Path, trace: LabelTrace, model_classes: list[str]) -> ClassMapping:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError("file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise FormatError(f"not valid JSON ({getattr(exc, 'msg', exc)})", path=path, line=line) from None
    if not isinstance(raw, dict) or not raw:
        raise FormatError("expected a non-empty JSON object {trace class: model class}", path=path)
    mapping = np.full(trace.num_classes, -1, dtype=np.int64)
    trace_names = list(trace.meta.class_names)
    for key, value in raw.items():
        t = _resolve(str(key), trace_names, "trace", path)
        m = _resolve(str(value), model_classes, "model", path)
        mapping[t] = m
    out = ClassMapping(f"file:{path.name}", mapping)
    _check_primaries_mapped(trace, mapping, str(path), model_classes)
    return out
