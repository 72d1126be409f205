"""The independent result a planned execution is compared with: the graph run on whole tensors with torch.

Shares nothing with the row-by-row executor but the graph and the weights, so a mistake in either
implementation (or in a plan) shows as a mismatch. For zoo models the model's own ``forward`` is used instead.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kernels.memplan.graph import Graph, Op, parse_act


def _act(x: torch.Tensor, act: str) -> torch.Tensor:
    name, param = parse_act(act)
    return {
        "linear": lambda: x,
        "relu": lambda: F.relu(x),
        "relu6": lambda: F.relu6(x),
        "leaky": lambda: F.leaky_relu(x, 0.1 if param is None else param),
        "hswish": lambda: F.hardswish(x),
        "hsigmoid": lambda: F.hardsigmoid(x),
        "sigmoid": lambda: torch.sigmoid(x),
        "tanh": lambda: torch.tanh(x),
        "silu": lambda: F.silu(x),
        "mish": lambda: F.mish(x),
    }[name]()


def _op(op: Op, xs: list[torch.Tensor], w: dict[str, np.ndarray], out_shape: tuple[int, int, int]) -> torch.Tensor:
    k = op.kind
    pt, pl, pb, pr = op.pad
    x = xs[0]
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    if k == "conv":
        y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), t(w["weight"]), t(w["bias"]), op.stride, 0, op.dilation, op.groups)
    elif k == "deconv":
        full = F.conv_transpose2d(x, t(w["weight"]), None, op.stride, 0, 0, op.groups, op.dilation)
        _, h, wd = out_shape
        full = F.pad(full, (0, max(0, pl + wd - full.shape[3]), 0, max(0, pt + h - full.shape[2])))
        y = full[:, :, pt: pt + h, pl: pl + wd] + t(w["bias"]).view(1, -1, 1, 1)
    elif k == "maxpool":
        y = F.max_pool2d(F.pad(x, (pl, pr, pt, pb), value=float("-inf")), op.kernel, op.stride)
    elif k == "avgpool":
        padded = F.pad(x, (pl, pr, pt, pb))
        if op.attrs.get("count_pad", True):
            y = F.avg_pool2d(padded, op.kernel, op.stride)
        else:
            ones = F.pad(torch.ones_like(x[:, :1]), (pl, pr, pt, pb))
            y = F.avg_pool2d(padded, op.kernel, op.stride) / F.avg_pool2d(ones, op.kernel, op.stride)
    elif k == "upsample":
        fy, fx = op.attrs["scale"]
        y = x.repeat_interleave(fy, dim=2).repeat_interleave(fx, dim=3)
    elif k == "add":
        y = xs[0]
        for o in xs[1:]:
            y = y + o
    elif k == "sub":
        y = xs[0] - xs[1]
    elif k == "mul":
        y = xs[0]
        for o in xs[1:]:
            y = y * o
    elif k == "max":
        y = xs[0]
        for o in xs[1:]:
            y = torch.maximum(y, o)
    elif k == "act":
        y = x
    elif k == "affine":
        y = x * t(w["scale"]).view(1, -1, 1, 1) + t(w["bias"]).view(1, -1, 1, 1)
    elif k == "concat":
        y = torch.cat(xs, dim=1)
    elif k == "slice":
        (oc, oh, ow), (zc, zh, zw) = op.attrs["offset"], op.attrs["size"]
        y = x[:, oc: oc + zc, oh: oh + zh, ow: ow + zw]
    elif k == "softmax":
        y = torch.softmax(x, dim=1)
    elif k in ("yolo", "region"):
        n, classes, coords = op.attrs["anchors"], op.attrs["classes"], op.attrs.get("coords", 4)
        b, c, h, wd = x.shape
        r = x.view(b, n, classes + coords + 1, h, wd)
        parts = [torch.sigmoid(r[:, :, 0:2]), r[:, :, 2:coords], torch.sigmoid(r[:, :, coords: coords + 1])]
        cls = r[:, :, coords + 1:]
        parts.append(torch.sigmoid(cls) if k == "yolo" else torch.softmax(cls, dim=2))
        y = torch.cat(parts, dim=2).view(b, c, h, wd)
    elif k == "gap":
        y = x.mean(dim=(2, 3), keepdim=True)
    elif k == "gmp":
        y = x.amax(dim=(2, 3), keepdim=True)
    elif k == "fc":
        y = F.linear(x.flatten(1), t(w["weight"]), t(w["bias"])).view(1, -1, 1, 1)
    else:  # pragma: no cover
        raise ValueError(k)
    for a in op.acts:
        y = _act(y, a)
    return y


@torch.no_grad()
def run_reference(graph: Graph, weights: dict[str, dict[str, np.ndarray]],
                  inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    env = {name: torch.from_numpy(np.asarray(a, np.float32)).unsqueeze(0) for name, a in inputs.items()}
    for op in graph.ops:
        env[op.output] = _op(op, [env[t] for t in op.inputs], weights.get(op.name, {}), graph.shapes[op.output])
    return {t: env[t][0].numpy() for t in graph.outputs}
