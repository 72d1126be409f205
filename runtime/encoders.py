"""Semantic encoders on the runtime's side: numpy only (no torch), same arithmetic as the recorder's.

At an exit point the feature map is global-average-pooled, centred, projected to ``d`` dimensions and
L2-normalised (``kernels.reference.encoders.SemanticEncoder.encode_pooled``, whose float32 operations this
repeats one for one). The file is the project's encoders file (``kernels.reference.store.encoders_bytes`` writes
it, ``load_encoders`` reads it with a torch model at hand); :func:`read_encoders` reads the same format against a
fingerprint, for a subset of exit points, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


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
    from kernels.reference.tensorfile import check_fitted_for, encoder_tensors, read_engram_file

    meta, arrays = read_engram_file(path, "numpy", ENCODER_FORMAT, ENCODER_VERSION)
    if fingerprint is not None:
        check_fitted_for(meta, fingerprint, path, "encoders")
    out = {e: ExitEncoder(e, *t) for e, t in encoder_tensors(meta, arrays, path, exits, num_classes).items()}
    return out, meta
