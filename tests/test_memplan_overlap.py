"""The per-layer overlap model: the brief's formula, and that the minimum offset is exactly tight when run."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.memplan.execute import compare, execute_plan
from kernels.memplan.graph import GraphBuilder, Op
from kernels.memplan.overlap import ASC, DESC, pair_footprint, pair_geometry
from kernels.memplan.plan import Placement, Plan
from kernels.memplan.reference import run_reference
from kernels.memplan.weights import random_inputs, random_weights


def one_layer(shape, op):
    b = GraphBuilder("one")
    b.add_input("x", shape)
    b.add(op)
    return b.build()


def brief_formula(k, s, p, h_in, r_in, h_out, r_out):
    """The brief: D >= max over y of ((y+1)*R_out - max(0, y*s-p)*R_in)."""
    return max((y + 1) * r_out - max(0, y * s - p) * r_in for y in range(h_out))


@pytest.mark.parametrize("cin,cout,h,k,s,p", [
    (3, 16, 416, 3, 1, 1),   # tiny-YOLO's first convolution
    (16, 16, 416, 2, 2, 0),  # and its first max-pool (as a 2x2 window)
    (64, 64, 56, 3, 1, 1),   # equal-width layer (DnCNN, ResNet)
    (16, 96, 112, 1, 1, 0),  # MobileNetV2 expansion
    (32, 64, 104, 3, 2, 1),  # strided downsampling
    (3, 64, 224, 7, 2, 3),   # ResNet stem
])
def test_ascending_offset_is_the_brief_formula(cin, cout, h, k, s, p):
    kind = "maxpool" if cin == cout and k == 2 else "conv"
    w = h
    op = Op("L", kind, ("x",), "y", out_channels=cout if kind == "conv" else 0, kernel=(k, k), stride=(s, s),
            pad=(p, p, p, p))
    g = one_layer((cin, h, w), op)
    geo = pair_geometry(g, g.ops[0], 0)
    c_out, h_out, w_out = g.shapes["y"]
    want = brief_formula(k, s, p, h, g.row_bytes("x"), h_out, g.row_bytes("y"))
    assert geo.d_asc == want
    # The pair then needs max(D + H_in*R_in, H_out*R_out), far less than both buffers side by side.
    assert pair_footprint(g, g.ops[0], 0) <= max(want + g.nbytes("x"), g.nbytes("y"))
    assert pair_footprint(g, g.ops[0], 0) < g.nbytes("x") + g.nbytes("y")


def test_equal_width_3x3_layer_needs_two_rows_more_than_one_tensor():
    g = one_layer((64, 32, 32), Op("L", "conv", ("x",), "y", out_channels=64, kernel=(3, 3), pad=(1, 1, 1, 1)))
    r = g.row_bytes("x")
    geo = pair_geometry(g, g.ops[0], 0)
    assert geo.d_asc == geo.d_desc == 2 * r
    assert pair_footprint(g, g.ops[0], 0) == g.nbytes("x") + 2 * r


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_whole_input_layers_get_no_overlap(kind):
    g = one_layer((8, 6, 5), Op("L", kind, ("x",), "y", out_channels=10 if kind == "fc" else 0))
    assert pair_footprint(g, g.ops[0], 0) == g.nbytes("x") + g.nbytes("y")


def _run(g, mode, d, data):
    """Execute the one-layer graph with the output ``d`` bytes before (ASC) / after (DESC) the input."""
    u, v = "x", g.ops[0].output
    su, sv = g.nbytes(u), g.nbytes(v)
    pu = 2 * (su + sv)
    pv = pu - d if mode == ASC else pu + su + d - sv
    plan = Plan("probe", 4 * (su + sv), {u: Placement(pu), v: Placement(pv)}, {g.ops[0].name: mode})
    w, x, ref = data
    res = execute_plan(g, plan, w, x)
    ok, _ = compare(res.outputs, ref)
    return ok and res.clean


@st.composite
def layers(draw):
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "upsample", "deconv", "slice", "act"]))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k - 1))
    if kind == "conv":
        op = Op("L", "conv", ("x",), "y", out_channels=draw(st.integers(1, 4)), kernel=(k, 1), stride=(s, 1),
                pad=(p, 0, draw(st.integers(0, k - 1)), 0), dilation=(draw(st.integers(1, 2)), 1))
    elif kind in ("maxpool", "avgpool"):
        k = max(k, 2)
        op = Op("L", kind, ("x",), "y", kernel=(k, 1), stride=(s, 1), pad=(min(p, k - 1), 0, 0, 0))
    elif kind == "upsample":
        op = Op("L", "upsample", ("x",), "y", attrs={"scale": (draw(st.integers(2, 3)), 1)})
    elif kind == "deconv":
        op = Op("L", "deconv", ("x",), "y", out_channels=draw(st.integers(1, 3)), kernel=(k, 1), stride=(s, 1),
                pad=(p, 0, 0, 0))
    elif kind == "slice":
        oh = draw(st.integers(0, h - 1))
        op = Op("L", "slice", ("x",), "y", attrs={"offset": (0, oh, 0), "size": (c, draw(st.integers(1, h - oh)), w)})
    else:
        op = Op("L", "act", ("x",), "y", acts=("relu",))
    try:
        return one_layer((c, h, w), op)
    except Exception:  # e.g. a window larger than the padded input: not a layer
        from hypothesis import assume

        assume(False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(), st.sampled_from([ASC, DESC]))
def test_minimum_offset_is_safe_and_one_element_less_is_not(g, mode):
    """Running the layer in an arena proves the formula: at the computed offset the result is right; one
    element closer, the output overwrites an input row still needed (the in-place point 0 aside)."""
    w = random_weights(g)
    x = random_inputs(g)
    data = (w, x, run_reference(g, w, x))
    geo = pair_geometry(g, g.ops[0], 0)
    d = geo.d_asc if mode == ASC else geo.d_desc
    assert _run(g, mode, d, data)
    assert _run(g, mode, d + 2 * g.elem_bytes, data)
    if not (geo.alias and d - g.elem_bytes == 0):
        assert not _run(g, mode, d - g.elem_bytes, data)


def test_elementwise_layer_runs_in_place():
    g = one_layer((4, 6, 5), Op("L", "act", ("x",), "y", acts=("relu",)))
    geo = pair_geometry(g, g.ops[0], 0)
    assert geo.alias and geo.d_asc == g.row_bytes("x")
    w, x = random_weights(g), random_inputs(g)
    data = (w, x, run_reference(g, w, x))
    assert _run(g, ASC, 0, data)  # exactly in place
    assert not _run(g, ASC, g.elem_bytes, data)  # shifted by one element: a row-level overlap, caught


def test_pool_output_is_correct_in_numbers():
    """The row kernels compute what torch computes (not just shapes): max and average pooling with padding."""
    for kind, count_pad in (("maxpool", False), ("avgpool", True), ("avgpool", False)):
        g = one_layer((2, 7, 6), Op("L", kind, ("x",), "y", kernel=(3, 3), stride=(2, 2), pad=(1, 1, 2, 1),
                                    attrs={"count_pad": count_pad}))
        x = random_inputs(g)
        ref = run_reference(g, {}, x)
        plan = Plan("flat", g.nbytes("x") + g.nbytes("y"), {"x": Placement(0), "y": Placement(g.nbytes("x"))})
        res = execute_plan(g, plan, {}, x)
        assert res.clean and np.allclose(res.outputs["y"], ref["y"], atol=1e-6)
