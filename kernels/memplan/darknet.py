"""Read a Darknet ``.cfg`` network definition into the graph form.

Layers are numbered from 0 after the ``[net]`` section, as Darknet numbers them; ``route`` and
``shortcut`` refer to layers by absolute index or by a negative offset from the current layer. Output
sizes follow Darknet's own arithmetic: a convolution with ``pad=1`` pads ``size/2`` on each side; a
max-pool pads ``padding`` rows in total (default ``size-1``), ``padding/2`` of them at the top.
A single-layer route, ``dropout``, ``cost`` and ``detection`` copy nothing and become plain reuse of
their input tensor. Weights are not read: planning needs none, and the execution check draws random ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engram.errors import FormatError
from kernels.memplan.graph import Graph, GraphBuilder, Op, Source

# Darknet activation names -> ours.
_ACTS = {"linear": "linear", "relu": "relu", "relu6": "relu6", "leaky": "leaky", "logistic": "sigmoid",
         "tanh": "tanh", "mish": "mish", "swish": "silu", "hard_sigmoid": "hsigmoid"}
_SECTIONS = ("convolutional", "conv", "maxpool", "max", "avgpool", "avg", "route", "shortcut", "upsample", "yolo",
             "region", "detection", "connected", "softmax", "dropout", "cost", "batchnorm")


@dataclass
class _Section:
    kind: str
    line: int
    options: dict[str, tuple[str, int]]  # key -> (value, line)


def parse_sections(text: str, path: str) -> list[_Section]:
    sections: list[_Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise FormatError(f"malformed section header {line!r}", path=path, line=lineno)
            sections.append(_Section(line[1:-1].strip().lower(), lineno, {}))
            continue
        if "=" not in line:
            raise FormatError(f"expected 'key=value' or '[section]', got {line!r}", path=path, line=lineno)
        if not sections:
            raise FormatError(f"option {line!r} comes before any [section]", path=path, line=lineno)
        key, value = (s.strip() for s in line.split("=", 1))
        sections[-1].options[key] = (value, lineno)
    if not sections:
        raise FormatError("no sections found; is this a Darknet .cfg file?", path=path)
    return sections


class _Opts:
    def __init__(self, sec: _Section, path: str, layer: str) -> None:
        self.sec, self.path, self.layer = sec, path, layer
        self.used: set[str] = set()

    def _err(self, key: str, msg: str) -> FormatError:
        line = self.sec.options[key][1] if key in self.sec.options else self.sec.line
        return FormatError(f"layer {self.layer}: {msg}", path=self.path, line=line, field=key)

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.sec.options:
            if default is None:
                raise self._err(key, f"missing required option {key!r}")
            return default
        value = self.sec.options[key][0]
        try:
            return int(value)
        except ValueError:
            raise self._err(key, f"{key}={value!r} is not an integer") from None

    def ints(self, key: str) -> list[int]:
        if key not in self.sec.options:
            return []
        value = self.sec.options[key][0]
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise self._err(key, f"{key}={value!r} is not a list of integers") from None

    def str(self, key: str, default: str) -> str:
        return self.sec.options.get(key, (default, 0))[0]

    def act(self, default: str) -> str:
        name = self.str("activation", default).lower()
        if name not in _ACTS:
            raise self._err("activation", f"unsupported activation {name!r} (supported: {', '.join(sorted(_ACTS))})")
        return _ACTS[name]

    def positive(self, key: str, default: int | None = None) -> int:
        v = self.int(key, default)
        if v <= 0:
            raise self._err(key, f"{key} must be positive, got {v}")
        return v


def read_darknet(path: str | Path, input_size: tuple[int, int] | None = None, elem_bytes: int = 4) -> Graph:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read Darknet config: {exc}", path=str(path)) from None
    return parse_darknet(text, str(path), input_size, elem_bytes, name=path.stem)


def parse_darknet(text: str, path: str, input_size: tuple[int, int] | None = None, elem_bytes: int = 4,
                  name: str = "darknet") -> Graph:
    sections = parse_sections(text, path)
    net = sections[0]
    if net.kind not in ("net", "network"):
        raise FormatError(f"the first section must be [net], got [{net.kind}]", path=path, line=net.line)
    opts = _Opts(net, path, "[net]")
    h, w = input_size if input_size else (opts.positive("height"), opts.positive("width"))
    c = opts.positive("channels", 3)
    b = GraphBuilder(name, origin=path, elem_bytes=elem_bytes)
    prev = b.add_input("data", (c, h, w), Source(path, net.line, "[net]"))
    outputs: list[str] = []  # tensor produced by each layer index

    for idx, sec in enumerate(sections[1:]):
        label = f"{idx} [{sec.kind}]"
        src = Source(path, sec.line, label)
        o = _Opts(sec, path, label)
        kind = sec.kind
        if kind not in _SECTIONS:
            raise FormatError(f"layer {label}: unsupported layer type [{kind}] (supported: "
                              f"{', '.join(sorted(set(_SECTIONS)))})", path=path, line=sec.line)
        tname = f"{idx}_{kind}"

        def ref(key: str, value: int) -> str:
            j = idx + value if value < 0 else value
            if not 0 <= j < idx:
                line = sec.options[key][1] if key in sec.options else sec.line
                before = f"only layers 0..{idx - 1} come before it" if idx else "no layer comes before it"
                raise FormatError(f"layer {label}: {key} refers to layer {j}, but {before}", path=path, line=line,
                                  field=key)
            return outputs[j]

        if kind in ("convolutional", "conv"):
            size = o.positive("size", 1)
            stride = o.positive("stride", 1)
            sy, sx = o.positive("stride_y", stride), o.positive("stride_x", stride)
            padding = size // 2 if o.int("pad", 0) else o.int("padding", 0)
            dil = o.positive("dilation", 1)
            op = Op(tname, "conv", (prev,), tname, out_channels=o.positive("filters", 1), kernel=(size, size),
                    stride=(sy, sx), pad=(padding,) * 4, dilation=(dil, dil), groups=o.positive("groups", 1),
                    acts=(o.act("logistic"),), source=src)
            prev = b.add(op)
        elif kind in ("maxpool", "max"):
            stride = o.positive("stride", 1)
            sy, sx = o.positive("stride_y", stride), o.positive("stride_x", stride)
            size = o.positive("size", stride)
            padding = o.int("padding", size - 1)
            if padding < 0:
                raise FormatError(f"layer {label}: padding must not be negative", path=path, line=sec.line,
                                  field="padding")
            top = padding // 2
            op = Op(tname, "maxpool", (prev,), tname, kernel=(size, size), stride=(sy, sx),
                    pad=(top, top, padding - top, padding - top), source=src)
            prev = b.add(op)
        elif kind in ("avgpool", "avg"):
            prev = b.add(Op(tname, "gap", (prev,), tname, source=src))
        elif kind == "route":
            layers = o.ints("layers")
            if not layers:
                raise FormatError(f"layer {label}: route needs 'layers'", path=path, line=sec.line, field="layers")
            srcs = [ref("layers", v) for v in layers]
            groups, gid = o.positive("groups", 1), o.int("group_id", 0)
            if groups > 1:
                if not 0 <= gid < groups:
                    raise FormatError(f"layer {label}: group_id {gid} is not in 0..{groups - 1}", path=path,
                                      line=sec.line, field="group_id")
                parts = []
                for k, t in enumerate(srcs):
                    cc, hh, ww = b.shapes[t]
                    if cc % groups:
                        raise FormatError(f"layer {label}: {cc} channels of {t!r} do not split into {groups} groups",
                                          path=path, line=sec.line, field="groups")
                    part = cc // groups
                    parts.append(b.add(Op(f"{tname}_g{k}", "slice", (t,), f"{tname}_g{k}",
                                          attrs={"offset": (gid * part, 0, 0), "size": (part, hh, ww)}, source=src)))
                srcs = parts
            prev = srcs[0] if len(srcs) == 1 else b.add(Op(tname, "concat", tuple(srcs), tname, source=src))
        elif kind == "shortcut":
            frm = ref("from", o.int("from"))
            prev = b.add(Op(tname, "add", (prev, frm), tname, acts=(o.act("linear"),), source=src))
        elif kind == "upsample":
            s = o.positive("stride", 2)
            prev = b.add(Op(tname, "upsample", (prev,), tname, attrs={"scale": (s, s)}, source=src))
        elif kind in ("yolo", "region"):
            classes = o.positive("classes", 20)
            if kind == "yolo":
                mask = o.ints("mask")
                anchors = len(mask) if mask else o.positive("num", 1)
                attrs = {"anchors": anchors, "classes": classes, "coords": 4}
            else:
                attrs = {"anchors": o.positive("num", 1), "classes": classes, "coords": o.positive("coords", 4)}
            prev = b.add(Op(tname, kind, (prev,), tname, attrs=attrs, source=src))
            b.mark_output(prev)
        elif kind == "connected":
            prev = b.add(Op(tname, "fc", (prev,), tname, out_channels=o.positive("output", 1),
                            acts=(o.act("logistic"),), source=src))
        elif kind == "softmax":
            if o.int("groups", 1) != 1:
                raise FormatError(f"layer {label}: grouped softmax is not supported", path=path, line=sec.line,
                                  field="groups")
            prev = b.add(Op(tname, "softmax", (prev,), tname, source=src))
        elif kind == "batchnorm":
            prev = b.add(Op(tname, "affine", (prev,), tname, source=src))
        elif kind == "detection":
            b.mark_output(prev)
        # dropout and cost pass their input through unchanged at inference.
        outputs.append(prev)
    return b.build()
