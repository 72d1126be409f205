"""The cheap input descriptor of a frame (FoggyCache-style): what the recorders store as ``input_desc`` and what
the runtime's input level computes on every frame. numpy only, so that the runtime can use it on a device."""

from __future__ import annotations

import numpy as np

DIMS = 48  # 4 x 4 thumbnail x 3 channels (traces.format.INPUT_DESC_DIMS)


def describe_input(images: np.ndarray) -> np.ndarray:
    """``(N, 3, H, W)`` -> ``(N, 48)``: each frame averaged to a 4x4 RGB thumbnail, centred, L2-normalised (zero
    if flat)."""
    n, c, h, w = images.shape
    thumb = images[:, :, : h // 4 * 4, : w // 4 * 4].reshape(n, c, 4, h // 4, 4, w // 4).mean(axis=(3, 5)).reshape(n, -1)
    thumb = thumb - thumb.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(thumb, axis=1, keepdims=True)
    out = np.where(norm > 1e-6, thumb / np.maximum(norm, 1e-12), 0.0)
    if out.shape[1] != DIMS:
        raise ValueError(f"frames of {c} channels give a {out.shape[1]}-value descriptor, not {DIMS}")
    return out.astype(np.float32)
