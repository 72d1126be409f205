"""The synthetic trace generator: deterministic per seed, and its knobs move the statistics they name."""

import numpy as np

from traces.format import iter_rows, validate
from traces.stats import compute_stats
from traces.synth import SynthParams, synthesize


def test_same_seed_same_trace_other_seed_other_trace():
    a, b = synthesize(SynthParams(seed=7, frames=500)), synthesize(SynthParams(seed=7, frames=500))
    for name in ("video", "frame", "time_s", "label", "objects_offsets", "objects_values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = synthesize(SynthParams(seed=8, frames=500))
    assert not np.array_equal(a.label, c.label)
    assert a.meta.provenance["params"]["seed"] == 7


def test_shape_and_validity():
    t = synthesize(SynthParams(videos=3, frames=200, fps=5, classes=30, regime_classes=6))
    validate(t)
    assert len(t) == 600 and t.video_names == ("synth_000", "synth_001", "synth_002")
    assert t.num_classes == 30 and t.meta.class_names[0] == "class_000"
    assert t.time_s[199] == 199 / 5 and t.frame[200] == 0


def test_zipf_exponent_controls_the_long_tail():
    flat = compute_stats(synthesize(SynthParams(zipf=0.0, classes=200, regime_classes=60, regimes=8, frames=4000)))
    steep = compute_stats(synthesize(SynthParams(zipf=1.5, classes=200, regime_classes=60, regimes=8, frames=4000)))
    assert steep["top10pct_share"] > flat["top10pct_share"] + 0.2
    assert steep["gini"] > flat["gini"] + 0.2


def test_dwell_time_sets_run_length_and_repeat_probability():
    for dwell in (0.5, 4.0):
        s = compute_stats(synthesize(SynthParams(dwell_s=dwell, fps=10, frames=20000, videos=2)))
        mean_run = s["mean_run_length_frames"]
        assert abs(mean_run - dwell * 10) / (dwell * 10) < 0.2, (dwell, mean_run)
        assert abs(s["p_same_as_previous"] - (1 - 1 / (dwell * 10))) < 0.05


def test_regimes_bound_the_working_set():
    one = synthesize(SynthParams(regimes=1, regime_classes=5, classes=50, frames=3000))
    assert len(set(one.label.tolist())) <= 5
    many = synthesize(SynthParams(regimes=6, regime_classes=5, classes=50, regime_dwell_s=20, frames=6000))
    assert len(set(many.label.tolist())) > 5
    assert compute_stats(one, window_s=30)["working_set"]["max"] <= 5


def test_extra_objects_come_from_the_same_regime():
    t = synthesize(SynthParams(extra_objects=2.0, regimes=1, regime_classes=8, classes=40, frames=1000))
    regime = set(t.meta.provenance["regimes"][0])
    rows = list(iter_rows(t))
    assert all(set(r[4]) <= regime for r in rows)
    assert np.mean([len(r[4]) for r in rows]) > 2.0
