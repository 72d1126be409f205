"""``run_sim.py memplan`` as a user meets it."""

import json

import pytest

from conftest import run_cli


def test_help():
    r = run_cli("memplan", "--help")
    assert r.returncode == 0, r.stderr
    for word in ("GRAPH", "--input-size", "--json", "pingpong_bytes", "tvm_bytes"):
        assert word in r.stdout


def test_json_report_for_a_bundled_darknet_graph(tmp_path):
    out = tmp_path / "report.json"
    r = run_cli("memplan", "yolov3-tiny.cfg", "--input-size", "64x64", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert json.loads(out.read_text()) == data
    assert data["input_shape"] == [3, 64, 64] and data["graph"] == "yolov3-tiny"
    assert data["verified"] is True
    assert all(data["verification"][p]["verified"] for p in ("pingpong", "greedy", "wraparound", "overlap"))
    assert data["lower_bound_bytes"] <= data["overlap_bytes"] < data["greedy_bytes"] <= data["pingpong_bytes"]
    assert data["overlap_bytes"] <= 1.01 * data["lower_bound_bytes"]
    saving = 1 - data["overlap_bytes"] / data["pingpong_bytes"]
    assert data["saving_vs_pingpong"]["overlap"] == pytest.approx(saving, abs=1e-6)
    assert "tvm_bytes" not in data  # only zoo models go through TVM


def test_table_output():
    r = run_cli("memplan", "resnet18.param", "--no-verify")
    assert r.returncode == 0, r.stderr
    for word in ("ping-pong", "greedy", "N2D2 wrap-around", "overlap (ours)", "lower bound", "skipped"):
        assert word in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_zoo_model_report_includes_tvm():
    r = run_cli("memplan", "resnet18", "--input-size", "64x64", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["kind"] == "zoo" and data["verified"] is True
    # TVM's plan, measured: it holds whole buffers, so it cannot beat the overlap plan.
    assert data["tvm_bytes"] > data["overlap_bytes"]
    assert data["tvm_bytes"] == data["tvm_planned_bytes"] + 3 * 64 * 64 * 4


@pytest.mark.parametrize("args,needle", [
    (["memplan", "vgg99"], "unknown graph 'vgg99'"),
    (["memplan", "missing.cfg"], "file not found: missing.cfg"),
    (["memplan", "tiny.cfg", "--input-size", "64"], "HxW"),
])
def test_bad_arguments_give_one_clear_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "error" in lines[0] and needle in lines[0]


def test_bad_files_name_file_line_and_layer(tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text("[net]\nheight=32\nwidth=32\nchannels=3\n[convolutional]\nfilters=8\nsize=3\npad=1\n"
                   "[route]\nlayers=-5\n")
    r = run_cli("memplan", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{cfg}:10: layers: layer 1 [route]: layers refers to layer -4" in r.stderr
    param = tmp_path / "net.param"
    param.write_text("7767517\n2 2\nInput data 0 1 data 0=8 1=8 2=3\nWarp w 1 1 data out\n")
    r = run_cli("memplan", str(param))
    assert r.returncode == 2 and f"{param}:4: layer 'w': unsupported layer type 'Warp'" in r.stderr
    other = tmp_path / "net.onnx"
    other.write_text("x")
    r = run_cli("memplan", str(other))
    assert r.returncode == 2 and "unknown graph format '.onnx'" in r.stderr


def test_input_size_parsing():
    from engram.errors import EngramError
    from kernels.memplan.load import parse_size

    assert parse_size("416x320") == (416, 320) and parse_size(None) is None
    for bad in ("64", "0x64", "ax4", "4x4x4"):
        with pytest.raises(EngramError):
            parse_size(bad)
