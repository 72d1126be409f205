"""Generated networks: the deep residual stack of the planning-time benchmark, and random networks of
every operator kind for the property tests (chains and DAGs with skip connections)."""

from __future__ import annotations

import random

from engram.errors import FormatError
from kernels.memplan.graph import Graph, GraphBuilder, Op


def random_graph(seed: int, max_ops: int = 10) -> Graph:
    """A random valid network: convolutions (plain, strided, depthwise, dilated), pooling, transposed
    convolution, upsampling, crops, concat and element-wise joins of earlier tensors (skip connections),
    squeeze-and-excitation style broadcasts, and sometimes a global-pool + fully-connected head."""
    rnd = random.Random(seed)
    b = GraphBuilder(f"random{seed}")
    c0 = rnd.randint(1, 4)
    t = b.add_input("x", (c0, rnd.randint(3, 12), rnd.randint(2, 7)))
    tensors = [t]
    n = rnd.randint(1, max_ops)
    k = 0
    while len(b.ops) < n:
        k += 1
        name = f"op{k}"
        # Mostly continue the chain, sometimes branch off an older tensor (it then stays alive).
        src = tensors[-1] if rnd.random() < 0.75 else rnd.choice(tensors)
        c, h, w = b.shapes[src]
        kind = rnd.choice(["conv", "conv", "conv", "dw", "pool", "upsample", "deconv", "slice", "join", "act",
                           "se", "concat"])
        acts = (rnd.choice(["relu", "leaky", "linear", "hswish", "sigmoid"]),)
        try:
            if kind == "conv":
                kh = rnd.choice([1, 3, 5])
                kw = rnd.choice([1, 3])
                s = rnd.choice([1, 1, 2])
                d = rnd.choice([1, 1, 2])
                pt, pb = rnd.randint(0, kh // 2 * d), rnd.randint(0, kh // 2 * d)
                pl = rnd.randint(0, kw // 2)
                op = Op(name, "conv", (src,), name, out_channels=rnd.randint(1, 6), kernel=(kh, kw), stride=(s, 1),
                        pad=(pt, pl, pb, pl), dilation=(d, 1), acts=acts)
            elif kind == "dw":
                op = Op(name, "conv", (src,), name, out_channels=c, kernel=(3, 3), stride=(rnd.choice([1, 2]), 1),
                        pad=(1, 1, 1, 1), groups=c, acts=acts)
            elif kind == "pool":
                kh = rnd.choice([2, 3])
                s = rnd.choice([1, 2])
                p = rnd.randint(0, kh - 1)
                op = Op(name, rnd.choice(["maxpool", "avgpool"]), (src,), name, kernel=(kh, 2), stride=(s, 1),
                        pad=(p // 2, 0, p - p // 2, 1), attrs={"count_pad": rnd.random() < 0.5})
            elif kind == "upsample":
                op = Op(name, "upsample", (src,), name, attrs={"scale": (rnd.choice([1, 2]), rnd.choice([1, 2]))})
            elif kind == "deconv":
                kh = rnd.choice([2, 3, 4])
                s = rnd.choice([1, 2])
                p = rnd.randint(0, kh - 1)
                op = Op(name, "deconv", (src,), name, out_channels=rnd.randint(1, 4), kernel=(kh, 2), stride=(s, 1),
                        pad=(p, 0, p, 0), attrs={"out_pad": (rnd.randint(0, s - 1), 0)}, acts=acts)
            elif kind == "slice":
                oc, oh = rnd.randint(0, c - 1), rnd.randint(0, h - 1)
                op = Op(name, "slice", (src,), name, attrs={"offset": (oc, oh, 0),
                                                            "size": (rnd.randint(1, c - oc), rnd.randint(1, h - oh), w)})
            elif kind == "act":
                op = Op(name, "act" if rnd.random() < 0.5 else "affine", (src,), name, acts=acts)
            elif kind in ("join", "concat"):
                same = [x for x in tensors if x != src and b.shapes[x] == b.shapes[src]] if kind == "join" else \
                    [x for x in tensors if x != src and b.shapes[x][1:] == (h, w)]
                if not same:
                    continue
                other = rnd.choice(same)
                ins = (src, other) if rnd.random() < 0.5 else (other, src)
                op = Op(name, rnd.choice(["add", "sub", "mul", "max"]) if kind == "join" else "concat", ins, name,
                        acts=acts if kind == "join" else ())
            else:  # squeeze-and-excitation: global pool, 1x1 conv, broadcast multiply
                g = b.add(Op(name + "_gap", "gap", (src,), name + "_gap"))
                e = b.add(Op(name + "_fc", "conv", (g,), name + "_fc", out_channels=c, acts=("hsigmoid",)))
                tensors += [g, e]
                op = Op(name, "mul", (src, e), name)
            tensors.append(b.add(op))
        except FormatError:  # a random choice that does not fit this input (e.g. empty output): skip it
            continue
    if rnd.random() < 0.3:
        g = b.add(Op("head_gap", "gap", (tensors[-1],), "head_gap"))
        b.add(Op("head_fc", "fc", (g,), "head_fc", out_channels=3))
    return b.build()


def residual_stack(n_layers: int = 500, channels: int = 16, size: int = 64, elem_bytes: int = 4,
                   skip_every: int = 4) -> Graph:
    """A deep residual stack for the planning-time benchmark: ``n_layers`` operators of 3x3 convolutions
    with a skip connection (add) every ``skip_every`` layers, at a fixed width and resolution."""
    b = GraphBuilder(f"resstack{n_layers}", origin="builtin:resstack", elem_bytes=elem_bytes)
    t = b.add_input("image", (channels, size, size))
    skip = t
    k = 0
    while len(b.ops) < n_layers:
        k += 1
        name = f"op{k}"
        if k % skip_every == 0:
            t = b.add(Op(name, "add", (t, skip), name, acts=("relu",)))
            skip = t
        else:
            t = b.add(Op(name, "conv", (t,), name, out_channels=channels, kernel=(3, 3), pad=(1, 1, 1, 1),
                         acts=("relu",)))
    return b.build()
