"""Random weights and inputs for graphs that come without weights (Darknet .cfg, ncnn .param, DnCNN).

Memory planning needs no weights, but the execution check needs numbers. He-style scaling keeps
activations of the same order through deep stacks, so a corrupted row is not hidden by overflow or decay.
"""

from __future__ import annotations

import numpy as np

from kernels.memplan.graph import Graph


def random_weights(graph: Graph, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for op in graph.ops:
        c_in = graph.shapes[op.inputs[0]][0]
        kh, kw = op.kernel
        if op.kind == "conv":
            fan_in = c_in // op.groups * kh * kw
            w = rng.standard_normal((op.out_channels, c_in // op.groups, kh, kw)) * np.sqrt(2.0 / fan_in)
        elif op.kind == "deconv":
            fan_in = c_in // op.groups * kh * kw
            w = rng.standard_normal((c_in, op.out_channels // op.groups, kh, kw)) * np.sqrt(2.0 / fan_in)
        elif op.kind == "fc":
            c, h, wd = graph.shapes[op.inputs[0]]
            w = rng.standard_normal((op.out_channels, c * h * wd)) * np.sqrt(2.0 / (c * h * wd))
        elif op.kind == "affine":
            out[op.name] = {"scale": (1 + 0.1 * rng.standard_normal(c_in)).astype(np.float32),
                            "bias": (0.1 * rng.standard_normal(c_in)).astype(np.float32)}
            continue
        else:
            continue
        n_out = op.out_channels
        out[op.name] = {"weight": w.astype(np.float32), "bias": (0.05 * rng.standard_normal(n_out)).astype(np.float32)}
    return out


def random_inputs(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t: rng.random(graph.shapes[t], dtype=np.float32) for t in graph.inputs}
