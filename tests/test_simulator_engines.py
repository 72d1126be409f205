"""Per-frame decisions and costs of every policy kind, on hand-built traces with answers worked out on paper and
on the shipped trace and profile: hits, exits, latencies that add up to the profile, the oracle's bound,
determinism, and the speculative chunks agreeing with frame-by-frame decisions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from simulator.engines import FULL, INPUT
from simulator.policy import (
    AdaptationConfig, BranchyConfig, CacheConfig, DeepCacheConfig, FoggyCacheConfig, MetricConfig, Policy, check_policy,
)
from simulator.presets import PRESETS, preset
from simulator.run import resolve, run_once, simulate
from simulator.workload import Workload
from simulator_helpers import (
    HAND_EXITS, PROFILE, SMALL_CALIBRATION_VIDEOS, SMALL_VIDEOS, hand_device, hand_workload, lookup_ms, shipped_calibration,
    shipped_device, shipped_presets, shipped_workload,
)

FRAME_ARRAYS = ("exit_pos", "answer", "level", "compute_ms", "lookup_ms", "update_ms", "energy_mj", "entries", "lookups")


def smtm(thresholds: float = 0.9, kind: str = "cosine", cache: CacheConfig | None = None, strategies=(), **metric) -> Policy:
    return Policy(name="t", kind="smtm", cache=cache or CacheConfig(),
                  metric=MetricConfig(kind=kind, thresholds={e: thresholds for e in HAND_EXITS}, **metric),
                  adaptation=AdaptationConfig(strategies=list(strategies)))


def oracle(cache: CacheConfig | None = None) -> Policy:
    return Policy(name="o", kind="oracle", cache=cache or CacheConfig())


# ------------------------------------------------------------------------------------------ hand-built


@pytest.mark.parametrize("noise", [0.0, 0.03], ids=["identical", "near-identical"])
@pytest.mark.parametrize("metric", ["cosine", "margin", "calibrated"])
def test_one_class_hits_the_hot_level_on_every_frame_after_the_first(noise, metric):
    n = 40
    w = hand_workload([3] * n, noise=noise)
    extra = {}
    if metric == "calibrated":  # P(correct) rises as the top-1 distance falls: logit = -log d1
        extra = {"calibration": {e: [0.0, -1.0, 0.0, 0.0] for e in HAND_EXITS}}
    pol = smtm(0.9 if metric != "calibrated" else 0.97, metric, **extra)
    r = simulate(w, hand_device(), pol)
    e = r.engine
    assert e.exit_pos[0] == FULL and e.level[0] == -1  # the empty cache cannot answer
    assert np.all(e.exit_pos[1:] == 0), e.exit_pos  # the first enabled exit, every time
    assert np.all(e.level[1:] == 0)  # hot level
    assert np.all(e.answer == 3)
    assert r.metrics["hit_rate"]["hot"] == pytest.approx((n - 1) / n)
    assert r.metrics["hit_rate"]["cold"] == 0.0
    assert r.metrics["exit_histogram"] == {"b1": n - 1, "b2": 0, "full": 1}
    assert r.metrics["accuracy_loss_pt"] == 0.0
    # Frame 0 runs 4 blocks of 1 ms and writes one entry; the others run 2 blocks and search one entry.
    assert r.metrics["mean_latency_ms"] == pytest.approx((4 + lookup_ms(1) + (n - 1) * (2 + lookup_ms(1))) / n)
    assert r.metrics["speedup"] == pytest.approx(4.0 / r.metrics["mean_latency_ms"])
    assert r.metrics["cache_bytes"] == 1 * (2 * 8 * 2 + 16)  # one class, 2 exits x 8 dims, float16, + 16


def test_cycling_classes_cost_blocks_to_the_exit_plus_lookups_at_the_cache_size():
    w = hand_workload([0, 1, 2] * 4)
    r = simulate(w, hand_device(), smtm())
    e = r.engine
    # Frames 0-2: misses (full model: 4 blocks, a lookup at both exits against 0/1/2 entries, one update).
    assert list(e.exit_pos) == [FULL] * 3 + [0] * 9
    assert list(e.entries) == [0, 1, 2] + [3] * 9
    for i in range(3):
        assert e.compute_ms[i] == pytest.approx(4.0)
        assert e.lookup_ms[i] == pytest.approx(2 * lookup_ms(i))
        assert e.update_ms[i] == pytest.approx(lookup_ms(1))
    # Frames 3-: hits at the first exit (2 blocks, one lookup against 3 entries, no update).
    assert np.allclose(e.compute_ms[3:], 2.0)
    assert np.allclose(e.lookup_ms[3:], lookup_ms(3))
    assert np.all(e.update_ms[3:] == 0.0)
    assert np.all(e.answer == w.true_class)
    # Per-frame service = compute + lookups + update, and the timeline's breakdown covers the lookups.
    for i in range(len(w)):
        assert sum(ms for _, ms in e.lookup_breakdown(i)) == pytest.approx(e.lookup_ms[i])
    assert np.allclose(r.des.finish_s - r.des.start_s, (e.compute_ms + e.lookup_ms + e.update_ms) / 1000.0)
    # Energy: the synthetic device draws 2000 mW while active.
    assert np.allclose(e.energy_mj, (e.compute_ms + e.lookup_ms + e.update_ms) * 2.0)


def test_cold_level_hit_is_a_promotion_and_searches_both_levels():
    w = hand_workload([0, 1, 0, 1, 0, 1])
    r = simulate(w, hand_device(), smtm(cache=CacheConfig(hot_size=1, cold_size=4)))
    e = r.engine
    assert list(e.exit_pos) == [FULL, FULL, 0, 0, 0, 0]
    assert list(e.level) == [-1, -1, 1, 1, 1, 1]  # the other class is always the one in the cold level
    assert list(e.hot_entries) == [0, 1, 1, 1, 1, 1] and list(e.entries) == [0, 1, 2, 2, 2, 2]
    # A cold hit at the first exit: the hot search (1 entry) then both levels (2 entries) = cost of 2 entries.
    assert np.allclose(e.lookup_ms[2:], lookup_ms(2))
    assert r.metrics["hit_rate"] == {"hot": 0.0, "cold": pytest.approx(4 / 6), "input": 0.0}


@pytest.mark.parametrize("replacement,last_exit", [("lru", FULL), ("lfu", 0)])
def test_replacement_rule_picks_the_victim(replacement, last_exit):
    # 0 is used three times, then 1 and 2 arrive in a hot level of 2 without a cold level: LRU drops 0 (used
    # longest ago), LFU drops 1 (used once), so only LFU still knows 0 at the last frame.
    w = hand_workload([0, 0, 0, 1, 2, 0])
    r = simulate(w, hand_device(), smtm(cache=CacheConfig(hot_size=2, cold_size=0, replacement=replacement)))
    assert list(r.engine.exit_pos[:5]) == [FULL, 0, 0, FULL, FULL]
    assert r.engine.exit_pos[5] == last_exit


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_temporal_metric_follows_the_previous_answer_within_a_video(chunk):
    """Agreement with the previous answer is the only evidence here: the base logit is -20, agreement adds 40.
    The first frame of each video has no previous answer and runs the model; after it every frame whose top-1
    is the previous answer exits with it, even the class-1 frames of video 0 (class 1 is not cached yet and
    class 0 is their nearest entry). Chunked decisions (guess and verify) match frame by frame."""
    classes = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    video = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    w = hand_workload(classes, video=video)
    coef = {e: [-20.0, 0, 0, 0, 40.0, 0, 0, 0, 0] for e in HAND_EXITS}
    pol = smtm(0.5, "temporal", cache=CacheConfig(hot_size=2, cold_size=0), calibration=coef)
    pol, enabled = resolve(pol, w, hand_device(), None)
    e = run_once(w, hand_device(), pol, enabled, chunk=chunk).engine
    assert list(e.exit_pos) == [FULL, 0, 0, 0, 0, 0, 0, 0, FULL, 0, 0]
    assert list(e.answer) == [0] * 8 + [1] * 3
    # Without the agreement terms nothing is ever confident.
    base = smtm(0.5, "calibrated", cache=CacheConfig(hot_size=2, cold_size=0),
                calibration={k: c[:4] for k, c in coef.items()})
    assert (run_once(w, hand_device(), base, enabled, chunk=chunk).engine.exit_pos == FULL).all()


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_temporal_metric_stops_trusting_agreement_once_the_frame_drifts(chunk):
    """The same video, but agreement counts only as far as the frame stays near the last confirmed one: logit
    -20 - 5 log(drift). Identical frames sit at the smallest distance (log 1e-4 = -9.2, logit +26); the first
    class-1 frame is orthogonal to the confirmed class-0 frame (log 1 = 0, logit -20), so it runs the model,
    and class 1 is confirmed instead of the stale class 0 being carried on."""
    classes = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    video = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    w = hand_workload(classes, video=video)
    coef = {e: [-20.0, 0, 0, 0, 0, 0, 0, 0, -5.0] for e in HAND_EXITS}
    pol = smtm(0.5, "temporal", cache=CacheConfig(hot_size=2, cold_size=0), calibration=coef)
    pol, enabled = resolve(pol, w, hand_device(), None)
    e = run_once(w, hand_device(), pol, enabled, chunk=chunk).engine
    assert list(e.exit_pos) == [FULL, 0, 0, 0, FULL, 0, 0, 0, FULL, 0, 0]
    assert list(e.answer) == classes


def test_temporal_calibration_learns_that_agreement_is_evidence(small):
    from simulator.calibration import fit_calibration
    from simulator.exit_metric import metric_values

    _, calib = small
    dev = shipped_device()
    pol = preset("smtm", dev.exits).model_copy(update={"metric": MetricConfig(
        kind="temporal", thresholds={e: 0.92 for e in dev.exits})})
    table = fit_calibration(calib, dev, pol, dev.exits)
    assert set(table) == set(dev.exits) and all(len(c) == 9 for c in table.values())
    # At the first exit, where shallow features confuse classes most, the same match is likelier right when it
    # names the previous answer (on a frame close to the last confirmed one) than when it does not. Deeper
    # exits learn the opposite for very close matches (a close match there that does not agree is a new object
    # the cache already knows), so only b1 is asserted; the drift's effect is shown by the hand-built test.
    c = np.array(table[dev.exits[0]])
    for s1, s2 in ((0.98, 0.9), (0.995, 0.95), (0.9, 0.7)):
        p = [float(metric_values("temporal", np.array(s1), np.array(s2), 4, c, agree=a, log_drift=-6.0))
             for a in (True, False)]
        assert p[0] > p[1] + 0.03, (s1, s2, p)


@pytest.mark.parametrize("kind", ["calibrated", "temporal"])
def test_calibration_rows_are_each_lookups_features_in_order(small, kind):
    """The design matrix the exit metric is fitted on, built for all lookups at once, is row for row (values and
    precision) what each lookup's own features are: per sample in order, the hot level's search, then both
    levels' where the cold level was searched. A one-entry cache level (float64 similarities from the engine) is
    in it."""
    from simulator.calibration import collect
    from simulator.exit_metric import features, temporal_features
    from simulator.smtm import SmtmEngine

    _, calib = small
    dev = shipped_device()
    pol = preset("smtm", dev.exits).model_copy(update={
        "cache": CacheConfig(hot_size=1, cold_size=6),
        "metric": MetricConfig(kind=kind, thresholds={e: 0.95 for e in dev.exits})})
    got = collect(calib, dev, pol, dev.exits)
    eng = SmtmEngine(calib, dev, pol, dev.exits, collect=True)
    for i in range(len(calib)):
        eng.decide(i)
    assert any(s.s2_hot.dtype == np.float64 for s in eng.samples)  # searches of a single entry are in the data

    def row(s1, s2, n, top1, smp):
        if kind == "temporal":
            return temporal_features(s1, s2, n, top1 == smp.prev, smp.log_drift)
        return features(s1, s2, n)

    for k, e in enumerate(dev.exits):
        xs, ys = [], []
        for smp in eng.samples:
            if smp.n_hot > 0:
                xs.append(row(smp.s1_hot[k], smp.s2_hot[k], smp.n_hot, smp.top1_hot[k], smp))
                ys.append(float(smp.top1_hot[k] == calib.prediction[smp.frame]))
            if smp.cold_searched[k]:
                xs.append(row(smp.s1_all[k], smp.s2_all[k], smp.n_all, smp.top1_all[k], smp))
                ys.append(float(smp.top1_all[k] == calib.prediction[smp.frame]))
        x, y = got[e]
        assert np.array_equal(x, np.array(xs)) and np.array_equal(y, np.array(ys)), e
        assert len(y) > len(eng.samples)  # both levels' searches are there


def test_scene_reset_on_a_new_video_forgets_the_cache():
    classes, video = [2] * 6, [0, 0, 0, 1, 1, 1]
    keep = simulate(hand_workload(classes, video=video), hand_device(), smtm())
    reset = simulate(hand_workload(classes, video=video), hand_device(), smtm(strategies=["scene-reset"]))
    assert list(keep.engine.exit_pos) == [FULL, 0, 0, 0, 0, 0]
    assert list(reset.engine.exit_pos) == [FULL, 0, 0, FULL, 0, 0]
    assert reset.engine.scene_changes == [3] and reset.metrics["scene_changes"] == 1


def _confusing(model_errors: bool) -> Workload:
    """A long-tailed class sequence whose shallow exit cannot tell classes 0 and 1 apart."""
    rng = np.random.default_rng(1)
    classes = rng.choice(5, size=200, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    prediction = np.where(rng.random(200) < 0.1, (classes + 1) % 5, classes) if model_errors else classes
    w = hand_workload(classes, prediction=prediction)
    vec = w.vectors.copy()
    vec[classes == 1, 0] = vec[classes == 0, 0][0]
    return dataclasses.replace(w, vectors=vec)


@pytest.mark.parametrize("model_errors", [False, True])
def test_oracle_answers_like_the_full_model_at_zero_loss(model_errors):
    w = _confusing(model_errors)
    o = simulate(w, hand_device(), oracle())
    assert np.all(o.engine.answer == w.prediction)
    assert o.metrics["accuracy_loss_pt"] == 0.0 and o.metrics["accuracy_vs_model"] == 1.0
    assert o.metrics["speedup"] > 1.5
    assert o.metrics["oracle_share"] == 1.0
    # It exits at the shallow exit only where that exit's top-1 is right.
    assert 0 < o.metrics["exit_histogram"]["b1"] < len(w) and o.metrics["exit_histogram"]["b2"] > 0


def test_oracle_bounds_a_lossless_cache_but_not_a_reckless_one():
    w = _confusing(model_errors=False)
    dev = hand_device()
    o = simulate(w, dev, oracle())
    careful = simulate(w, dev, Policy(name="c", kind="smtm", cache=CacheConfig(), metric=MetricConfig(
        kind="cosine", thresholds={"b1": 1.5, "b2": 0.99})))  # never trusts the shallow exit
    reckless = simulate(w, dev, smtm(-1.0))  # any match is confident enough
    assert careful.metrics["accuracy_loss_pt"] == 0.0
    assert 1.0 < careful.metrics["speedup"] < o.metrics["speedup"]
    assert careful.metrics["oracle_speedup"] == pytest.approx(o.metrics["speedup"])
    assert 0.0 < careful.metrics["oracle_share"] < 1.0
    assert reckless.metrics["accuracy_loss_pt"] > 0.0
    assert reckless.metrics["speedup"] > o.metrics["speedup"]


def test_branchy_exits_at_the_first_confident_head():
    n = 6
    ent = np.array([[0.1, 0.1] if i % 2 == 0 else [2.0, 0.1] for i in range(n)] + [[2.0, 2.0]])
    heads = np.array([[5, 6]] * (n + 1))
    w = hand_workload([1] * (n + 1), head_entropy=ent, head_pred=heads)
    pol = Policy(name="b", kind="branchy", branchy=BranchyConfig(thresholds={"b1": 1.0, "b2": 1.0}))
    r = run_once(w, hand_device(), pol, check_policy(pol, HAND_EXITS, ("cpu",)))
    e = r.engine
    assert list(e.exit_pos) == [0, 1, 0, 1, 0, 1, FULL]
    assert list(e.answer) == [5, 6, 5, 6, 5, 6, 1]
    head = lookup_ms(8)  # a head costs a lookup against as many entries as the model has classes
    assert list(e.compute_ms) == [2, 3, 2, 3, 2, 3, 4]
    assert np.allclose(e.lookup_ms, [head, 2 * head] * 3 + [2 * head])


def test_deepcache_reuses_the_unchanged_share_of_the_first_blocks():
    dev = hand_device(block_ms=(1.0, 2.0, 3.0, 4.0))
    w = hand_workload([0] * 4, frame_diff=[1.0, 0.5, 0.0, 1.0], video=[0, 0, 0, 1])
    pol = Policy(name="d", kind="deepcache", deepcache=DeepCacheConfig(growth=0.0, max_blocks=2, overhead_fraction=0.1))
    r = simulate(w, dev, pol)
    e = r.engine
    # Frame 0 and the new video's first frame have nothing to reuse; frame 1 recomputes half of blocks 0-1,
    # frame 2 none of them; block matching costs 10% of the 10 ms model.
    assert list(e.compute_ms) == pytest.approx([10.0, 0.5 * 1 + 0.5 * 2 + 3 + 4, 7.0, 10.0])
    assert list(e.lookup_ms) == pytest.approx([0.0, 1.0, 1.0, 0.0])
    assert np.all(e.answer == w.prediction) and r.metrics["accuracy_loss_pt"] == 0.0


def test_foggycache_reuses_after_enough_homogeneous_neighbours():
    desc = np.zeros((10, 48), np.float32)
    desc[:, 0] = 1.0
    w = hand_workload([3] * 10, input_desc=desc)
    pol = Policy(name="f", kind="foggycache", foggycache=FoggyCacheConfig(k=5, homogeneity=0.8))
    r = simulate(w, hand_device(), pol)
    e = r.engine
    # 4 of 5 votes are needed: the first four frames run the model and become records.
    assert list(e.exit_pos) == [FULL] * 4 + [INPUT] * 6
    assert np.all(e.compute_ms[4:] == 0.0) and np.all(e.answer == 3)
    assert list(e.entries) == [0, 1, 2, 3] + [4] * 6
    assert r.metrics["exit_histogram"]["input"] == 6


def _desc(angles_deg) -> np.ndarray:
    """Unit input descriptors in one plane, at the given angles (cosine similarity = cos of the difference)."""
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    d = np.zeros((len(a), 48), np.float32)
    d[:, 0], d[:, 1] = np.cos(a), np.sin(a)
    return d


def test_input_level_reuses_the_last_model_answer_while_the_input_stays_alike():
    from simulator.policy import InputReuseConfig

    # Frames 0-6 drift by 5 degrees a frame (cos 5 = 0.996, cos 10 = 0.985, cos 15 = 0.966), frame 7 jumps; frame 8
    # starts a new video with the same picture as frame 7.
    desc = _desc([0, 5, 10, 15, 20, 25, 30, 90, 90, 90])
    classes = [3, 3, 3, 3, 3, 3, 3, 5, 5, 5]
    video = [0] * 8 + [1] * 2
    w = hand_workload(classes, input_desc=desc, video=video)
    dev = hand_device()
    pol = smtm(0.9).model_copy(update={"input_reuse": InputReuseConfig(similarity=0.98, max_run=3)})
    e = simulate(w, dev, pol).engine
    # Compared with the last frame that ran the model, not with the previous frame: frame 3 is 5 degrees from
    # frame 2 but 15 from frame 0 (0.966 < 0.98) and runs, and so does frame 6; a new video starts over (frame 8 is
    # the semantic cache's: it has class 5 from frame 7).
    assert list(e.exit_pos) == [FULL, INPUT, INPUT, 0, INPUT, INPUT, 0, FULL, 0, INPUT]
    # No more than max_run frames in a row reuse one answer, however alike.
    same = hand_workload([3] * 8, input_desc=_desc([0] * 8))
    runs = simulate(same, dev, smtm(0.9).model_copy(update={"input_reuse": InputReuseConfig(similarity=0.98, max_run=2)}))
    assert list(runs.engine.exit_pos) == [FULL, INPUT, INPUT, 0, INPUT, INPUT, 0, INPUT]
    assert list(e.answer) == classes
    gated = e.exit_pos == INPUT
    probe_ms, probe_mj = dev.input_reuse_cost()
    assert probe_ms == pytest.approx(lookup_ms(1))  # no runtime section: a lookup at the first exit, one entry
    # Every frame pays the probe; a reusing frame pays nothing else.
    assert np.all(e.compute_ms[gated] == 0) and np.all(e.update_ms[gated] == 0)
    assert e.lookup_ms[gated] == pytest.approx(np.full(gated.sum(), probe_ms))
    assert e.energy_mj[gated] == pytest.approx(np.full(gated.sum(), probe_mj))
    plain = simulate(w, dev, smtm(0.9)).engine
    assert plain.exit_pos[3] == 0 and plain.exit_pos[6] == 0  # the same cache decisions without the level
    ran = ~gated
    assert e.lookup_ms[ran] == pytest.approx(plain.lookup_ms[ran] + probe_ms)
    assert e.compute_ms[ran] == pytest.approx(plain.compute_ms[ran])
    m = simulate(w, dev, pol).metrics
    assert m["exit_histogram"]["input"] == 5 and m["hit_rate"]["input"] == pytest.approx(0.5)


def test_input_level_oracle_reuses_exactly_when_the_answer_is_right():
    from simulator.policy import InputReuseConfig

    # The model's answers change at frame 4; descriptors never match (orthogonal), which the oracle ignores.
    classes = [2, 2, 2, 2, 6, 6, 6, 6, 6]
    w = hand_workload(classes, input_desc=_desc([0, 90] * 4 + [0]))
    level = InputReuseConfig(similarity=0.999, max_run=3)
    pol = oracle().model_copy(update={"input_reuse": level})
    r = simulate(w, hand_device(), pol)
    e = r.engine
    assert list(e.exit_pos[[1, 2, 3]]) == [INPUT] * 3  # up to max_run frames of the same answer
    assert e.exit_pos[4] != INPUT and e.exit_pos[5] == INPUT  # the answer changed: the model runs
    assert np.all(e.answer == w.prediction) and r.metrics["accuracy_loss_pt"] == 0.0
    # A policy's own oracle carries its input level; on orthogonal descriptors the policy itself never reuses.
    own = simulate(w, hand_device(), smtm(0.9).model_copy(update={"input_reuse": level}))
    assert not np.any(own.engine.exit_pos == INPUT)
    assert own.metrics["oracle_speedup"] == pytest.approx(r.metrics["speedup"])


def test_input_level_is_refused_outside_the_semantic_cache():
    from engram.errors import EngramError
    from simulator.policy import parse_policy

    doc = {"name": "f", "kind": "foggycache", "foggycache": {}, "input_reuse": {"similarity": 0.9}}
    with pytest.raises(EngramError, match="input_reuse"):
        parse_policy(doc)
    with pytest.raises(EngramError, match="max_run"):
        parse_policy({**smtm(0.9).to_json(), "input_reuse": {"max_run": 0}})


# -------------------------------------------------------------------------------------- shipped trace


def _medians(processor: str | None = None) -> tuple[str, list[str], list[float]]:
    doc = json.loads(PROFILE.read_text())
    p = processor or doc["device"]["default_processor"]
    return p, [b["name"] for b in doc["blocks"]], [b["latency"][p]["median_ms"] for b in doc["blocks"]]


@pytest.fixture(scope="module")
def presets():
    return {r.policy.name: r for r in shipped_presets()}


def test_no_cache_costs_the_sum_of_the_profile_block_medians(presets):
    _, _, medians = _medians()
    r = presets["no-cache"]
    e = r.engine
    assert np.all(e.exit_pos == FULL)
    assert np.allclose(e.compute_ms + e.lookup_ms + e.update_ms, sum(medians), rtol=1e-12)
    assert r.metrics["speedup"] == 1.0
    assert r.metrics["accuracy_loss_pt"] == 0.0
    assert r.metrics["mean_latency_ms"] == pytest.approx(sum(medians))
    assert np.array_equal(e.answer, shipped_workload().prediction)


def test_oracle_bounds_every_preset(presets):
    assert set(presets) == set(PRESETS)
    o = presets["oracle"].metrics
    assert o["accuracy_loss_pt"] == 0.0
    assert o["speedup"] > 1.0
    for name, r in presets.items():
        m = r.metrics
        assert m["speedup"] <= o["speedup"] + 1e-12, name
        if m["accuracy_loss_pt"] <= 0.0:
            assert m["oracle_share"] <= 1.0 + 1e-12, name
    w = shipped_workload()
    assert np.array_equal(presets["oracle"].engine.answer, w.prediction)


@pytest.mark.parametrize("name", ["smtm", "oracle"])
def test_cache_frames_cost_blocks_to_their_exit_plus_lookups_at_the_cache_size(presets, name):
    """Recompute each frame's latency from the profile file alone (block medians, lookup table)."""
    doc = json.loads(PROFILE.read_text())
    proc, blocks, medians = _medians()
    cum = np.cumsum(medians)
    table = doc["lookup"]
    xs = np.asarray(table["entries"], float)

    def look(exit: str, n: int) -> float:
        return 0.0 if n <= 0 else float(np.interp(n, xs, table["exits"][exit]["median_ms"]))

    r = presets[name]
    e, exits = r.engine, r.enabled
    cache = r.policy.cache
    assert exits == tuple(doc["model"]["exit_points"])
    assert e.entries.max() <= cache.hot_size + cache.cold_size
    update = min(table["exits"][x]["median_ms"][0] for x in exits)
    for i in range(len(e.exit_pos)):
        pos, K, hot = int(e.exit_pos[i]), int(e.entries[i]), int(e.hot_entries[i])
        stop = len(exits) if pos == FULL else pos
        want_compute = cum[-1] if pos == FULL else cum[blocks.index(exits[pos])]
        # Every exit passed searched the hot level and, where there are cold entries, both levels; the
        # exit taken stops after the hot level when the hot level was confident.
        want_lookup = sum(look(x, K) for x in exits[:stop])
        if pos != FULL:
            want_lookup += look(exits[pos], hot if e.hot_conf[i] else K)
        assert e.compute_ms[i] == pytest.approx(want_compute, rel=1e-9), i
        assert e.lookup_ms[i] == pytest.approx(want_lookup, rel=1e-9, abs=1e-12), i
        assert e.update_ms[i] == pytest.approx(update if pos == FULL else 0.0), i
        assert (e.level[i] >= 0) == (pos != FULL)


def test_a_lookup_that_searches_the_cold_level_pays_the_profiles_cold_stage():
    """With a measured cold stage (the runtime's second top-two and exit metric), every lookup that searched the cold
    level pays it on top of the table's price: the exits passed at and after ``cold_from`` while the cache holds
    cold entries, and the exit taken when the hot level was not confident. Decisions do not change."""
    dev = shipped_device()
    exits = dev.exits
    stage = {e: 0.01 * (k + 1) for k, e in enumerate(exits)}
    staged = dataclasses.replace(dev, cold_stage_ms=stage)
    w = shipped_workload().take(np.arange(2000))
    pol = preset("smtm", exits).model_copy(update={"cache": CacheConfig(hot_size=2, cold_size=6, cold_from=exits[1]),
                                                   "metric": MetricConfig(kind="cosine", thresholds={e: 0.9 for e in exits})})
    a = simulate(w, dev, pol, with_oracle=False).engine
    b = simulate(w, staged, pol, with_oracle=False).engine
    for f in ("exit_pos", "answer", "entries", "hot_entries", "hot_conf"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    want = np.zeros(len(w))
    for i in range(len(w)):
        if b.entries[i] <= b.hot_entries[i]:
            continue
        pos = int(b.exit_pos[i])
        stop = len(exits) if pos == FULL else pos
        searched = list(range(stop)) + ([pos] if pos != FULL and not b.hot_conf[i] else [])
        want[i] = sum(stage[exits[k]] for k in searched if k >= 1)  # b1 is before cold_from
    assert (want > 0).sum() > 100 and (want == 0).sum() > 100
    assert np.allclose(b.lookup_ms - a.lookup_ms, want, rtol=0, atol=1e-9)
    assert np.allclose(b.energy_mj - a.energy_mj, want * b.proc.active_mw / 1000.0, rtol=0, atol=1e-9)
    for i in np.flatnonzero(want)[:50]:
        assert sum(ms for _, ms in b.lookup_breakdown(i)) == pytest.approx(b.lookup_ms[i])


# ---------------------------------------------------------------------------------- determinism, chunks


@pytest.fixture(scope="module")
def small():
    return shipped_workload().select_videos(SMALL_VIDEOS), shipped_calibration().select_videos(SMALL_CALIBRATION_VIDEOS)


def _same_run(a, b) -> None:
    for name in FRAME_ARRAYS:
        assert np.array_equal(getattr(a.engine, name), getattr(b.engine, name)), name
    for name in ("start_s", "finish_s", "dropped"):
        assert np.array_equal(getattr(a.des, name), getattr(b.des, name), equal_nan=name != "dropped"), name
    assert a.engine.scene_changes == b.engine.scene_changes
    assert a.metrics == b.metrics


@pytest.mark.parametrize("name", PRESETS)
def test_same_inputs_give_identical_results(small, name):
    w, calib = small
    dev = shipped_device()
    a = simulate(w, dev, preset(name, dev.exits), calibration=calib)
    b = simulate(w, dev, preset(name, dev.exits), calibration=calib)
    _same_run(a, b)
    assert a.policy == b.policy  # the fitted calibration too


def _slow(dev, factor: float):
    """The device, every block ``factor`` times slower: frames queue up and some are dropped."""
    procs = {k: dataclasses.replace(p, block_ms=p.block_ms * factor, block_mj=p.block_mj * factor)
             for k, p in dev.processors.items()}
    return dataclasses.replace(dev, processors=procs)


def _every_option(exits: tuple[str, ...]) -> Policy:
    """SMTM with the non-default options: margin metric, cold level from a deeper exit, decayed LFU, all
    adaptation strategies with shrinking on a scene change."""
    return Policy(name="every-option", kind="smtm", exits=list(exits[1:]),
                  cache=CacheConfig(hot_size=2, cold_size=6, cold_from=exits[2], replacement="lfu-decay", half_life_s=5),
                  metric=MetricConfig(kind="margin", thresholds={e: 0.6 for e in exits}),
                  adaptation=AdaptationConfig(strategies=["working-set", "ema", "scene-reset"], window_s=20, min_hot=1,
                                              max_hot=5, miss_streak=2, on_scene_change="shrink", keep=3))


@pytest.mark.parametrize("slow", [1.0, 1500.0], ids=["real-time", "overloaded"])
@pytest.mark.parametrize("name", ["smtm", "oracle", "foggycache", "every-option", "temporal", "temporal-input-level",
                                  "oracle-input-level"])
def test_speculative_chunks_decide_like_frame_by_frame(small, name, slow):
    from simulator.policy import InputReuseConfig

    w, calib = small
    dev = _slow(shipped_device(), slow)
    if name == "every-option":
        pol = _every_option(dev.exits)
    elif name.startswith("temporal"):  # decisions that depend on the previous answer; overloaded, frames are dropped
        pol = preset("smtm", dev.exits).model_copy(update={"metric": MetricConfig(
            kind="temporal", thresholds={e: 0.92 for e in dev.exits})})
        if name.endswith("input-level"):  # frames the cache is never asked about, between those it is
            pol = pol.model_copy(update={"input_reuse": InputReuseConfig(similarity=0.95, max_run=4)})
    elif name == "oracle-input-level":
        pol = preset("oracle", dev.exits).model_copy(update={"input_reuse": InputReuseConfig(max_run=4)})
    else:
        pol = preset(name, dev.exits)
    pol, enabled = resolve(pol, w, dev, calib)
    runs = [run_once(w, dev, pol, enabled, chunk=c) for c in (None, 1, 7)]
    if slow > 1:
        assert runs[0].metrics["dropped"] > 0
    assert runs[0].metrics["exit_histogram"]["full"] < runs[0].metrics["processed"]  # the cache does answer
    if name.endswith("input-level"):
        hist = runs[0].metrics["exit_histogram"]
        assert 0 < hist["input"] < runs[0].metrics["processed"] - hist["full"]  # the level and the cache both answer
    for r in runs[1:]:
        _same_run(runs[0], r)


@pytest.mark.parametrize("passes", [1, 2])
def test_temporal_chunks_decide_like_frame_by_frame_when_the_guesses_run_out(small, passes, monkeypatch):
    """With few guess-and-verify passes a chunk is often decided on previous answers that are not yet the
    ones its own decisions imply: every frame must then be checked against the guess it was decided with."""
    import simulator.smtm as smtm_mod

    w, calib = small
    dev = shipped_device()
    pol = preset("smtm", dev.exits).model_copy(update={"metric": MetricConfig(
        kind="temporal", thresholds={e: 0.9 for e in dev.exits})})
    pol, enabled = resolve(pol, w, dev, calib)
    exact = run_once(w, dev, pol, enabled, chunk=1)  # one frame at a time: the previous answer is known
    monkeypatch.setattr(smtm_mod, "MAX_PASSES", passes)
    for chunk in (None, 64):
        _same_run(exact, run_once(w, dev, pol, enabled, chunk=chunk))


def test_energy_counts_active_frames_and_idle_time():
    # 10 frames at 10 fps, 4 ms each at 2000 mW (8 mJ), idle at 100 mW from the first arrival until one frame
    # period after the last frame finished (0.9 s + 4 ms + 0.1 s), less the 40 ms busy.
    r = simulate(hand_workload([0] * 10), hand_device(), Policy(name="n", kind="no-cache"))
    assert r.metrics["active_energy_mj_per_frame"] == pytest.approx(8.0)
    assert r.metrics["energy_mj_per_frame"] == pytest.approx((10 * 8.0 + 100.0 * (1.004 - 0.040)) / 10)


def test_long_runs_of_hits_between_cache_events():
    """Hundreds of hits before the next miss (a chunk that grows past its cap) decide like frame by frame."""
    classes = [0] * 1593 + [1] * 5 + [0] * 1100 + [2] * 3  # the miss at 1593 lands 600 frames into a 1024-frame chunk
    w = hand_workload(classes, noise=0.01)
    dev = hand_device()
    pol = Policy(name="c", kind="smtm", cache=CacheConfig(hot_size=2, cold_size=2),
                 metric=MetricConfig(kind="cosine", thresholds={e: 0.9 for e in dev.exits}))
    runs = [run_once(w, dev, pol, dev.exits, chunk=c) for c in (None, 1)]
    _same_run(runs[0], runs[1])
    assert int(np.sum(runs[0].engine.exit_pos < 0)) == 3  # only each class's first frame misses
