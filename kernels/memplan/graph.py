"""The one graph form every reader produces and every planner, bound and executor consumes.

A graph is a list of operators in execution order. Each operator reads one or more named tensors and
writes exactly one; a tensor is a (C, H, W) activation of one image (batch 1). Views that need no copy
(ncnn ``Split``, a single-layer Darknet ``route``, ``flatten``, ``dropout`` at inference) are resolved by the
readers into plain tensor reuse, so they never appear here. Shapes are not trusted from files: every
operator's output shape is inferred here from its inputs and parameters, and a reader that disagrees
with a file's own shape annotations reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from engram.errors import FormatError

# Operator kinds, grouped by how an output row depends on input rows (see overlap.input_rows).
WINDOW_KINDS = ("conv", "deconv", "maxpool", "avgpool")  # a window of input rows
ELEMENTWISE_KINDS = ("add", "sub", "mul", "max", "act", "affine")  # output element from the same input element
ROW_KINDS = ("concat", "slice", "softmax", "yolo", "region", "upsample")  # one input row per output row
WHOLE_INPUT_KINDS = ("gap", "gmp", "fc")  # output needs every input row first: no overlap possible
KINDS = WINDOW_KINDS + ELEMENTWISE_KINDS + ROW_KINDS + WHOLE_INPUT_KINDS

# Activations an operator may apply to its result before writing it ("name" or "name:parameter").
ACTIVATIONS = ("linear", "relu", "relu6", "leaky", "hswish", "hsigmoid", "sigmoid", "tanh", "silu", "mish")

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Source:
    """Where an operator came from, for error messages: file, line and the layer's own name."""

    path: str | None = None
    line: int | None = None
    layer: str | None = None

    def error(self, message: str, field: str | None = None) -> FormatError:
        where = f"layer {self.layer!r}: " if self.layer else ""
        return FormatError(where + message, path=self.path, line=self.line, field=field)


@dataclass(frozen=True)
class Op:
    """One layer. Geometry fields are (rows, columns); ``pad`` is (top, left, bottom, right)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    out_channels: int = 0  # conv, deconv, fc
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    acts: tuple[str, ...] = ()
    # Kind-specific settings: upsample {"scale"}, slice {"offset", "size"}, yolo/region {"anchors",
    # "classes", "coords"}, avgpool {"count_pad"}, deconv {"out_pad"}.
    attrs: dict[str, Any] = field(default_factory=dict)
    source: Source = Source()

    @property
    def is_elementwise(self) -> bool:
        return self.kind in ELEMENTWISE_KINDS

    @property
    def is_whole_input(self) -> bool:
        return self.kind in WHOLE_INPUT_KINDS


@dataclass(frozen=True)
class Graph:
    name: str
    shapes: dict[str, Shape]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ops: tuple[Op, ...]
    elem_bytes: int = 4
    origin: str = ""  # what it was read from: a file path, "zoo:<name>", "builtin:dncnn"

    def nbytes(self, tensor: str) -> int:
        c, h, w = self.shapes[tensor]
        return c * h * w * self.elem_bytes

    def row_bytes(self, tensor: str) -> int:
        c, _, w = self.shapes[tensor]
        return c * w * self.elem_bytes

    def tensors(self) -> list[str]:
        """Every tensor, in the order it comes into existence (inputs first)."""
        return list(self.inputs) + [op.output for op in self.ops]

    def producer(self) -> dict[str, int]:
        return {op.output: i for i, op in enumerate(self.ops)}

    def consumers(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {t: [] for t in self.tensors()}
        for i, op in enumerate(self.ops):
            for t in dict.fromkeys(op.inputs):
                out[t].append(i)
        return out


# -- shape inference ------------------------------------------------------------------------------


def conv_out(size: int, kernel: int, stride: int, pad_a: int, pad_b: int, dilation: int = 1) -> int:
    return (size + pad_a + pad_b - dilation * (kernel - 1) - 1) // stride + 1


def deconv_out(size: int, kernel: int, stride: int, pad_a: int, pad_b: int, dilation: int = 1, out_pad: int = 0) -> int:
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - pad_a - pad_b + out_pad


def parse_act(act: str) -> tuple[str, float | None]:
    name, _, param = act.partition(":")
    return name, (float(param) if param else None)


def infer_shape(op: Op, in_shapes: Sequence[Shape]) -> Shape:
    """The output shape of ``op`` on inputs of ``in_shapes``; a FormatError names the layer if they don't fit."""
    src = op.source
    if op.kind not in KINDS:
        raise src.error(f"unknown operator kind {op.kind!r}")
    for a in op.acts:
        if parse_act(a)[0] not in ACTIVATIONS:
            raise src.error(f"unknown activation {a!r} (known: {', '.join(ACTIVATIONS)})", field="activation")
    if not in_shapes:
        raise src.error("has no input")
    for s in in_shapes:
        if min(s) <= 0:
            raise src.error(f"input shape {fmt_shape(s)} is empty")
    c, h, w = in_shapes[0]
    kh, kw = op.kernel
    sh, sw = op.stride
    pt, pl, pb, pr = op.pad
    dh, dw = op.dilation
    if min(kh, kw, sh, sw, dh, dw, op.groups) <= 0:
        raise src.error("kernel, stride, dilation and groups must be positive")
    if min(op.pad) < 0:
        raise src.error("padding must not be negative")
    k = op.kind
    if k in ("conv", "deconv", "fc") and op.out_channels <= 0:
        raise src.error("needs a positive number of output channels", field="filters")
    if k == "conv":
        if c % op.groups or op.out_channels % op.groups:
            raise src.error(f"{c} input and {op.out_channels} output channels do not split into {op.groups} groups")
        out = (op.out_channels, conv_out(h, kh, sh, pt, pb, dh), conv_out(w, kw, sw, pl, pr, dw))
    elif k == "deconv":
        if c % op.groups or op.out_channels % op.groups:
            raise src.error(f"{c} input and {op.out_channels} output channels do not split into {op.groups} groups")
        oph, opw = op.attrs.get("out_pad", (0, 0))
        out = (op.out_channels, deconv_out(h, kh, sh, pt, pb, dh, oph), deconv_out(w, kw, sw, pl, pr, dw, opw))
    elif k in ("maxpool", "avgpool"):
        if max(pt, pb) >= kh or max(pl, pr) >= kw:
            # A window made only of padding has no value (max of nothing); Darknet, ncnn and torch forbid it too.
            raise src.error(f"padding {op.pad} is not smaller than the {kh}x{kw} window")
        out = (c, conv_out(h, kh, sh, pt, pb), conv_out(w, kw, sw, pl, pr))
    elif k == "upsample":
        fy, fx = op.attrs["scale"]
        out = (c, h * fy, w * fx)
    elif k in ("add", "sub", "mul", "max"):
        if len(in_shapes) < 2:
            raise src.error(f"element-wise {k} needs at least two inputs")
        for s in in_shapes[1:]:
            # Only a per-channel vector (the squeeze-and-excitation scale) broadcasts over a feature map.
            if s != in_shapes[0] and not (k == "mul" and s == (c, 1, 1)):
                raise src.error(f"shapes do not match: {' vs '.join(fmt_shape(x) for x in in_shapes)}")
        out = (c, h, w)
    elif k in ("act", "affine", "softmax"):
        out = (c, h, w)
    elif k in ("yolo", "region"):
        per = op.attrs["anchors"] * (op.attrs["classes"] + op.attrs.get("coords", 4) + 1)
        if c != per:
            raise src.error(f"has {c} input channels, but {op.attrs['anchors']} anchors x "
                            f"({op.attrs['classes']} classes + {op.attrs.get('coords', 4) + 1}) need {per}")
        out = (c, h, w)
    elif k == "concat":
        for s in in_shapes[1:]:
            if s[1:] != (h, w):
                sizes = ", ".join(fmt_shape(x) for x in in_shapes)
                raise src.error(f"cannot concatenate maps of different sizes: {sizes}")
        out = (sum(s[0] for s in in_shapes), h, w)
    elif k == "slice":
        oc, oh, ow = op.attrs["offset"]
        zc, zh, zw = op.attrs["size"]
        if oc < 0 or oh < 0 or ow < 0 or zc <= 0 or zh <= 0 or zw <= 0 or oc + zc > c or oh + zh > h or ow + zw > w:
            raise src.error(f"crop of {zc}x{zh}x{zw} at {oc},{oh},{ow} does not fit in {fmt_shape(in_shapes[0])}")
        out = (zc, zh, zw)
    elif k in ("gap", "gmp"):
        out = (c, 1, 1)
    else:  # fc
        out = (op.out_channels, 1, 1)
    if len(in_shapes) > 1 and k not in ("add", "sub", "mul", "max", "concat"):
        raise src.error(f"{k} takes one input, got {len(in_shapes)}")
    if min(out) <= 0:
        raise src.error(f"output would be empty ({fmt_shape(out)}) for input {fmt_shape(in_shapes[0])}")
    return out


def fmt_shape(s: Shape) -> str:
    return "x".join(str(v) for v in s)


# -- building and checking ------------------------------------------------------------------------


class GraphBuilder:
    """Readers add operators one by one; each output shape is inferred on the spot."""

    def __init__(self, name: str, origin: str = "", elem_bytes: int = 4) -> None:
        self.name = name
        self.origin = origin
        self.elem_bytes = elem_bytes
        self.shapes: dict[str, Shape] = {}
        self.inputs: list[str] = []
        self.ops: list[Op] = []
        self.extra_outputs: list[str] = []

    def add_input(self, name: str, shape: Shape, source: Source = Source()) -> str:
        if name in self.shapes:
            raise source.error(f"tensor {name!r} is defined twice")
        if min(shape) <= 0:
            raise source.error(f"input shape {fmt_shape(shape)} is empty")
        self.shapes[name] = tuple(int(v) for v in shape)  # type: ignore[assignment]
        self.inputs.append(name)
        return name

    def add(self, op: Op) -> str:
        for t in op.inputs:
            if t not in self.shapes:
                raise op.source.error(f"reads {t!r}, which no earlier layer produces")
        if op.output in self.shapes:
            raise op.source.error(f"output {op.output!r} is already defined by an earlier layer")
        self.shapes[op.output] = infer_shape(op, [self.shapes[t] for t in op.inputs])
        self.ops.append(op)
        return op.output

    def mark_output(self, tensor: str) -> None:
        if tensor not in self.extra_outputs:
            self.extra_outputs.append(tensor)

    def build(self, outputs: Iterable[str] | None = None) -> Graph:
        consumed = {t for op in self.ops for t in op.inputs}
        if outputs is None:
            # Whatever nobody reads is a result of the network, plus what the reader marked (detector heads).
            outs = [t for t in list(self.inputs) + [op.output for op in self.ops] if t not in consumed]
            outs += [t for t in self.extra_outputs if t not in outs]
        else:
            outs = list(outputs)
        if not self.ops:
            raise FormatError("the network has no layers", path=self.origin or None)
        return validate(Graph(self.name, dict(self.shapes), tuple(self.inputs), tuple(outs), tuple(self.ops),
                              self.elem_bytes, self.origin))


def validate(graph: Graph) -> Graph:
    """Check that operators are in an executable order and shapes chain; return the graph unchanged."""
    known = set(graph.inputs)
    if not graph.inputs:
        raise FormatError("the network has no input", path=graph.origin or None)
    for op in graph.ops:
        for t in op.inputs:
            if t not in known:
                raise op.source.error(f"reads {t!r} before any layer produces it")
        got = infer_shape(op, [graph.shapes[t] for t in op.inputs])
        if got != graph.shapes.get(op.output):
            raise op.source.error(f"output shape {fmt_shape(graph.shapes.get(op.output, (0, 0, 0)))} does not follow "
                                  f"from its inputs (expected {fmt_shape(got)})")
        if op.output in known:
            raise op.source.error(f"writes {op.output!r} a second time")
        known.add(op.output)
    for t in graph.outputs:
        if t not in known:
            raise FormatError(f"network output {t!r} is never produced", path=graph.origin or None)
    return graph
