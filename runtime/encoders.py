"""Semantic encoders on the runtime's side: numpy only (no torch), same arithmetic as the recorder's.

At an exit point the feature map is global-average-pooled, centred, projected to ``d`` dimensions and
L2-normalised (``kernels.reference.encoders.SemanticEncoder.encode_pooled``, whose float32 operations this
repeats one for one). The file is the project's encoders file (``kernels.reference.store.encoders_bytes`` writes
it, ``load_encoders`` reads it with a torch model at hand); :func:`read_encoders` reads the same format against a
fingerprint, for a subset of exit points, without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engram.errors import FormatError, MismatchError

ENCODER_FORMAT = "engram.semantic-encoders"  # as kernels.reference.store.ENCODER_FORMAT
ENCODER_VERSION = 1


@dataclass(frozen=True)
class ExitEncoder:
    exit: str
    mean: np.ndarray  # (C,) float32
    components: np.ndarray  # (d, C) float32
    centres: np.ndarray  # (classes, d) float32 (class centres; the runtime's cache does not start from them)

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def channels(self) -> int:
        return int(self.components.shape[1])

    def encode_pooled(self, pooled: np.ndarray) -> np.ndarray:
        """(n, C) pooled features -> (n, d) unit vectors (float32)."""
        z = (pooled.astype(np.float32) - self.mean) @ self.components.T
        n = np.linalg.norm(z, axis=1, keepdims=True)
        return (z / np.maximum(n, 1e-12)).astype(np.float32)

    def encode(self, feature_map: np.ndarray) -> np.ndarray:
        """(n, C, H, W) feature map -> (n, d) unit vectors."""
        return self.encode_pooled(feature_map.mean(axis=(2, 3)))


def read_encoders(path: str | Path, fingerprint: Mapping[str, str] | None, exits: Sequence[str] | None = None,
                  num_classes: int | None = None) -> tuple[dict[str, ExitEncoder], dict]:
    """Encoders of ``exits`` (default: all in the file) from an encoders file fitted for ``fingerprint``.

    Refuses a file that is not an encoders file, another version, another model's, one that lacks an exit
    point, or tensors of inconsistent shapes, naming the file and the field.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FormatError("file not found", path=path)
    try:
        with safe_open(str(path), "numpy") as f:
            raw = (f.metadata() or {}).get("engram")
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"not a readable safetensors file ({exc})", path=path) from None
    if raw is None:
        raise FormatError("no 'engram' metadata: not an Engram file", path=path, field="metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"metadata is not JSON ({exc.msg})", path=path, field="metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != ENCODER_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise FormatError(f"expected format {ENCODER_FORMAT!r}, found {found!r}", path=path, field="format")
    if meta.get("version") != ENCODER_VERSION:
        raise FormatError(f"unsupported version {meta.get('version')!r} (this Engram reads {ENCODER_VERSION})",
                          path=path, field="version")
    if fingerprint is not None:
        got = meta.get("model_fingerprint") or {}
        for k in ("architecture", "weights"):
            if got.get(k) != fingerprint.get(k):
                raise MismatchError(f"encoders were fitted for another model ({k} {str(got.get(k))[:12]}..., "
                                    f"expected {str(fingerprint.get(k))[:12]}...)", path=path,
                                    field=f"model_fingerprint.{k}")
    available = list(meta.get("exits", []))
    wanted = list(available if exits is None else exits)
    missing = [e for e in wanted if e not in available]
    if missing:
        raise MismatchError(f"no encoder for exit point {missing[0]!r} (the file has {', '.join(available) or 'none'})",
                            path=path, field="exits")
    out = {}
    for e in wanted:
        try:
            mean, comp, centres = arrays[f"{e}.mean"], arrays[f"{e}.components"], arrays[f"{e}.centres"]
        except KeyError as exc:
            raise FormatError(f"missing tensor {exc.args[0]}", path=path, field=e) from None
        if any(a.dtype != np.float32 for a in (mean, comp, centres)):
            raise FormatError("tensors must be float32", path=path, field=e)
        if comp.ndim != 2 or mean.shape != (comp.shape[1],) or centres.ndim != 2 or centres.shape[1] != comp.shape[0] \
                or (num_classes is not None and centres.shape[0] != num_classes):
            raise FormatError("inconsistent tensor shapes", path=path, field=e)
        out[e] = ExitEncoder(e, mean, comp, centres)
    return out, meta
