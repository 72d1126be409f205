"""A stored sweep is resumed only by code that scores its trials the same way: the trials in
tests/fixtures/sweep_evaluation.json were evaluated by ``EVALUATION_VERSION``; re-evaluated now they must give the
same metrics, or the version must move (and the fixture with it: ``ENGRAM_WRITE_SWEEP_FIXTURE=1`` rewrites it,
and only for a new version).

The inputs are pinned: the profile is a frozen copy (tests/fixtures/sweep_evaluation_profile.json, this machine's
profile of 2026-11-22 01:24), so that re-measuring the shipped one does not look like a change of the simulator (a
new profile is another study anyway: its hash is in the study key); the shipped traces' hashes are checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engram.fingerprint import sha256_file
from simulator.sweep import EVALUATION_VERSION, Context, SweepSettings, evaluate
from simulator.sweep_space import start_params
from simulator_helpers import CALIBRATION, TRACE, shipped_calibration, shipped_workload

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_evaluation.json"
PROFILE = Path(__file__).parent / "fixtures" / "sweep_evaluation_profile.json"
KEYS = ("mean_latency_ms", "accuracy", "accuracy_loss_pt", "accuracy_loss_bound_pt", "active_energy_mj_per_frame",
        "cache_bytes")


def _evaluate_all(points: list[dict] | None = None) -> list[dict]:
    """The metrics of the given points of the space (default: the search's start points)."""
    from profiles.format import read_profile
    from simulator.device import from_profile

    dev = from_profile(read_profile(PROFILE))
    ctx = Context(dev, shipped_workload(), shipped_calibration(), SweepSettings())
    out = []
    for params in points if points is not None else start_params(dev.exits):
        m = evaluate(ctx, params)
        out.append({"params": params, "metrics": {k: m[k] for k in KEYS}})
    return out


def test_stored_trials_score_the_same_as_their_evaluation_version_says():
    stored = json.loads(FIXTURE.read_text())
    traces = {"trace": sha256_file(TRACE), "calibration": sha256_file(CALIBRATION)}
    assert stored["sha256"] == traces, (
        "the shipped traces changed since the fixture was scored: pin copies of the old ones here, as the profile is")
    if os.environ.get("ENGRAM_WRITE_SWEEP_FIXTURE") == "1":
        assert stored["evaluation_version"] < EVALUATION_VERSION, "bump EVALUATION_VERSION before rewriting the fixture"
        FIXTURE.write_text(json.dumps({"evaluation_version": EVALUATION_VERSION, "sha256": traces,
                                       "trials": _evaluate_all()}, indent=1) + "\n")
        pytest.skip("fixture rewritten")
    assert stored["evaluation_version"] == EVALUATION_VERSION, (
        "EVALUATION_VERSION moved: rewrite the fixture with ENGRAM_WRITE_SWEEP_FIXTURE=1")
    # The stored trials' own points (they may predate parameters the space has gained since).
    now = _evaluate_all([t["params"] for t in stored["trials"]])
    for s, n in zip(stored["trials"], now):
        for k in KEYS:
            assert n["metrics"][k] == pytest.approx(s["metrics"][k], rel=1e-9, abs=1e-12), (
                f"{k} of {s['params']} changed: the simulator scores trials differently now; bump "
                "simulator.sweep.EVALUATION_VERSION (stored studies would otherwise be resumed with stale trials)")


def test_a_new_evaluation_version_is_another_study(monkeypatch):
    import simulator.sweep as sweep

    inputs = {"profile": "p", "trace": "t", "calibration": "c"}
    before = SweepSettings().key(inputs)
    monkeypatch.setattr(sweep, "EVALUATION_VERSION", EVALUATION_VERSION + 1)
    assert SweepSettings().key(inputs) != before
