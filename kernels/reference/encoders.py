"""Semantic encoders: what the semantic cache compares at each exit point.

At an exit point the feature map is global-average-pooled, centred, projected to ``d`` dimensions with a
PCA fitted on calibration images, and L2-normalised, so that a dot product is a cosine similarity. The
encoders also carry each class's centre (the normalised mean of its calibration vectors), which is what a
perfectly warmed cache would hold and what the nearest-centre accuracy is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kernels.blockwise import BlockwiseModel


@dataclass
class SemanticEncoder:
    exit: str
    mean: np.ndarray  # (C,) float32, mean pooled feature
    components: np.ndarray  # (d, C) float32, PCA directions
    centres: np.ndarray  # (K, d) float32, L2-normalised class centres

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def encode_pooled(self, pooled: np.ndarray) -> np.ndarray:
        z = (pooled.astype(np.float32) - self.mean) @ self.components.T
        return _normalise(z)

    def encode(self, feature_map: torch.Tensor) -> np.ndarray:
        return self.encode_pooled(feature_map.mean((2, 3)).detach().cpu().numpy())

    def nearest_centre(self, vectors: np.ndarray) -> np.ndarray:
        return np.argmax(vectors @ self.centres.T, axis=1)


def _normalise(z: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(n, 1e-12)).astype(np.float32)


@torch.no_grad()
def pooled_exit_features(model: BlockwiseModel, images: torch.Tensor, batch: int = 250) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and the pooled (N, C) features at every exit point."""
    logits, pooled = [], {e: [] for e in model.exit_points}
    for i in range(0, len(images), batch):
        out, exits = model.forward_exits(images[i : i + batch])
        logits.append(out.numpy())
        for e, f in exits.items():
            pooled[e].append(f.mean((2, 3)).numpy())
    return np.concatenate(logits), {e: np.concatenate(v) for e, v in pooled.items()}


def fit_encoder(exit: str, pooled: np.ndarray, labels: np.ndarray, dims: int, num_classes: int) -> SemanticEncoder:
    """PCA on pooled features (float64 SVD, sign-fixed so a refit gives identical vectors)."""
    x = pooled.astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    d = min(dims, vt.shape[0])
    comp = vt[:d]
    signs = np.sign(comp[np.arange(d), np.argmax(np.abs(comp), axis=1)])
    comp = comp * signs[:, None]
    enc = SemanticEncoder(exit, mean.astype(np.float32), comp.astype(np.float32), np.zeros((num_classes, d), np.float32))
    vec = enc.encode_pooled(pooled)
    centres = np.zeros((num_classes, d), np.float64)
    np.add.at(centres, labels, vec)
    enc.centres = _normalise(centres)
    return enc


def fit_encoders(model: BlockwiseModel, images: torch.Tensor, labels: np.ndarray, dims: int) -> dict[str, SemanticEncoder]:
    _, pooled = pooled_exit_features(model, images)
    return {e: fit_encoder(e, pooled[e], labels, dims, model.num_classes) for e in model.exit_points}
