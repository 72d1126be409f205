"""Proof by execution: run a network row by row inside one flat arena at the planned addresses.

The arena is one float32 array of the plan's size. Every layer computes its output one row at a time, in
the plan's row order, reading its input rows from the arena and writing the finished row back, exactly as
the row model in :mod:`kernels.memplan.overlap` describes. Two lanes run side by side:

* values: the real numbers. Before a row is computed, the bytes its output row will occupy are filled with
  NaN, since the row model lets an accelerator write any part of that row while it still reads the row's
  input window. A plan that overlaps a live input row therefore feeds NaN or foreign numbers into
  the computation, and the final outputs no longer match the torch/reference result.
* tags: which tensor owns each element. Every read checks that the rows it takes still belong to the
  tensor it expects, so a plan that overwrites live data is caught at the first bad read with a precise
  message, even where the numbers alone could hide it (a max-pool that ignores a smaller foreign value).

A plan is verified only when no read saw a foreign tag and every network output matches the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernels.memplan.blas import single_threaded_blas
from kernels.memplan.graph import Graph, Op, parse_act
from kernels.memplan.overlap import DESC, input_rows
from kernels.memplan.plan import Placement, Plan

POISON = -1
UNWRITTEN = -2


# -- activations and row kernels ------------------------------------------------------------------


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def apply_act(x: np.ndarray, act: str) -> np.ndarray:
    name, param = parse_act(act)
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "relu6":
        return _relu6(x)
    if name == "leaky":
        return np.where(x > 0, x, x * np.float32(0.1 if param is None else param))
    if name == "hswish":
        return x * _relu6(x + 3) / 6
    if name == "hsigmoid":
        return _relu6(x + 3) / 6
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "silu":
        return x * _sigmoid(x)
    if name == "mish":
        return x * np.tanh(np.logaddexp(0, x))
    raise ValueError(f"unknown activation {act!r}")  # graph.infer_shape rejects these earlier


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _columns(win: np.ndarray, op: Op, w_out: int, fill: float) -> np.ndarray:
    """(rows, W, C) window -> (rows, kw, W_out, C): the input columns under each kernel column."""
    pl, pr = op.pad[1], op.pad[3]
    if pl or pr:
        padded = np.full((win.shape[0], pl + win.shape[1] + pr, win.shape[2]), fill, dtype=win.dtype)
        padded[:, pl:pl + win.shape[1]] = win
        win = padded
    sw, dw = op.stride[1], op.dilation[1]
    span = (w_out - 1) * sw + 1
    return np.stack([win[:, kx * dw: kx * dw + span: sw] for kx in range(op.kernel[1])], axis=1)


@dataclass
class _Prepared:
    mat: np.ndarray | None = None
    bias: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _prepare(op: Op, w: dict[str, np.ndarray], graph: Graph) -> _Prepared:
    if op.kind == "conv":
        weight = w["weight"].astype(np.float32)  # (Cout, Cin/G, kh, kw)
        g = op.groups
        cout, cig, kh, kw = weight.shape
        if g == 1:
            mat = weight.transpose(2, 3, 1, 0).reshape(kh * kw * cig, cout)
        else:
            mat = weight.reshape(g, cout // g, cig, kh, kw)
        return _Prepared(mat, w["bias"].astype(np.float32))
    if op.kind == "deconv":
        weight = w["weight"].astype(np.float32)  # (Cin, Cout/G, kh, kw)
        g = op.groups
        cin, cog, kh, kw = weight.shape
        return _Prepared(weight.reshape(g, cin // g, cog, kh, kw), w["bias"].astype(np.float32))
    if op.kind == "fc":
        return _Prepared(w["weight"].astype(np.float32).T, w["bias"].astype(np.float32))
    if op.kind == "affine":
        return _Prepared(w["scale"].astype(np.float32), w["bias"].astype(np.float32))
    return _Prepared()


def compute_row(op: Op, y: int, windows: list[np.ndarray], prep: _Prepared,
                out_shape: tuple[int, int, int]) -> np.ndarray:
    """Output row ``y`` of ``op`` as a (W_out, C_out) array from each input's row window."""
    k = op.kind
    c_out, _, w_out = out_shape
    if k == "conv":
        win = windows[0][:: op.dilation[0]]
        cols = _columns(win, op, w_out, 0.0)  # (kh, kw, W_out, Cin)
        kh, kw = op.kernel
        if op.groups == 1:
            out = cols.transpose(2, 0, 1, 3).reshape(w_out, -1) @ prep.mat
        else:
            g = op.groups
            cols = cols.reshape(kh, kw, w_out, g, -1)
            out = np.einsum("abwgi,goiab->wgo", cols, prep.mat, optimize=True).reshape(w_out, c_out)
        out = out + prep.bias
    elif k in ("maxpool", "avgpool"):
        win = windows[0]
        if k == "maxpool":
            out = _columns(win, op, w_out, -np.inf).max(axis=(0, 1))
        else:
            # Padding rows arrive as -inf (the executor's fill for pooling): they add nothing and, unless
            # the padding counts, are left out of the divisor. NaN (a poisoned row) must stay NaN.
            cols = _columns(np.nan_to_num(win, nan=np.nan, neginf=0.0), op, w_out, 0.0)
            total = cols.sum(axis=(0, 1))
            if op.attrs.get("count_pad", True):
                out = total / np.float32(op.kernel[0] * op.kernel[1])
            else:
                valid = np.isfinite(win[:, :1, :1]).astype(np.float32) * np.ones((1, win.shape[1], 1), np.float32)
                cnt = _columns(valid, op, w_out, 0.0).sum(axis=(0, 1))
                out = total / cnt
    elif k == "deconv":
        out = _deconv_row(op, y, windows[0], prep, w_out)
    elif k == "upsample":
        out = np.repeat(windows[0][0], op.attrs["scale"][1], axis=0)
    elif k in ("add", "sub", "mul", "max"):
        rows = [w[0] for w in windows]
        out = rows[0]
        for r in rows[1:]:
            if k == "add":
                out = out + r
            elif k == "sub":
                out = out - r
            elif k == "mul":
                out = out * r
            else:
                out = np.maximum(out, r)
    elif k == "act":
        out = windows[0][0]
    elif k == "affine":
        out = windows[0][0] * prep.mat + prep.bias
    elif k == "concat":
        out = np.concatenate([w[0] for w in windows], axis=-1)
    elif k == "slice":
        oc, _, ow = op.attrs["offset"]
        zc, _, zw = op.attrs["size"]
        out = windows[0][0][ow: ow + zw, oc: oc + zc]
    elif k == "softmax":
        out = _softmax(windows[0][0], axis=-1)
    elif k in ("yolo", "region"):
        out = _detector_row(op, windows[0][0])
    elif k == "gap":
        out = windows[0].mean(axis=(0, 1))[None, :]
    elif k == "gmp":
        out = windows[0].max(axis=(0, 1))[None, :]
    elif k == "fc":
        flat = windows[0].transpose(2, 0, 1).reshape(1, -1)  # torch flattens C, H, W
        out = flat @ prep.mat + prep.bias
    else:  # pragma: no cover - graph.infer_shape rejects unknown kinds
        raise ValueError(k)
    for a in op.acts:
        out = apply_act(out, a)
    return np.asarray(out, dtype=np.float32)


def _deconv_row(op: Op, y: int, win: np.ndarray, prep: _Prepared, w_out: int) -> np.ndarray:
    s, p, d = op.stride[0], op.pad[0], op.dilation[0]
    sw, pl, dw = op.stride[1], op.pad[1], op.dilation[1]
    g, cig, cog, kh, kw = prep.mat.shape
    first = -((-(y + p - (kh - 1) * d)) // s)  # as overlap.input_rows
    w_in = win.shape[1]
    full = np.zeros((pl + w_out + (kw - 1) * dw + (w_in - 1) * sw + 1, g * cog), np.float32)
    span = (w_in - 1) * sw + 1
    for r in range(win.shape[0]):
        i = first + r
        num = y + p - i * s
        if num % d or not 0 <= num // d < kh:
            continue  # this input row does not touch output row y
        ky = num // d
        row = win[r].reshape(w_in, g, cig)
        for kx in range(kw):
            contrib = np.einsum("wgi,gio->wgo", row, prep.mat[:, :, :, ky, kx]).reshape(w_in, g * cog)
            full[kx * dw: kx * dw + span: sw] += contrib
    return full[pl: pl + w_out] + prep.bias


def _detector_row(op: Op, row: np.ndarray) -> np.ndarray:
    n, classes = op.attrs["anchors"], op.attrs["classes"]
    coords = op.attrs.get("coords", 4)
    per = classes + coords + 1
    r = row.reshape(row.shape[0], n, per)
    out = r.copy()
    out[..., 0:2] = _sigmoid(r[..., 0:2])
    out[..., coords] = _sigmoid(r[..., coords])
    if op.kind == "yolo":  # Darknet's yolo layer: logistic on x, y, objectness and every class
        out[..., coords + 1:] = _sigmoid(r[..., coords + 1:])
    else:  # region layer: logistic on x, y, objectness; softmax over the classes of each anchor
        out[..., coords + 1:] = _softmax(r[..., coords + 1:], axis=-1)
    return out.reshape(row.shape)


# -- the arena ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionResult:
    outputs: dict[str, np.ndarray]  # (C, H, W)
    violations: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.violations


class _Tensor:
    def __init__(self, name: str, tid: int, shape: tuple[int, int, int], p: Placement, elem: int,
                 arena_elems: int) -> None:
        c, h, w = shape
        if p.offset % elem or p.region_start % elem or p.region_size % elem:
            raise ValueError(f"tensor {name!r} is not aligned to {elem}-byte elements")
        self.name, self.tid, self.shape = name, tid, shape
        self.row = w * c
        self.start = p.offset // elem
        self.wrap = (p.region_start // elem, p.region_size // elem) if p.wraps else None
        end = self.start + h * self.row if self.wrap is None else self.wrap[0] + self.wrap[1]
        if self.start < 0 or end > arena_elems:
            raise ValueError(f"tensor {name!r} at [{p.offset}, {end * elem}) lies outside the "
                             f"{arena_elems * elem}-byte arena")

    def index(self, r0: int, r1: int):
        a, b = self.start + r0 * self.row, self.start + r1 * self.row
        if self.wrap is None:
            return slice(a, b)
        base, size = self.wrap
        if b - a > size:
            raise ValueError(f"tensor {self.name!r} is larger than its circular region")
        idx = np.arange(a - base, b - base) % size + base
        return idx


def execute_plan(graph: Graph, plan: Plan, weights: dict[str, dict[str, np.ndarray]],
                 inputs: dict[str, np.ndarray], stop_at_first: bool = False) -> ExecutionResult:
    """Run ``graph`` inside a flat arena laid out by ``plan``; inputs and outputs are (C, H, W) arrays."""
    with single_threaded_blas():
        return _execute(graph, plan, weights, inputs, stop_at_first)


def _execute(graph: Graph, plan: Plan, weights: dict[str, dict[str, np.ndarray]],
             inputs: dict[str, np.ndarray], stop_at_first: bool) -> ExecutionResult:
    elem = graph.elem_bytes
    if elem != 4:
        raise ValueError("execution runs in float32; plan the graph with 4-byte elements to execute it")
    if plan.arena_bytes % elem:
        raise ValueError("arena size is not a whole number of elements")
    n_elems = plan.arena_bytes // elem
    values = np.full(n_elems, np.nan, dtype=np.float32)
    tags = np.full(n_elems, UNWRITTEN, dtype=np.int32)
    names = graph.tensors()
    tensors = {t: _Tensor(t, i, graph.shapes[t], plan.placements[t], elem, n_elems) for i, t in enumerate(names)}
    violations: list[str] = []

    def read(t: _Tensor, r0: int, r1: int, who: str, y: int) -> np.ndarray:
        idx = t.index(r0, r1)
        got = tags[idx]
        if not violations or not stop_at_first:
            bad = got != t.tid
            if bad.any():
                first_bad = int(np.argmax(bad))
                owner = int(got[first_bad])
                by = ("the output row being written" if owner == POISON else
                      "nothing (never written)" if owner == UNWRITTEN else f"tensor {names[owner]!r}")
                violations.append(f"layer {who!r} output row {y}: input {t.name!r} row {r0 + first_bad // t.row} "
                                  f"was overwritten by {by}")
        return values[idx].reshape(r1 - r0, t.shape[2], t.shape[0])

    for name, arr in inputs.items():
        t = tensors[name]
        c, h, w = t.shape
        idx = t.index(0, h)
        values[idx] = np.ascontiguousarray(np.asarray(arr, np.float32).reshape(c, h, w).transpose(1, 2, 0)).reshape(-1)
        tags[idx] = t.tid

    for op in graph.ops:
        out = tensors[op.output]
        c_out, h_out, w_out = out.shape
        prep = _prepare(op, weights.get(op.name, {}), graph)
        ins = [tensors[t] for t in op.inputs]
        rows = [input_rows(op, j, t.shape, out.shape) for j, t in enumerate(ins)]
        p_out = plan.placements[op.output]
        # In-place element-wise: the output row replaces the same input row element by element.
        in_place = op.is_elementwise and any(
            t.shape == out.shape and plan.placements[t.name] == p_out for t in ins)
        fill = -np.inf if op.kind in ("maxpool", "avgpool") else 0.0
        order = range(h_out - 1, -1, -1) if plan.row_order(op.name) == DESC else range(h_out)
        for y in order:
            oidx = out.index(y, y + 1)
            if not in_place:
                values[oidx] = np.nan
                tags[oidx] = POISON
            windows = []
            for t, (first, last) in zip(ins, rows):
                f, l_ = int(first[y]), int(last[y])
                h_in = t.shape[1]
                win = np.full((l_ - f + 1, t.shape[2], t.shape[0]), fill, dtype=np.float32)
                r0, r1 = max(f, 0), min(l_, h_in - 1)
                if r0 <= r1:
                    win[r0 - f: r1 - f + 1] = read(t, r0, r1 + 1, op.name, y)
                windows.append(win)
            row = compute_row(op, y, windows, prep, out.shape)
            values[oidx] = row.reshape(-1)
            tags[oidx] = out.tid
        if violations and stop_at_first:
            break

    outputs = {}
    for name in graph.outputs:
        t = tensors[name]
        c, h, w = t.shape
        outputs[name] = read(t, 0, h, "<network output>", h - 1).transpose(2, 0, 1).copy()
    return ExecutionResult(outputs, tuple(violations))


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], rtol: float = 1e-3) -> tuple[bool, float]:
    """Whether every output matches its reference to ``rtol`` of the reference's scale; the worst error."""
    worst = 0.0
    ok = True
    for name, ref in reference.items():
        got = outputs[name].reshape(-1).astype(np.float64)
        ref = np.asarray(ref, np.float64).reshape(-1)
        if got.shape != ref.shape or not np.all(np.isfinite(got)):
            return False, float("inf")
        scale = max(float(np.abs(ref).max()), 1e-6)
        err = float(np.abs(got - ref).max()) / scale
        worst = max(worst, err)
        ok = ok and err <= rtol
    return ok, worst
