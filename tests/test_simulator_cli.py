"""`run_sim.py simulate` and `run_sim.py compare` as a user meets them: JSON metrics, a comparison table, and one
clear line (exit status 2, no traceback) for every input that does not fit."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from engram.cli import main
from simulator.presets import PRESETS
from simulator_helpers import PROFILE, write_small_traces

METRIC_KEYS = {"frames", "mean_latency_ms", "p99_latency_ms", "speedup", "accuracy", "accuracy_loss_pt", "oracle_share",
               "energy_mj_per_frame", "cache_bytes", "dropped"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_small_traces(tmp_path_factory.mktemp("sim-cli"))


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _args(small, *more: str) -> list[str]:
    trace, calib = small
    return ["--profile", str(PROFILE), "--trace", str(trace), "--calibration", str(calib), *more]


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_help_lists_the_options(capsys):
    for cmd in ("simulate", "compare"):
        rc, out, _ = _run(capsys, cmd, "--help")
        assert rc == 0 and "--profile" in out and "--trace" in out and "--calibration" in out and "--out" in out
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0 and "simulate" in out and "compare" in out


@pytest.fixture(scope="module")
def smtm_json(small):
    import contextlib
    import io

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["simulate", *_args(small, "--policy", "smtm", "--json")])
    return rc, buf.getvalue(), err.getvalue()


def test_simulate_json_prints_one_object_with_the_metrics(smtm_json):
    rc, out, err = smtm_json
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    m = _strict_json(lines[0])
    assert isinstance(m, dict) and METRIC_KEYS <= set(m)
    assert m["frames"] == 271 + 266 and m["dropped"] == 0  # two videos, processed in real time
    assert m["policy"] == "smtm" and m["kind"] == "smtm"
    assert m["speedup"] > 1.0 and 0.0 < m["oracle_share"] <= 1.0
    assert 0.0 < m["accuracy"] <= 1.0 and abs(m["accuracy_loss_pt"]) < 10.0
    assert 0 < m["cache_bytes"] and m["mean_latency_ms"] <= m["p99_latency_ms"] and m["energy_mj_per_frame"] > 0


def test_simulate_is_deterministic(capsys, small, smtm_json):
    rc, out, _ = _run(capsys, "simulate", *_args(small, "--policy", "smtm", "--json"))
    assert rc == 0 and out == smtm_json[1]


def test_simulate_runs_a_policy_file(capsys, small, tmp_path):
    pol = tmp_path / "mine.json"
    pol.write_text(json.dumps({"name": "mine", "kind": "smtm", "cache": {"hot_size": 2, "cold_size": 0},
                               "metric": {"kind": "cosine", "thresholds": {"b5": 0.95, "b7": 0.95}},
                               "exits": ["b7", "b5"]}))
    rc, out, err = _run(capsys, "simulate", *_args(small, "--policy", str(pol), "--json"))
    assert rc == 0, err
    m = _strict_json(out)
    assert m["policy"] == "mine" and set(m["exit_histogram"]) == {"b5", "b7", "full"}
    assert m["cache_bytes"] == 2 * (2 * 32 * 2 + 16)  # 2 classes x 2 exits x 32 dims, float16, + 16 each


def test_simulate_summary_is_readable(capsys, small):
    rc, out, err = _run(capsys, "simulate", *_args(small, "--policy", "no-cache"))
    assert rc == 0, err
    assert "policy no-cache (no-cache) on 537 frames (0 dropped)" in out
    assert "speed-up  1.00x" in out and "loss +0.00 pt" in out


def test_compare_prints_a_table_with_every_preset(capsys, small):
    rc, out, err = _run(capsys, "compare", *_args(small))
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("537 frames of small.parquet")
    header = lines[1].split()
    assert header[0] == "policy" and "speed-up" in header and "dropped" in header
    assert set(lines[2].replace(" ", "")) == {"-"}
    rows = {ln.split()[0]: ln.split() for ln in lines[3:]}
    assert list(rows) == list(PRESETS)
    assert rows["no-cache"][1] == "1.00x" and rows["no-cache"][5] == "+0.00"
    assert float(rows["oracle"][1].rstrip("x")) >= max(float(r[1].rstrip("x")) for r in rows.values())


# ---------------------------------------------------------------------------------------------- errors


def _one_error_line(rc: int, err: str) -> str:
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error" in lines[0]
    return lines[0]


@pytest.mark.parametrize("policy,field,needle", [
    ({"name": "x", "kind": "smtm", "cache": {"hot_size": -1}, "metric": {}}, "cache.hot_size", "greater than or equal"),
    ({"name": "x", "kind": "smtm", "cache": {}, "metric": {}, "speed": "max"}, "speed", "Extra inputs"),
    ({"name": "x", "kind": "smtm", "cache": {}, "metric": {"thresholds": {"b1": "high"}}}, "metric.thresholds.b1", "number"),
    ({"name": "x", "kind": "branchy", "branchy": {"thresholds": {"b1": 1.0}}, "exits": ["b1", "b2"]}, "exits",
     "exit point 'b2' is not one of the model's"),
    ({"name": "x", "kind": "no-cache", "processor": "npu"}, "processor", "'npu' is not in the profile"),
])
def test_bad_policy_file_is_one_line_naming_file_and_field(capsys, small, tmp_path, policy, field, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(policy))
    rc, out, err = _run(capsys, "simulate", *_args(small, "--policy", str(path)))
    line = _one_error_line(rc, err)
    assert f"{path}: {field}: " in line and needle in line
    assert out == ""


def test_unknown_policy_name_is_a_usage_error(capsys, small):
    line = _one_error_line(*_run(capsys, "simulate", *_args(small, "--policy", "fastest"))[::2])
    assert "'fastest' is neither a preset" in line and "--policy" in line


def test_missing_trace_is_one_line(capsys, small, tmp_path):
    missing = tmp_path / "none.parquet"
    rc, _, err = _run(capsys, "simulate", "--profile", str(PROFILE), "--trace", str(missing),
                      "--calibration", str(small[1]))
    line = _one_error_line(rc, err)
    assert str(missing) in line and "file not found" in line


def test_profile_of_another_model_is_one_line(capsys, small, tmp_path):
    doc = json.loads(PROFILE.read_text())
    doc["model"]["fingerprint"]["weights"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    trace, calib = small
    for cmd in ("simulate", "compare"):
        rc, _, err = _run(capsys, cmd, "--profile", str(other), "--trace", str(trace), "--calibration", str(calib))
        line = _one_error_line(rc, err)
        assert "another model than the profile's" in line and "model.fingerprint.weights" in line and str(trace) in line


def test_calibrating_on_the_replayed_trace_is_refused(capsys, small):
    trace, _ = small
    rc, _, err = _run(capsys, "simulate", "--profile", str(PROFILE), "--trace", str(trace), "--calibration", str(trace))
    assert "must not be the trace being replayed" in _one_error_line(rc, err)


def test_a_real_process_prints_one_line_and_exits_2(small, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x", "kind": "smtm", "cache": {"cold_size": -3}, "metric": {}}')
    r = run_cli("simulate", *_args(small, "--policy", str(path)), timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"run_sim.py: error: {path}: cache.cold_size: "
                                             "Input should be greater than or equal to 0"]
