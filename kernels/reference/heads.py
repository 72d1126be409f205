"""BranchyNet-style exit heads: one cheap linear classifier per exit point, on the pooled features.

They are the baseline the semantic cache is compared against: at an exit point, a head answers with its
top-1 class, and the frame stops there if the softmax entropy is low enough. The backbone stays frozen (the
shipped model is the same for every policy); each head is a multinomial logistic regression fitted on the
calibration images' pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ExitHead:
    exit: str
    weight: np.ndarray  # (K, C) float32
    bias: np.ndarray  # (K,) float32

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        return pooled.astype(np.float32) @ self.weight.T + self.bias

    def predict(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 class and softmax entropy (nats) per row."""
        return predict_from_logits(self.logits(pooled))


def predict_from_logits(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
    return logits.argmax(axis=1), entropy.astype(np.float32)


def fit_head(exit: str, pooled: np.ndarray, labels: np.ndarray, num_classes: int, weight_decay: float = 1e-3,
             iterations: int = 200) -> ExitHead:
    """Full-batch L-BFGS on standardised features (deterministic for given inputs)."""
    x = torch.from_numpy(pooled.astype(np.float64))
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mu) / sd
    y = torch.from_numpy(labels.astype(np.int64))
    w = torch.zeros((num_classes, x.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w.T + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # Fold the standardisation into the weights so the head is one affine map on raw pooled features.
    with torch.no_grad():
        weight = w / sd
        bias = b - (weight * mu).sum(1)
    return ExitHead(exit, weight.numpy().astype(np.float32), bias.numpy().astype(np.float32))


def fit_heads(pooled: dict[str, np.ndarray], labels: np.ndarray, num_classes: int) -> dict[str, ExitHead]:
    return {e: fit_head(e, f, labels, num_classes) for e, f in pooled.items()}
