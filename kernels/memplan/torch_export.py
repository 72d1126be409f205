"""Read a torch model (the zoo's BlockwiseModels, or any nn.Module of supported ops) through ``torch.export``.

The exported ATen graph is turned into the graph form one node at a time. What an accelerator runs as
one layer becomes one operator: a batch norm folds into the convolution (or linear layer) before it, and
an activation joins the operator that produced its input, when nothing else reads the intermediate value.
Reshapes, ``flatten``, ``dropout`` (inference) and copies are views of the same data and vanish. The
weights come back next to the graph, in the executor's layout, so the planned arena can be run and
compared with the model's own ``forward``.
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from engram.errors import EngramError
from kernels.memplan.graph import Graph, GraphBuilder, Op, Source

Weights = dict[str, dict[str, np.ndarray]]

_ACT_OPS = {
    "aten.relu.default": "relu", "aten.relu_.default": "relu",
    "aten.hardswish.default": "hswish", "aten.hardswish_.default": "hswish",
    "aten.hardsigmoid.default": "hsigmoid", "aten.hardsigmoid_.default": "hsigmoid",
    "aten.sigmoid.default": "sigmoid", "aten.sigmoid_.default": "sigmoid",
    "aten.silu.default": "silu", "aten.silu_.default": "silu",
    "aten.tanh.default": "tanh", "aten.tanh_.default": "tanh",
    "aten.mish.default": "mish", "aten.mish_.default": "mish",
    "aten.relu6.default": "relu6",
}
_VIEW_OPS = ("aten.flatten.using_ints", "aten.view.default", "aten.reshape.default", "aten.dropout.default",
             "aten.clone.default", "aten.contiguous.default", "aten.alias.default", "aten.detach.default",
             "aten._unsafe_view.default", "aten.feature_dropout.default")
_BN_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default")


def graph_from_module(module: nn.Module, input_shape: tuple[int, int, int], name: str,
                      elem_bytes: int = 4) -> tuple[Graph, Weights]:
    """Export ``module`` (in eval mode) on a batch-1 input of ``input_shape`` = (C, H, W)."""
    module = module.eval()
    x = torch.zeros(1, *input_shape)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation noise
            ep = torch.export.export(module, (x,))
    except Exception as exc:  # torch raises many types for untraceable models; all are the model's fault
        raise EngramError(f"torch.export could not trace {name!r} at input {input_shape}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return _convert(ep, input_shape, name, elem_bytes)


def graph_from_blockwise(model, input_size: tuple[int, int] | None = None,  # noqa: ANN001
                         elem_bytes: int = 4) -> tuple[Graph, Weights]:
    """The graph of a :class:`kernels.blockwise.BlockwiseModel` at its own input size or ``(H, W)``."""
    c, h, w = model.input_shape
    if input_size is not None:
        h, w = input_size
    return graph_from_module(model, (c, h, w), model.name, elem_bytes)


class _Reader:
    def __init__(self, ep: Any, name: str, elem_bytes: int) -> None:
        self.ep = ep
        sig = ep.graph_signature
        state = ep.state_dict
        consts = getattr(ep, "constants", {}) or {}
        self.const: dict[str, np.ndarray] = {}
        for ph, target in list(sig.inputs_to_parameters.items()) + list(sig.inputs_to_buffers.items()):
            t = state[target] if target in state else consts[target]
            self.const[ph] = t.detach().cpu().numpy().astype(np.float64)
        self.b = GraphBuilder(name, origin=f"zoo:{name}", elem_bytes=elem_bytes)
        self.weights: Weights = {}
        self.tensor: dict[str, str] = {}  # fx node name -> our tensor
        self.ops: dict[str, int] = {}  # our tensor -> index in builder ops (for fusion)

    def src(self, node) -> Source:  # noqa: ANN001
        stack = node.meta.get("nn_module_stack") or {}
        where = list(stack.values())[-1][0] if stack else ""
        return Source(self.b.origin, None, f"{node.name}" + (f" ({where})" if where else ""))

    def arr(self, node) -> np.ndarray | None:  # noqa: ANN001
        if node is None:
            return None
        if node.name not in self.const:
            raise self.src(node).error("expected a parameter or buffer here")
        return self.const[node.name]

    def t(self, node) -> str:  # noqa: ANN001
        if not hasattr(node, "name") or node.name not in self.tensor:
            raise EngramError(f"zoo:{self.b.name}: unsupported input {node!r} to a layer")
        return self.tensor[node.name]

    def add(self, node, op: Op, weights: dict[str, np.ndarray] | None = None) -> None:  # noqa: ANN001
        out = self.b.add(op)
        self.tensor[node.name] = out
        self.ops[out] = len(self.b.ops) - 1
        if weights is not None:
            self.weights[op.name] = weights

    def fusable(self, node) -> str | None:  # noqa: ANN001
        """The tensor this node's input maps to, when that value is read by this node alone."""
        inp = node.args[0]
        tname = self.tensor.get(getattr(inp, "name", None))
        if tname is None or tname not in self.ops or len(inp.users) != 1:
            return None
        return tname

    def replace(self, tname: str, **changes) -> Op:  # noqa: ANN003
        i = self.ops[tname]
        old = self.b.ops[i]
        new = Op(**{**old.__dict__, **changes})
        self.b.ops[i] = new
        return new


def _pair(v, default):  # noqa: ANN001
    if v is None:
        return default
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    return (int(v[0]), int(v[-1])) if v else default


def _convert(ep: Any, input_shape: tuple[int, int, int], name: str, elem_bytes: int) -> tuple[Graph, Weights]:
    r = _Reader(ep, name, elem_bytes)
    user_inputs = set(ep.graph_signature.user_inputs)
    outputs: list[str] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in user_inputs:
                r.tensor[node.name] = r.b.add_input(node.name, input_shape, Source(f"zoo:{name}", None, node.name))
            continue
        if node.op == "output":
            for o in node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]:
                outputs.append(r.t(o))
            continue
        if node.op != "call_function":
            raise r.src(node).error(f"unsupported graph node kind {node.op!r}")
        target = str(node.target)
        a = node.args
        src = r.src(node)
        if target == "aten.conv2d.default":
            w = r.arr(a[1])
            bias = r.arr(a[2]) if len(a) > 2 else None
            stride = _pair(a[3] if len(a) > 3 else None, (1, 1))
            padding = a[4] if len(a) > 4 else (0, 0)
            dil = _pair(a[5] if len(a) > 5 else None, (1, 1))
            groups = int(a[6]) if len(a) > 6 else 1
            if isinstance(padding, str):
                raise src.error(f"string padding {padding!r} is not supported")
            ph, pw = _pair(padding, (0, 0))
            cout, _, kh, kw = w.shape
            op = Op(node.name, "conv", (r.t(a[0]),), node.name, out_channels=cout, kernel=(kh, kw), stride=stride,
                    pad=(ph, pw, ph, pw), dilation=dil, groups=groups, source=src)
            r.add(node, op, {"weight": w, "bias": bias if bias is not None else np.zeros(cout)})
        elif target in _BN_OPS:
            gamma, beta, mean, var = (r.arr(x) for x in a[1:5])
            eps = float(a[7] if target == _BN_OPS[0] else a[6])
            scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + eps)
            shift = (beta if beta is not None else 0.0) - mean * scale
            tname = r.fusable(node)
            prod = r.b.ops[r.ops[tname]] if tname else None
            if prod is not None and prod.kind in ("conv", "fc") and not prod.acts:
                wts = r.weights[prod.name]
                shape = (-1,) + (1,) * (wts["weight"].ndim - 1)
                r.weights[prod.name] = {"weight": wts["weight"] * scale.reshape(shape),
                                        "bias": wts["bias"] * scale + shift}
                r.tensor[node.name] = tname
            else:
                r.add(node, Op(node.name, "affine", (r.t(a[0]),), node.name, source=src),
                      {"scale": scale, "bias": shift})
        elif node.target is operator.getitem:
            if a[1] != 0 or str(getattr(a[0], "target", "")) not in _BN_OPS:
                raise src.error("unsupported tuple access")
            r.tensor[node.name] = r.t(a[0])
        elif target in _ACT_OPS or target in ("aten.hardtanh.default", "aten.hardtanh_.default",
                                              "aten.leaky_relu.default", "aten.leaky_relu_.default"):
            if target.startswith("aten.hardtanh"):
                lo, hi = (float(a[1]) if len(a) > 1 else -1.0), (float(a[2]) if len(a) > 2 else 1.0)
                if (lo, hi) != (0.0, 6.0):
                    raise src.error(f"hardtanh({lo}, {hi}) is not supported (only relu6)")
                act = "relu6"
            elif target.startswith("aten.leaky_relu"):
                act = f"leaky:{float(a[1]) if len(a) > 1 else 0.01}"
            else:
                act = _ACT_OPS[target]
            tname = r.fusable(node)
            if tname is not None:
                prod = r.b.ops[r.ops[tname]]
                r.replace(tname, acts=prod.acts + (act,))
                r.tensor[node.name] = tname
            else:
                r.add(node, Op(node.name, "act", (r.t(a[0]),), node.name, acts=(act,), source=src))
        elif target in ("aten.add.Tensor", "aten.add_.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.mul_.Tensor"):
            if not all(hasattr(x, "name") for x in a[:2]) or node.kwargs.get("alpha", 1) != 1:
                raise src.error(f"{target} with a scalar operand is not supported")
            kind = "add" if "add" in target else "sub" if "sub" in target else "mul"
            ins = [r.t(a[0]), r.t(a[1])]
            if kind == "mul" and r.b.shapes[ins[0]][1:] == (1, 1) and r.b.shapes[ins[1]][1:] != (1, 1):
                ins.reverse()  # the broadcast per-channel vector goes second
            r.add(node, Op(node.name, kind, tuple(ins), node.name, source=src))
        elif target == "aten.mean.dim" or target == "aten.adaptive_avg_pool2d.default":
            if target == "aten.mean.dim":
                dims = sorted(int(d) % 4 for d in a[1])
                if dims != [2, 3]:
                    raise src.error(f"mean over dims {list(a[1])} is not supported (only global pooling)")
            elif _pair(a[1], (0, 0)) != (1, 1):
                raise src.error("adaptive pooling to a size other than 1x1 is not supported")
            r.add(node, Op(node.name, "gap", (r.t(a[0]),), node.name, source=src))
        elif target in ("aten.max_pool2d.default", "aten.avg_pool2d.default"):
            tin = r.t(a[0])
            _, h, w = r.b.shapes[tin]
            k = _pair(a[1], None)
            s = _pair(a[2] if len(a) > 2 else None, k) if (len(a) > 2 and list(a[2])) else k
            p = _pair(a[3] if len(a) > 3 else None, (0, 0))
            is_max = "max" in target
            if is_max:
                if _pair(a[4] if len(a) > 4 else None, (1, 1)) != (1, 1):
                    raise src.error("dilated max pooling is not supported")
                ceil = bool(a[5]) if len(a) > 5 else False
            else:
                ceil = bool(a[4]) if len(a) > 4 else False
                if len(a) > 6 and a[6] is not None:
                    raise src.error("avg_pool2d divisor_override is not supported")
            eb = _ceil_extra(h, k[0], s[0], p[0]) if ceil else 0
            ew = _ceil_extra(w, k[1], s[1], p[1]) if ceil else 0
            attrs = {} if is_max else {"count_pad": bool(a[5]) if len(a) > 5 else True}
            if not is_max and ceil and (eb or ew):
                raise src.error("avg_pool2d with ceil_mode extending past the input is not supported")
            r.add(node, Op(node.name, "maxpool" if is_max else "avgpool", (tin,), node.name, kernel=k, stride=s,
                           pad=(p[0], p[1], p[0] + eb, p[1] + ew), attrs=attrs, source=src))
        elif target == "aten.linear.default":
            w = r.arr(a[1])
            bias = r.arr(a[2]) if len(a) > 2 else None
            r.add(node, Op(node.name, "fc", (r.t(a[0]),), node.name, out_channels=w.shape[0], source=src),
                  {"weight": w, "bias": bias if bias is not None else np.zeros(w.shape[0])})
        elif target == "aten.cat.default":
            if (int(a[1]) if len(a) > 1 else 0) % 4 != 1:
                raise src.error("only channel concatenation is supported")
            r.add(node, Op(node.name, "concat", tuple(r.t(x) for x in a[0]), node.name, source=src))
        elif target in ("aten.upsample_nearest2d.default", "aten.upsample_nearest2d.vec"):
            tin = r.t(a[0])
            _, h, w = r.b.shapes[tin]
            size = a[1] if len(a) > 1 else None
            if size:
                fy, fx = int(size[0]) // h, int(size[1]) // w
                ok = fy * h == int(size[0]) and fx * w == int(size[1])
            else:
                scales = a[2] if len(a) > 2 else None
                fy, fx = (int(scales[0]), int(scales[1])) if scales else (0, 0)
                ok = bool(scales) and fy == scales[0] and fx == scales[1]
            if not ok or fy < 1 or fx < 1:
                raise src.error("only nearest upsampling by whole factors is supported")
            r.add(node, Op(node.name, "upsample", (tin,), node.name, attrs={"scale": (fy, fx)}, source=src))
        elif target in _VIEW_OPS:
            tin = r.t(a[0])
            val = node.meta.get("val")
            if val is not None and target in ("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"):
                shape = tuple(val.shape)
                c, h, w = r.b.shapes[tin]
                if shape not in ((1, c * h * w), (1, c, h, w), (1, c * h * w, 1, 1)):
                    raise src.error(f"reshape to {list(shape)} is not a plain flatten; not supported")
            r.tensor[node.name] = tin
        else:
            raise src.error(f"unsupported torch operation {target}")
    graph = r.b.build(outputs=outputs)
    weights = {k: {n: np.asarray(v, np.float32) for n, v in d.items()} for k, d in r.weights.items()}
    return graph, weights


def _ceil_extra(size: int, k: int, s: int, p: int) -> int:
    """Extra bottom/right padding that reproduces torch's ceil_mode output size."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if (out - 1) * s >= size + p:  # torch drops a last window that would start in the padding
        out -= 1
    return max(0, (out - 1) * s + k - (size + 2 * p))
