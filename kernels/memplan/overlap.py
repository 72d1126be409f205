"""Per-layer minimum overlap of an input and its output under row-by-row processing (Jokic et al., ESL 2021).

Data layout
    Every activation is stored contiguously, row-major as H x W x C (one image, batch 1): row y of a
    tensor is the ``W*C*elem`` bytes at ``start + y*R``. A whole row is the unit of reading and writing.

Processing order
    A layer produces its output one row at a time, in ascending row order (the paper's order) or, as an
    option the planner may choose per layer, in descending order. While output row y is being produced,
    every input row that row y or any later row still needs is live, and the output row itself may be
    written at any moment (an accelerator interleaves reads and writes within a row in tiles or channel
    blocks), so its bytes must not reach any of those input rows. With ascending order this gives the
    brief's formula generalised to any row dependence::

        D >= max over y of ((y+1) * R_out - lo(y) * R_in),   lo(y) = first input row needed by rows >= y

    where the output region starts D bytes before the input region; the pair then occupies
    ``max(D + H_in*R_in, H_out*R_out)`` bytes. Descending order is the mirror image (the output ends D'
    bytes after the input's end). Whole-input layers (fully connected, global pooling) need every input
    row for their single output row, so the formula gives no overlap by itself.

    One more exception, the one aliasing TFLite also does: an element-wise layer whose output has exactly
    the input's shape may run in place (same start address): each element is read before the same bytes
    are written, so no margin is needed.

Which rows each output row reads (``input_rows``): kernel k, stride s, dilation d, top padding p:
rows ``y*s-p .. y*s-p+(k-1)*d`` for convolution and pooling; ``y // f`` for nearest upsampling by f;
``ceil((y+p-(k-1)d)/s) .. floor((y+p)/s)`` for a transposed convolution; ``y + offset`` for a crop;
``y`` for element-wise, concat and per-pixel layers (row 0 for a broadcast per-channel vector); all rows
for whole-input layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.memplan.graph import Graph, Op, Shape

ASC = "asc"
DESC = "desc"


def input_rows(op: Op, j: int, in_shape: Shape, out_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """First and last input row (inclusive, before clamping to the tensor) read by each output row."""
    h_in = in_shape[1]
    y = np.arange(out_shape[1], dtype=np.int64)
    k = op.kind
    if op.is_whole_input:
        return np.zeros_like(y), np.full_like(y, h_in - 1)
    if k in ("conv", "maxpool", "avgpool"):
        first = y * op.stride[0] - op.pad[0]
        return first, first + (op.kernel[0] - 1) * op.dilation[0]
    if k == "deconv":
        s, p, kh, d = op.stride[0], op.pad[0], op.kernel[0], op.dilation[0]
        return -((-(y + p - (kh - 1) * d)) // s), (y + p) // s
    if k == "upsample":
        r = y // op.attrs["scale"][0]
        return r, r
    if k == "slice":
        r = y + op.attrs["offset"][1]
        return r, r
    if in_shape[1] == 1 and out_shape[1] > 1:  # broadcast per-channel vector
        return np.zeros_like(y), np.zeros_like(y)
    return y, y


def needed_rows(op: Op, j: int, in_shape: Shape, out_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Clamped (lo, hi) per output row: lo(y) = first input row still needed by rows >= y (ascending),
    hi(y) = last input row still needed by rows <= y (descending). lo = H_in / hi = -1 when nothing is."""
    h_in = in_shape[1]
    first, last = input_rows(op, j, in_shape, out_shape)
    valid = (last >= 0) & (first <= h_in - 1)
    f = np.where(valid, np.clip(first, 0, h_in - 1), h_in)
    l_ = np.where(valid, np.clip(last, 0, h_in - 1), -1)
    lo = np.minimum.accumulate(f[::-1])[::-1]
    hi = np.maximum.accumulate(l_)
    return lo, hi


@dataclass(frozen=True)
class PairGeometry:
    """How output ``v`` of one layer may overlap its input ``u`` (all in bytes)."""

    d_asc: int  # output start must be at least this far before the input start (ascending rows)
    d_desc: int  # output end must be at least this far after the input end (descending rows)
    alias: bool  # exact in-place allowed (element-wise, same shape)


def pair_geometry(graph: Graph, op: Op, j: int) -> PairGeometry:
    u, v = op.inputs[j], op.output
    su, sv = graph.shapes[u], graph.shapes[v]
    ru, rv = graph.row_bytes(u), graph.row_bytes(v)
    h_in, h_out = su[1], sv[1]
    lo, hi = needed_rows(op, j, su, sv)
    y = np.arange(h_out, dtype=np.int64)
    d_asc = int(np.max((y + 1) * rv - lo * ru))
    d_desc = int(np.max((h_out - y) * rv - (h_in - 1 - hi) * ru))
    alias = op.is_elementwise and su == sv
    return PairGeometry(d_asc, d_desc, alias)


def pair_footprint(graph: Graph, op: Op, j: int) -> int:
    """Bytes the input/output pair occupies at the minimum overlap (best order), as in the brief's formula."""
    g = pair_geometry(graph, op, j)
    su, sv = graph.nbytes(op.inputs[j]), graph.nbytes(op.output)
    best = min(max(g.d_asc + su, sv), max(g.d_desc + su, sv))
    return min(best, max(su, sv)) if g.alias else best
