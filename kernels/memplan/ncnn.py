"""Read an ncnn ``.param`` network structure into the graph form.

Format (ncnn's param file, plain-text version): line 1 the magic number 7767517; line 2 the layer and
blob counts; then one line per layer: ``type name n_in n_out in_blobs... out_blobs... key=value...``.
Keys are small integers; a key ``-233xx`` carries an array ``count,v1,v2,...`` under key ``xx``. Key 30
(``-23330``) is the shape annotation ncnnoptimize writes: per output blob ``dims, w, h, c``. When the file
has them and the network is read at its own input size, every inferred shape is checked against them.

Layer parameters used (ncnn's layer documentation): Convolution and ConvolutionDepthWise 0=num_output
1=kernel_w 11=kernel_h 2=dilation_w 12=dilation_h 3=stride_w 13=stride_h 4=pad_left 15=pad_right
14=pad_top 16=pad_bottom 7=group 9=activation_type (0 none, 1 relu, 2 leaky 10=slope, 3 clip, 4 sigmoid,
5 mish, 6 hardswish); Pooling 0=type (0 max, 1 avg) 1=kernel 2=stride 3=pad_left 14=pad_right 13=pad_top
15=pad_bottom 4=global 5=pad_mode (0 full, 1 valid, 2/3 same) 6=avg counts padding; Deconvolution(DepthWise)
as Convolution plus 18/19=output padding; InnerProduct 0=num_output; Eltwise 0=op (0 prod, 1 sum, 2 max);
Crop 0..2=w/h/c offset 3..5=w/h/c size; Interp 0=resize type (1 nearest) 1/2=height/width scale.
``Split``, ``Dropout``, ``Noop`` and ``Flatten`` copy nothing; detection-output layers are post-processing
whose inputs become the network's outputs.
"""

from __future__ import annotations

import math
from pathlib import Path

from engram.errors import FormatError
from kernels.memplan.graph import Graph, GraphBuilder, Op, Source, fmt_shape

MAGIC = "7767517"
_ALIASES = ("Split", "Dropout", "Noop", "Flatten")
_SINKS = ("YoloDetectionOutput", "Yolov3DetectionOutput", "DetectionOutput")
_SUPPORTED = ("Input", "Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "Pooling",
              "InnerProduct", "Eltwise", "Concat", "ReLU", "Sigmoid", "HardSwish", "HardSigmoid", "Mish", "Swish",
              "TanH", "Clip", "BatchNorm", "Scale", "Softmax", "Crop", "Interp") + _ALIASES + _SINKS


def _parse_value(text: str) -> float | int:
    return float(text) if any(ch in text for ch in ".eE") else int(text)


def _parse_params(tokens: list[str], src: Source) -> dict[int, object]:
    params: dict[int, object] = {}
    for tok in tokens:
        if "=" not in tok:
            raise src.error(f"expected key=value, got {tok!r}")
        k, v = tok.split("=", 1)
        try:
            key = int(k)
            if key <= -23300:
                vals = v.split(",")
                count = int(vals[0])
                if count != len(vals) - 1:
                    raise ValueError
                params[-key - 23300] = [_parse_value(x) for x in vals[1:]]
            else:
                params[key] = _parse_value(v)
        except ValueError:
            raise src.error(f"malformed parameter {tok!r}", field=k) from None
    return params


def read_ncnn(path: str | Path, input_size: tuple[int, int] | None = None, elem_bytes: int = 4) -> Graph:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read ncnn param file: {exc}", path=str(path)) from None
    return parse_ncnn(text, str(path), input_size, elem_bytes, name=path.stem)


def parse_ncnn(text: str, path: str, input_size: tuple[int, int] | None = None, elem_bytes: int = 4,
               name: str = "ncnn") -> Graph:
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise FormatError(f"not an ncnn .param file (first line must be {MAGIC})", path=path, line=1)
    try:
        n_layers, n_blobs = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise FormatError("second line must be '<layer count> <blob count>'", path=path, line=2) from None
    b = GraphBuilder(name, origin=path, elem_bytes=elem_bytes)
    alias: dict[str, str] = {}  # blob -> the tensor holding its data
    check_hints = input_size is None
    body = [(i, ln) for i, ln in enumerate(lines[2:], start=3) if ln.strip()]
    if len(body) != n_layers:
        raise FormatError(f"header declares {n_layers} layers, the file has {len(body)}", path=path, line=2)

    for lineno, line in body:
        tok = line.split()
        if len(tok) < 4:
            raise FormatError(f"layer line needs 'type name n_in n_out ...', got {line.strip()!r}", path=path,
                              line=lineno)
        ltype, lname = tok[0], tok[1]
        src = Source(path, lineno, lname)
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except ValueError:
            raise src.error("input/output counts must be integers") from None
        if len(tok) < 4 + n_in + n_out:
            raise src.error(f"declares {n_in} inputs and {n_out} outputs but lists fewer blobs")
        ins = tok[4:4 + n_in]
        outs = tok[4 + n_in:4 + n_in + n_out]
        p = _parse_params(tok[4 + n_in + n_out:], src)
        if ltype not in _SUPPORTED:
            raise src.error(f"unsupported layer type {ltype!r}")
        for blob in ins:
            if blob not in alias:
                raise src.error(f"reads blob {blob!r}, which no earlier layer produces")
        srcs = [alias[x] for x in ins]

        def g(key: int, default):  # noqa: ANN001
            v = p.get(key, default)
            if isinstance(v, list):
                raise src.error(f"parameter {key} must be a single value", field=str(key))
            return v

        if ltype == "Input":
            if n_out != 1:
                raise src.error("Input must have one output blob")
            w0, h0, c0 = int(g(0, 0)), int(g(1, 0)), int(g(2, 0))
            if input_size:
                h0, w0 = input_size
            alias[outs[0]] = b.add_input(outs[0], (c0, h0, w0), src)
            produced = [outs[0]]
        elif ltype in _ALIASES:
            if n_in != 1:
                raise src.error(f"{ltype} takes one input")
            for o in outs:
                alias[o] = srcs[0]
            produced = []
        elif ltype in _SINKS:
            for t in srcs:
                b.mark_output(t)
            produced = []
        else:
            if n_out != 1:
                raise src.error(f"{ltype} with {n_out} outputs is not supported")
            op = _layer_op(ltype, lname, tuple(srcs), outs[0], g, p, b, src)
            alias[outs[0]] = b.add(op)
            produced = [outs[0]]
        if check_hints and 30 in p and produced:
            _check_hint(p[30], b.shapes[alias[produced[0]]], src)
    return b.build()


def _act(atype: int, aparams, src: Source) -> tuple[str, ...]:  # noqa: ANN001
    if atype == 0:
        return ()
    if atype == 1:
        return ("relu",)
    if atype == 2:
        slope = aparams[0] if aparams else 0.0
        return (f"leaky:{slope}",)
    if atype == 3:
        lo, hi = (aparams + [0.0, 6.0])[:2] if aparams else (0.0, 6.0)
        if (lo, hi) != (0.0, 6.0):
            raise src.error(f"clip activation to [{lo}, {hi}] is not supported", field="9")
        return ("relu6",)
    if atype == 4:
        return ("sigmoid",)
    if atype == 5:
        return ("mish",)
    if atype == 6:
        return ("hswish",)
    raise src.error(f"unsupported activation_type {atype}", field="9")


def _layer_op(ltype: str, lname: str, ins: tuple[str, ...], out: str, g, p: dict, b: GraphBuilder,  # noqa: ANN001
              src: Source) -> Op:
    c, h, w = b.shapes[ins[0]]
    if ltype in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise"):
        kw = int(g(1, 0))
        kh = int(g(11, kw))
        dw = int(g(2, 1))
        dh = int(g(12, dw))
        sw = int(g(3, 1))
        sh = int(g(13, sw))
        pl = int(g(4, 0))
        pr, pt = int(g(15, pl)), int(g(14, pl))
        pb = int(g(16, pt))
        deconv = ltype.startswith("De")
        if pl in (-233, -234):  # "same" padding: total = needed to keep ceil(size / stride)
            if deconv:
                raise src.error("'same' padding on a deconvolution is not supported", field="4")
            pt, pb = _same(h, kh, sh, dh, pl == -233)
            pl, pr = _same(w, kw, sw, dw, pl == -233)
        groups = int(g(7, 1)) if ltype.endswith("DepthWise") else 1
        acts = _act(int(g(9, 0)), p.get(10), src)
        kind = "deconv" if deconv else "conv"
        attrs = {"out_pad": (int(g(19, 0)), int(g(18, 0)))} if deconv else {}
        return Op(lname, kind, ins, out, out_channels=int(g(0, 0)), kernel=(kh, kw), stride=(sh, sw),
                  pad=(pt, pl, pb, pr), dilation=(dh, dw), groups=groups, acts=acts, attrs=attrs, source=src)
    if ltype == "Pooling":
        ptype = int(g(0, 0))
        if ptype not in (0, 1):
            raise src.error(f"pooling type {ptype} is not supported", field="0")
        if int(g(4, 0)):
            return Op(lname, "gmp" if ptype == 0 else "gap", ins, out, source=src)
        if int(g(7, 0)):
            raise src.error("adaptive pooling is not supported", field="7")
        kw = int(g(1, 0))
        kh = int(g(11, kw))
        sw = int(g(2, 1))
        sh = int(g(12, sw))
        pl = int(g(3, 0))
        pr, pt = int(g(14, pl)), int(g(13, pl))
        pb = int(g(15, pt))
        mode = int(g(5, 0))
        if mode == 0:  # "full" padding: extend right/bottom so the last partial window is kept (ceil)
            pb += _tail(h, kh, sh, pt, pb)
            pr += _tail(w, kw, sw, pl, pr)
        elif mode in (2, 3):
            pt, pb = _same(h, kh, sh, 1, mode == 2)
            pl, pr = _same(w, kw, sw, 1, mode == 2)
        kind = "maxpool" if ptype == 0 else "avgpool"
        attrs = {"count_pad": bool(int(g(6, 0)))} if kind == "avgpool" else {}
        return Op(lname, kind, ins, out, kernel=(kh, kw), stride=(sh, sw), pad=(pt, pl, pb, pr), attrs=attrs,
                  source=src)
    if ltype == "InnerProduct":
        return Op(lname, "fc", ins, out, out_channels=int(g(0, 0)), acts=_act(int(g(9, 0)), p.get(10), src), source=src)
    if ltype == "Eltwise":
        kind = {0: "mul", 1: "add", 2: "max"}.get(int(g(0, 0)))
        if kind is None:
            raise src.error(f"Eltwise operation {g(0, 0)} is not supported", field="0")
        if 1 in p:
            raise src.error("Eltwise coefficients are not supported", field="1")
        return Op(lname, kind, ins, out, source=src)
    if ltype == "Concat":
        if int(g(0, 0)) != 0:
            raise src.error("only channel concatenation (axis 0) is supported", field="0")
        return Op(lname, "concat", ins, out, source=src)
    if ltype in ("ReLU", "Sigmoid", "HardSwish", "HardSigmoid", "Mish", "Swish", "TanH", "Clip"):
        act = {"ReLU": "relu", "Sigmoid": "sigmoid", "HardSwish": "hswish", "HardSigmoid": "hsigmoid",
               "Mish": "mish", "Swish": "silu", "TanH": "tanh", "Clip": "relu6"}[ltype]
        if ltype == "ReLU" and float(g(0, 0.0)) != 0.0:
            act = f"leaky:{float(g(0, 0.0))}"
        if ltype == "Clip" and (float(g(0, 0.0)), float(g(1, 6.0))) != (0.0, 6.0):
            raise src.error("Clip to a range other than [0, 6] is not supported")
        return Op(lname, "act", ins, out, acts=(act,), source=src)
    if ltype in ("BatchNorm", "Scale"):
        return Op(lname, "affine", ins, out, source=src)
    if ltype == "Softmax":
        return Op(lname, "softmax", ins, out, source=src)
    if ltype == "Crop":
        ow, oh, oc = int(g(0, 0)), int(g(1, 0)), int(g(2, 0))
        zw, zh, zc = int(g(3, w - ow)), int(g(4, h - oh)), int(g(5, c - oc))
        return Op(lname, "slice", ins, out, attrs={"offset": (oc, oh, ow), "size": (zc, zh, zw)}, source=src)
    if ltype == "Interp":
        rtype = int(g(0, 0))
        fy, fx = float(g(1, 1.0)), float(g(2, 1.0))
        oh, ow = int(g(3, 0)), int(g(4, 0))
        if oh and ow:
            fy, fx = oh / h, ow / w
        if rtype != 1 or fy != int(fy) or fx != int(fx) or fy < 1 or fx < 1:
            raise src.error("only nearest-neighbour upsampling by whole factors is supported", field="0")
        return Op(lname, "upsample", ins, out, attrs={"scale": (int(fy), int(fx))}, source=src)
    raise src.error(f"unsupported layer type {ltype!r}")  # pragma: no cover - filtered by _SUPPORTED


def _tail(size: int, k: int, s: int, a: int, b_: int) -> int:
    rem = (size + a + b_ - k) % s
    return s - rem if rem else 0


def _same(size: int, k: int, s: int, d: int, upper: bool) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _check_hint(hint, shape: tuple[int, int, int], src: Source) -> None:  # noqa: ANN001
    if not isinstance(hint, list) or len(hint) < 4:
        return
    dims, w, h, c = (int(v) for v in hint[:4])
    declared = (c, h, w) if dims == 3 else (w, 1, 1) if dims == 1 else None
    if declared is not None and declared != shape:
        raise src.error(f"shapes do not chain: the layer computes {fmt_shape(shape)} (CxHxW) but the file declares "
                        f"{fmt_shape(declared)}", field="-23330")
