"""`run_sim.py sweep`: the search space decodes to valid policies, the search is deterministic whatever the
number of workers, it resumes after an interruption exactly where it stopped, constraints hold, the held-out
videos are reported, and Ray gives the same answer as local workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from engram.cli import main
from simulator.presets import preset
from simulator_helpers import PROFILE, shipped_device, shipped_workload, write_small_traces


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_small_traces(tmp_path_factory.mktemp("sweep"))


# The small trace tunes on one video, where the default preset alone loses 1.8 points: a looser limit than the
# default 1 point leaves the short test sweeps feasible trials to choose from.
MAX_LOSS = 2.0


def _sweep(capsys, small, out, *more: str) -> tuple[int, dict | None, str]:
    trace, calib = small
    rc = main(["sweep", "--profile", str(PROFILE), "--trace", str(trace), "--calibration", str(calib), "--out", str(out),
               "--no-progress", "--max-loss", str(MAX_LOSS), *more])
    cap = capsys.readouterr()
    result = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else None
    return rc, result, cap.out + cap.err


def _trials(result: dict) -> list[tuple]:
    return [(t["number"], json.dumps(t["params"], sort_keys=True), json.dumps(t["metrics"], sort_keys=True))
            for t in result["trials"]]


def test_the_preset_is_a_point_of_the_space_and_every_point_is_a_valid_policy():
    import optuna

    from simulator.policy import check_policy, parse_policy
    from simulator.sweep_space import INPUT_START, TEMPORAL_STARTS, decode, input_similarity, preset_params, start_params, suggest

    dev = shipped_device()
    p = decode(preset_params(dev.exits), dev.exits)
    want = preset("smtm", dev.exits)
    assert p.cache == want.cache and p.adaptation == want.adaptation and p.exits == list(dev.exits)
    assert p.metric.kind == "calibrated" and p.metric.thresholds == pytest.approx(want.metric.thresholds)
    starts = [decode(q, dev.exits) for q in start_params(dev.exits)]
    assert starts[0] == p and p.input_reuse is None
    assert [q.metric.kind for q in starts[1:]] == ["temporal"] * (len(TEMPORAL_STARTS) + 1)
    for q, prob in zip(starts[1:], TEMPORAL_STARTS):
        assert q.cache == want.cache and q.metric.thresholds == pytest.approx({e: prob for e in dev.exits})
        assert q.input_reuse is None
    level = starts[-1].input_reuse  # the first temporal start with the input level
    assert starts[-1].metric == starts[1].metric and (level.similarity, level.max_run) == pytest.approx(INPUT_START)
    assert (input_similarity(0.0), input_similarity(1.0)) == pytest.approx((0.8, 1 - 0.2 * 10 ** -1.6))

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    levels = []
    for _ in range(60):
        t = study.ask()
        pol = decode(suggest(t, dev.exits), dev.exits)
        assert check_policy(pol, dev.exits, tuple(dev.processors))
        assert parse_policy(pol.to_json()) == pol  # it survives its own file format
        levels.append(pol.input_reuse is not None)
        study.tell(t, 0.0)
    assert any(levels) and not all(levels)
    # A point stored before the input level existed (space version 2) decodes without one.
    old = {k: v for k, v in preset_params(dev.exits).items() if not k.startswith("input_")}
    assert decode(old, dev.exits) == p


@pytest.fixture(scope="module")
def one_worker(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-w1")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as buf, contextlib.redirect_stderr(io.StringIO()):
        trace, calib = small
        rc = main(["sweep", "--profile", str(PROFILE), "--trace", str(trace), "--calibration", str(calib), "--out",
                   str(out), "--no-progress", "--max-loss", str(MAX_LOSS), "--trials", "8", "--batch", "4", "--workers", "1"])
    assert rc == 0
    return out, json.loads((out / "sweep.json").read_text()), buf.getvalue()


def test_sweep_reports_the_chosen_policy_on_held_out_videos(one_worker):
    out, result, text = one_worker
    assert result["summary"]["trials"] == 8
    tune, held = result["split"]["tuning"], result["split"]["heldout"]
    assert tune and held and not set(tune) & set(held)
    chosen = result["chosen"]
    assert chosen is not None and chosen["trial"] == result["summary"]["chosen_trial"]
    # The chosen trial is the fastest feasible one whose loss bound is within the limit (else the fastest feasible).
    feasible = [t for t in result["trials"] if all(c <= 0 for c in t["metrics"]["constraints"])]
    for t in result["trials"]:
        m = t["metrics"]
        assert m["accuracy_loss_se_pt"] >= 0
        assert m["accuracy_loss_bound_pt"] == pytest.approx(m["accuracy_loss_pt"] + 1.645 * m["accuracy_loss_se_pt"])
    safe = [t for t in feasible if t["metrics"]["accuracy_loss_bound_pt"] <= MAX_LOSS]
    assert chosen["tuning"]["accuracy_loss_pt"] <= MAX_LOSS
    assert chosen["tuning"]["mean_latency_ms"] == min(t["metrics"]["mean_latency_ms"] for t in (safe or feasible))
    assert result["summary"]["chosen_by"] == ("loss bound" if safe else
                                              "fastest feasible (no trial's loss bound is within the limit)")
    # Replayed on the held-out videos, with every preset beside it.
    names = [m["policy"] for m in result["heldout"]]
    assert names[0].startswith("tuned") and {"no-cache", "smtm", "oracle", "foggycache"} <= set(names)
    # Beside it, the oracle of its own cache and input level, which its oracle share is of.
    assert names[1] == "oracle (tuned's cache)"
    own = result["heldout"][1]
    assert chosen["heldout"]["oracle_speedup"] == pytest.approx(own["speedup"]) and own["accuracy_loss_pt"] == 0.0
    assert chosen["heldout"]["oracle_share"] == pytest.approx(chosen["heldout"]["speedup"] / own["speedup"])
    assert result["heldout"][0]["frames"] == result["summary"]["heldout_frames"]
    assert json.loads((out / "chosen_policy.json").read_text())["kind"] == "smtm"
    page = (out / "pareto.html").read_text()
    assert "Pareto front" in page and "chosen (trial" in page
    assert "chosen: trial" in text and "held-out videos" in text
    # The first trials are the default preset, then the same cache with the temporal metric, then with the input level.
    first = [t["params"] for t in result["trials"][:4]]
    assert first[0]["metric"] == "calibrated" and first[0]["hot_size"] == 4
    assert first[1]["metric"] == "temporal" and first[1]["hot_size"] == 4
    assert [p["input_level"] for p in first] == [False, False, False, True]


@pytest.mark.slow
def test_same_results_whatever_the_number_of_workers(capsys, small, tmp_path, one_worker):
    rc, result, _ = _sweep(capsys, small, tmp_path / "w2", "--trials", "8", "--batch", "4", "--workers", "2")
    assert rc == 0
    assert _trials(result) == _trials(one_worker[1])
    assert result["chosen"]["trial"] == one_worker[1]["chosen"]["trial"]


def test_an_interrupted_sweep_resumes_exactly(capsys, small, tmp_path, one_worker, monkeypatch):
    """Kill the sweep while the second generation is being evaluated; starting it again gives the trials an
    uninterrupted sweep gives."""
    import simulator.sweep as sw

    calls = {"n": 0}
    real = sw.LocalPool.map

    def dying_map(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(sw.LocalPool, "map", dying_map)
    out = tmp_path / "resume"
    rc, _, text = _sweep(capsys, small, out, "--trials", "8", "--batch", "4", "--workers", "1")
    assert rc == 130 and "run the same command again to resume" in text
    monkeypatch.setattr(sw.LocalPool, "map", real)
    assert (out / "study.journal").exists() and not (out / "sweep.json").exists()
    rc, result, _ = _sweep(capsys, small, out, "--trials", "8", "--batch", "4", "--workers", "1")
    assert rc == 0
    assert _trials(result) == _trials(one_worker[1])


def test_a_sweep_can_be_extended(capsys, small, tmp_path, one_worker):
    out = tmp_path / "extend"
    assert _sweep(capsys, small, out, "--trials", "4", "--batch", "4", "--workers", "1")[0] == 0
    rc, result, _ = _sweep(capsys, small, out, "--trials", "8", "--batch", "4", "--workers", "1")
    assert rc == 0 and _trials(result) == _trials(one_worker[1])


def test_other_settings_in_the_same_folder_are_refused(capsys, small, tmp_path):
    out = tmp_path / "mixed"
    assert _sweep(capsys, small, out, "--trials", "2", "--batch", "2", "--workers", "1")[0] == 0
    rc, _, text = _sweep(capsys, small, out, "--trials", "2", "--batch", "2", "--workers", "1", "--max-loss", "0.5")
    assert rc == 2 and "study.journal" in text and "other settings" in text and "Traceback" not in text
    rc, result, _ = _sweep(capsys, small, out, "--trials", "2", "--batch", "2", "--workers", "1", "--max-loss", "0.5",
                           "--restart")
    assert rc == 0 and result["settings"]["max_loss"] == 0.5


def test_impossible_constraints_choose_nothing(capsys, small, tmp_path):
    rc, result, text = _sweep(capsys, small, tmp_path / "none", "--trials", "2", "--batch", "2", "--workers", "1",
                              "--deadline-ms", "0.001")
    assert rc == 0 and result["chosen"] is None and "no trial met the constraints" in text
    assert all(t["metrics"]["constraints"][2] > 0 for t in result["trials"])


def test_memory_budget_is_a_constraint(capsys, small, tmp_path):
    rc, result, _ = _sweep(capsys, small, tmp_path / "mem", "--trials", "4", "--batch", "4", "--workers", "1",
                           "--memory-budget", "1KiB")
    assert rc == 0 and result["settings"]["memory_budget"] == 1024
    assert result["chosen"] is None  # the model alone needs more than 1 KiB
    rc, _, text = _sweep(capsys, small, tmp_path / "mem2", "--memory-budget", "lots")
    assert rc == 2 and "--memory-budget" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_gives_the_same_sweep_as_local_workers(capsys, small, tmp_path, one_worker):
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    if not os.path.exists(ray_bin):
        pytest.skip("the ray command is not installed")
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    import tempfile

    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                            "--temp-dir", str(tmp)], capture_output=True, text=True, timeout=180, env=env)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        rc, result, text = _sweep(capsys, small, tmp_path / "ray-out", "--trials", "8", "--batch", "4",
                                  "--ray", f"127.0.0.1:{port}")
        assert rc == 0, text
        assert _trials(result) == _trials(one_worker[1])
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=env)
        time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)


def _record(number: int, ms: float, loss: float, bound: float | None, feasible: bool = True):
    m = {"mean_latency_ms": ms, "accuracy_loss_pt": loss, "active_energy_mj_per_frame": 1.0,
         "constraints": [loss - 1.0 if feasible else 1.0, 0.0, 0.0]}
    if bound is not None:
        m["accuracy_loss_bound_pt"] = bound
    return number, {}, m


def test_choice_prefers_a_loss_bound_within_the_limit():
    from simulator.sweep import choose

    fast_risky = _record(0, 0.30, 0.4, 2.9)  # feasible, but its loss is uncertain across videos
    slower_safe = _record(1, 0.33, -0.1, 0.9)
    slowest = _record(2, 0.50, 0.0, 0.2)
    infeasible = _record(3, 0.10, 3.0, 3.5, feasible=False)
    assert choose([fast_risky, slower_safe, slowest, infeasible], 1.0)[0] == 1
    # No bound within the limit: the fastest feasible trial.
    assert choose([fast_risky, _record(4, 0.4, 0.5, 1.7)], 1.0)[0] == 0
    # Trials stored before the bound existed: their loss stands in for it.
    assert choose([_record(5, 0.3, 0.8, None), _record(6, 0.2, 1.5, None, feasible=False)], 1.0)[0] == 5
    assert choose([infeasible], 1.0) is None


def test_loss_standard_error_counts_videos_not_frames():
    from simulator.sweep import loss_standard_error

    w = shipped_workload()
    # The model's own answers: no loss on any video, so no spread.
    assert loss_standard_error(w, w.prediction.copy()) == 0.0
    # Wrong on every frame of one video only: a spread across videos, the larger the more frames it holds.
    vids, counts = np.unique(w.video, return_counts=True)
    small, big = vids[np.argmin(counts)], vids[np.argmax(counts)]
    se = {}
    for v in (small, big):
        ans = w.prediction.copy()
        ans[w.video == v] = (w.true_class[w.video == v] + 1) % w.num_classes
        se[v] = loss_standard_error(w, ans)
    assert 0 < se[small] < se[big]
    one = w.select_videos([w.video_names[int(big)]])
    assert loss_standard_error(one, (one.true_class + 1) % one.num_classes) == 0.0  # a single video: no estimate

