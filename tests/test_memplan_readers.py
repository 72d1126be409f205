"""Graph readers: Darknet .cfg, ncnn .param and torch.export, with clear errors for bad input."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from engram.errors import EngramError, FormatError
from kernels.memplan.darknet import parse_darknet, read_darknet
from kernels.memplan.graph import Graph
from kernels.memplan.load import BUNDLED, bundled_graphs
from kernels.memplan.ncnn import parse_ncnn, read_ncnn
from kernels.memplan.reference import run_reference
from kernels.memplan.torch_export import graph_from_blockwise, graph_from_module
from kernels.memplan.weights import random_inputs, random_weights

DARKNET = BUNDLED / "darknet"
NCNN = BUNDLED / "ncnn"


def test_bundled_graphs_come_with_license_and_provenance():
    for folder, lic in ((DARKNET, "LICENSE"), (NCNN, "LICENSE.txt")):
        assert (folder / lic).is_file() and (folder / "PROVENANCE.txt").is_file()
        names = {p.name for p in folder.iterdir()}
        for graph in names - {lic, "PROVENANCE.txt"}:
            assert graph in (folder / "PROVENANCE.txt").read_text()
    assert len(bundled_graphs()) == 11


def test_yolov3_tiny_structure():
    g = read_darknet(DARKNET / "yolov3-tiny.cfg")
    assert g.shapes["data"] == (3, 416, 416)
    assert g.shapes["0_convolutional"] == (16, 416, 416)
    assert g.shapes["11_maxpool"] == (512, 13, 13)  # size=2 stride=1 keeps the size (Darknet pads 1 row)
    assert g.shapes["20_route"] == (384, 26, 26)  # upsampled 128 + layer 8's 256
    assert set(g.outputs) == {"16_yolo", "23_yolo"}
    assert g.shapes["16_yolo"] == (255, 13, 13) and g.shapes["23_yolo"] == (255, 26, 26)
    route = next(op for op in g.ops if op.name == "20_route")
    assert route.inputs == ("19_upsample", "8_convolutional")
    # "route layers=-4" alone copies nothing: layer 18 reads layer 13's tensor directly.
    assert next(op for op in g.ops if op.name == "18_convolutional").inputs == ("13_convolutional",)
    # 1x1 convolutions with pad=1 pad size/2 = 0 rows in Darknet.
    assert next(op for op in g.ops if op.name == "13_convolutional").pad == (0, 0, 0, 0)


@pytest.mark.parametrize("name,out", [("tiny.cfg", (1000, 1, 1)), ("yolov1-tiny.cfg", (1470, 1, 1)),
                                      ("yolov2-tiny.cfg", (425, 13, 13)), ("yolov2-tiny-voc.cfg", (125, 13, 13))])
def test_darknet_outputs(name, out):
    g = read_darknet(DARKNET / name)
    assert [g.shapes[t] for t in g.outputs] == [out]


def test_ncnn_graphs_match_their_own_shape_annotations():
    # The reader checks every -23330 annotation; reading at native size must therefore succeed...
    for path in sorted(NCNN.glob("*.param")):
        g = read_ncnn(path)
        assert g.ops and g.outputs
    g = read_ncnn(NCNN / "yolov4-tiny.param")
    assert {g.shapes[t] for t in g.outputs} == {(255, 13, 13), (255, 26, 26)}
    assert g.shapes["3_49"] == (32, 104, 104)  # Crop: the second half of the channels
    # ... and a wrong annotation is reported with file, line and layer.
    text = (NCNN / "resnet18.param").read_text().replace("pool1 -23330=4,3,56,56,64", "pool1 -23330=4,3,55,56,64")
    with pytest.raises(FormatError) as exc:
        parse_ncnn(text, "resnet18.param")
    msg = str(exc.value)
    assert msg.startswith("resnet18.param:5:") and "'pool1'" in msg and "56x56" in msg


def test_ncnn_split_and_full_padding():
    g = read_ncnn(NCNN / "resnet18.param")
    assert not any(op.kind == "split" for op in g.ops)
    pool = next(op for op in g.ops if op.name == "pool1")
    assert pool.pad == (0, 0, 1, 1) and g.shapes[pool.output] == (64, 56, 56)  # ncnn's "full" (ceil) padding
    add = next(op for op in g.ops if op.name == "res2a")
    assert add.kind == "add" and len(add.inputs) == 2


def _all_shapes(g: Graph) -> dict:
    """Run the torch reference with every tensor as an output: torch's own arithmetic gives the shapes."""
    full = dataclasses.replace(g, outputs=tuple(g.tensors()))
    return {t: a.shape for t, a in run_reference(full, random_weights(g), random_inputs(g)).items()}


@pytest.mark.parametrize("path", bundled_graphs(), ids=lambda p: p.name)
def test_inferred_shapes_agree_with_torch(path):
    fixed = path.name in ("yolov4-tiny.param", "resnet18.param")  # fixed crop sizes and final pool window
    g = read_darknet(path, (64, 64)) if path.suffix == ".cfg" else read_ncnn(path, None if fixed else (64, 64))
    shapes = _all_shapes(g)
    assert all(shapes[t] == g.shapes[t] for t in g.tensors())


# -- Darknet: generated configs ------------------------------------------------------------------------------

@st.composite
def darknet_cfgs(draw):
    """A random valid Darknet config and the layer settings it was written from."""
    h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    lines = ["[net]", f"height={h}", f"width={w}", "channels=3", ""]
    specs = []
    n = draw(st.integers(1, 8))
    for i in range(n):
        kind = draw(st.sampled_from(["conv", "conv", "maxpool", "upsample", "route", "shortcut"]))
        if kind == "conv" or not i:  # the first layer computes something
            size, stride = draw(st.sampled_from([1, 3, 5])), draw(st.integers(1, 2))
            filters = draw(st.integers(1, 8))
            pad = draw(st.integers(0, 1))
            lines += ["[convolutional]", f"filters={filters}", f"size={size}", f"stride={stride}", f"pad={pad}",
                      "activation=leaky", ""]
            specs.append(("conv", size, stride, size // 2 if pad else 0, filters))
        elif kind == "maxpool":
            size, stride = draw(st.integers(2, 3)), draw(st.integers(1, 2))
            lines += ["[maxpool]", f"size={size}", f"stride={stride}", ""]
            specs.append(("maxpool", size, stride, None, None))
        elif kind == "upsample":
            lines += ["[upsample]", "stride=2", ""]
            specs.append(("upsample", None, 2, None, None))
        elif kind == "route":
            lines += ["[route]", "layers=-1", ""]
            specs.append(("route", None, None, None, None))
        else:
            lines += ["[shortcut]", "from=-2", "activation=linear", ""] if i > 1 else ["[dropout]", ""]
            specs.append(("shortcut" if i > 1 else "dropout", None, None, None, None))
    return "\n".join(lines), specs


@settings(max_examples=40, deadline=None)
@given(darknet_cfgs())
def test_generated_darknet_configs_read_back(cfg):
    text, specs = cfg
    try:
        g = parse_darknet(text, "gen.cfg")
    except FormatError as exc:
        # Only a map that shrinks to nothing or a shortcut between different sizes may be refused, and the
        # message says which line and layer.
        msg = str(exc)
        assert ("empty" in msg or "do not match" in msg) and re.search(r"gen\.cfg:\d+: layer '\d+ \[", msg)
        return
    convs = [op for op in g.ops if op.kind == "conv"]
    want = [s for s in specs if s[0] == "conv"]
    assert [(op.kernel[0], op.stride[0], op.pad[0], op.out_channels) for op in convs] == [s[1:] for s in want]
    assert sum(op.kind == "maxpool" for op in g.ops) == sum(s[0] == "maxpool" for s in specs)
    assert all(op.kind != "route" for op in g.ops)  # single-layer routes are reuse, not layers
    shapes = _all_shapes(g)
    assert all(shapes[t] == g.shapes[t] for t in g.tensors())


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_darknet_config_is_refused_cleanly(data):
    """Any damage either still reads as a valid network or is refused with an EngramError (never a crash)."""
    lines = (DARKNET / "yolov3-tiny.cfg").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "garble", "number", "dup"]))
        if action == "drop":
            del lines[i]
        elif action == "garble":
            lines[i] = data.draw(st.text(alphabet="[]=,-#abcxyz019 ", max_size=12))
        elif action == "number" and "=" in lines[i]:
            lines[i] = lines[i].split("=")[0] + "=" + str(data.draw(st.integers(-40, 40)))
        else:
            lines.insert(i, lines[i])
    try:
        g = parse_darknet("\n".join(lines), "bad.cfg")
    except EngramError as exc:
        assert str(exc).startswith("bad.cfg")
        return
    assert isinstance(g, Graph) and g.ops


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_ncnn_param_is_refused_cleanly(data):
    lines = (NCNN / "squeezenet.param").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        toks = lines[i].split()
        action = data.draw(st.sampled_from(["drop", "token", "garble"]))
        if action == "drop":
            del lines[i]
        elif action == "token" and toks:
            j = data.draw(st.integers(0, len(toks) - 1))
            toks[j] = data.draw(st.sampled_from(["0", "7=3", "1=-5", "x", "3=0", "-23330=2,1", "Foo"]))
            lines[i] = " ".join(toks)
        else:
            lines[i] = data.draw(st.text(alphabet="=,-. 0123abc/", max_size=20))
    try:
        g = parse_ncnn("\n".join(lines), "bad.param", input_size=None)
    except EngramError as exc:
        assert str(exc).startswith("bad.param")
        return
    assert isinstance(g, Graph) and g.ops


# -- bad input: one clear error naming file, line and layer ------------------------------------------------

NET = "[net]\nheight=32\nwidth=32\nchannels=3\n"
CONV = "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"


@pytest.mark.parametrize("text,where,needle", [
    ("filters=3\n[net]\n", "x.cfg:1", "before any [section]"),
    ("[convolutional]\nfilters=3\n", "x.cfg:1", "first section must be [net]"),
    (NET + "[convolutional\n", "x.cfg:5", "malformed section header"),
    (NET + "[convolutional]\nfilters three\n", "x.cfg:6", "expected 'key=value'"),
    (NET + "[convolutional]\nfilters=abc\n", "x.cfg:6: filters", "is not an integer"),
    (NET + CONV + "[reorg3d]\nstride=2\n", "x.cfg:11", "unsupported layer type [reorg3d]"),
    (NET + CONV + "[route]\nlayers=-4\n", "x.cfg:12: layers", "refers to layer -3"),
    (NET + CONV + "[route]\nlayers=7\n", "x.cfg:12: layers", "refers to layer 7"),
    (NET + CONV + "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=0,1\n", "x.cfg:14", "cannot concatenate"),
    (NET + CONV + "[maxpool]\nsize=2\nstride=2\n[shortcut]\nfrom=-2\n", "x.cfg:14", "shapes do not match"),
    (NET + CONV + "[yolo]\nmask=0,1,2\nclasses=80\n", "x.cfg:11", "need 255"),
    (NET + "[convolutional]\nfilters=4\nactivation=gelu\n", "x.cfg:7: activation", "unsupported activation"),
    (NET + "[convolutional]\nfilters=4\nsize=41\nstride=1\n", "x.cfg:5", "output would be empty"),
    ("", "x.cfg", "no sections found"),
])
def test_bad_darknet_config(text, where, needle):
    with pytest.raises(FormatError) as exc:
        parse_darknet(text, "x.cfg")
    msg = str(exc.value)
    assert msg.startswith(where) and needle in msg and "\n" not in msg


HEAD = "7767517\n3 3\nInput data 0 1 data 0=8 1=8 2=3\n"


@pytest.mark.parametrize("text,where,needle", [
    ("7767518\n1 1\n", "x.param:1", "not an ncnn .param"),
    ("7767517\nthree blobs\n", "x.param:2", "layer count"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3\n", "x.param:2", "declares 3 layers, the file has 2"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3\nFancyOp f 1 1 c1 f\n", "x.param:5", "'f': unsupported layer type 'FancyOp'"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3\nReLU r 1 1 nowhere r\n", "x.param:5", "'r': reads blob 'nowhere'"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3\nReLU r 1 1 c1 r 0=abc\n", "x.param:5: 0", "malformed parameter"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3\nEltwise e 2 1 data c1 e 0=1\n", "x.param:5", "shapes do not match"),
    (HEAD + "Convolution c1 1 1 data c1 0=4 1=3 -23330=4,3,8,8,4\nReLU r 1 1 c1 r\n", "x.param:4: -23330",
     "shapes do not chain"),
])
def test_bad_ncnn_param(text, where, needle):
    with pytest.raises(FormatError) as exc:
        parse_ncnn(text, "x.param")
    msg = str(exc.value)
    assert msg.startswith(where) and needle in msg and "\n" not in msg


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot read"):
        read_darknet(tmp_path / "nope.cfg")
    with pytest.raises(FormatError, match="cannot read"):
        read_ncnn(tmp_path / "nope.param")


# -- torch models through torch.export ---------------------------------------------------------------------

@pytest.mark.parametrize("name,size", [("reference", 32), ("mobilenetv2", 32), ("resnet18", 32)])
def test_zoo_graph_computes_what_the_model_computes(name, size):
    from kernels.zoo import build_model

    torch.manual_seed(0)
    model = build_model(name, input_size=size)
    g, w = graph_from_blockwise(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # Batch norm folded and activations fused: one operator per convolution, no stray affine layers.
    assert sum(op.kind == "conv" for op in g.ops) == len(convs)
    assert not any(op.kind in ("affine", "act") for op in g.ops)
    x = random_inputs(g)
    ours = run_reference(g, w, x)[g.outputs[0]].reshape(-1)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x[g.inputs[0]]).unsqueeze(0)).numpy().reshape(-1)
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


def test_reference_model_has_squeeze_excitation_broadcasts():
    from kernels.zoo import build_model

    g, _ = graph_from_blockwise(build_model("reference", input_size=32))
    muls = [op for op in g.ops if op.kind == "mul"]
    assert muls and all(g.shapes[op.inputs[1]][1:] == (1, 1) for op in muls)


def test_unsupported_torch_op_is_named():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.flip(x, dims=[2])

    with pytest.raises(EngramError, match="unsupported torch operation aten.flip"):
        graph_from_module(Odd(), (3, 8, 8), "odd")


def test_custom_module_with_concat_ceil_pool_upsample_and_head():
    """Any torch module made of supported layers works, not only the zoo's: fusion, views and ceil-mode pooling."""
    from kernels.memplan.evaluate import plan_activation_memory
    from kernels.memplan.execute import compare, execute_plan

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.fc = nn.Linear(16 * 4 * 4, 5)

        def forward(self, x):
            a = torch.relu(self.bn(self.c1(x)))
            b = nn.functional.silu(self.c2(a))
            c = nn.functional.interpolate(self.pool(torch.cat([a, b], 1)), scale_factor=2, mode="nearest")
            return self.fc(torch.flatten(nn.functional.avg_pool2d(c, 4), 1))

    torch.manual_seed(1)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    g, w = graph_from_module(net, (3, 15, 15), "net")
    assert [op.kind for op in g.ops] == ["conv", "conv", "concat", "maxpool", "upsample", "avgpool", "fc"]
    assert g.ops[0].acts == ("relu",) and g.ops[1].acts == ("silu",)
    assert g.shapes[g.ops[3].output] == (16, 8, 8)  # ceil mode: 15 -> 8
    x = random_inputs(g)[g.inputs[0]]
    with torch.no_grad():
        want = net(torch.from_numpy(x)[None]).numpy()
    res = execute_plan(g, plan_activation_memory(g).plans["overlap"], w, {g.inputs[0]: x})
    assert res.clean and compare(res.outputs, {g.outputs[0]: want})[0]
