"""Reading the project's safetensors files (weights, semantic encoders, exit heads) without torch.

Each file carries an ``engram`` metadata entry (JSON: ``format``, ``version``, and for encoders and heads the
``model_fingerprint`` they were fitted for). The reference CNN's loader (:mod:`kernels.reference.store`, with
torch) and the runtime (:mod:`runtime.encoders`, numpy only) both read through here, so a file is judged the
same way on both sides, naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engram.errors import FormatError, MismatchError

VERSION = 1


def read_engram_file(path: str | Path, framework: str, expected_format: str,
                     version: int = VERSION) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metadata, tensors)`` of an Engram safetensors file of ``expected_format`` (``framework``: ``"numpy"``
    or ``"pt"``, as safetensors names them)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FormatError("file not found", path=path)
    try:
        with safe_open(str(path), framework) as f:
            raw = (f.metadata() or {}).get("engram")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"not a readable safetensors file ({exc})", path=path) from None
    if raw is None:
        raise FormatError("no 'engram' metadata: not an Engram file", path=path, field="metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"metadata is not JSON ({exc.msg})", path=path, field="metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise FormatError(f"expected format {expected_format!r}, found {found!r}", path=path, field="format")
    if meta.get("version") != version:
        raise FormatError(f"unsupported version {meta.get('version')!r} (this Engram reads {version})", path=path,
                          field="version")
    return meta, tensors


def check_fitted_for(meta: Mapping[str, Any], fingerprint: Mapping[str, str], path: str | Path, what: str) -> None:
    """Refuse a file (``what``: e.g. "encoders") fitted for another model than ``fingerprint``."""
    got = meta.get("model_fingerprint") or {}
    for k in ("architecture", "weights"):
        if got.get(k) != fingerprint.get(k):
            raise MismatchError(f"{what} were fitted for another model ({k} {str(got.get(k))[:12]}..., expected "
                                f"{str(fingerprint.get(k))[:12]}...)", path=path, field=f"model_fingerprint.{k}")


def encoder_tensors(meta: Mapping[str, Any], tensors: Mapping[str, Any], path: str | Path,
                    exits: Sequence[str] | None = None,
                    num_classes: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per exit point (``exits``, default: all the file holds) its ``(mean, components, centres)``, checked:
    present, float32, shapes consistent (and ``num_classes`` centres when given)."""
    available = list(meta.get("exits", []))
    wanted = list(available if exits is None else exits)
    missing = [e for e in wanted if e not in available]
    if missing:
        raise MismatchError(f"no encoder for exit point {missing[0]!r} (the file has {', '.join(available) or 'none'})",
                            path=path, field="exits")
    out = {}
    for e in wanted:
        try:
            mean, comp, centres = tensors[f"{e}.mean"], tensors[f"{e}.components"], tensors[f"{e}.centres"]
        except KeyError as exc:
            raise FormatError(f"missing tensor {exc.args[0]}", path=path, field=e) from None
        if any(a.dtype != np.float32 for a in (mean, comp, centres)):
            raise FormatError("tensors must be float32", path=path, field=e)
        if comp.ndim != 2 or mean.shape != (comp.shape[1],) or centres.ndim != 2 or centres.shape[1] != comp.shape[0] \
                or (num_classes is not None and centres.shape[0] != num_classes):
            raise FormatError("inconsistent tensor shapes", path=path, field=e)
        out[e] = (mean, comp, centres)
    return out
