"""Fidelity check (``run_sim.py validate``) and the profile's optional ``runtime`` section.

- a profile without a ``runtime`` section simulates exactly as before; one with it adds each block's dispatch
  overhead per block executed, the frame overhead once per frame (with the first block), and uses the runtime's own
  lookup and update costs; the section round-trips and a bad one is refused naming the field;
- ``validate`` renders a label trace's frames, runs them through the runtime and simulates the same policy on the
  same frames: on the same frames the runtime and the simulator decide alike (exit histograms equal or within a
  frame or two), so the measured accuracy equals the predicted one; the latency error is finite;
- a bad bundle or an unreadable trace: one line, exit status 2.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import export_default_bundle, run_main
from engram.cli import cli
from engram.errors import FormatError
from profiles.format import profile_from_json, read_profile
from runtime.cli import validate_cmd
from simulator.device import from_profile
from simulator.policy import Policy
from simulator.run import simulate
from simulator_helpers import PROFILE, ROOT, shipped_workload

if "validate" not in cli.commands:
    cli.add_command(validate_cmd)

LABELS = ROOT / "traces" / "data" / "epic100_val.parquet"
FRAMES = 120


def _profile_json() -> dict:
    return json.loads(PROFILE.read_text(encoding="utf-8"))


def _with_runtime(obj: dict, frame=0.05, dispatch=0.01, lookup_ms=0.03, update=0.02, temporal=0.003) -> dict:
    obj = json.loads(json.dumps(obj))
    entries = obj["lookup"]["entries"]
    obj["runtime"] = {
        "source": "measured-runtime", "method": "test", "processor": obj["device"]["default_processor"],
        "frame_ms": frame, "dispatch_ms": {b: dispatch for b in obj["model"]["blocks"]}, "update_ms": update,
        "temporal_ms": temporal, "lookup": {"entries": entries, "exits": {e: [lookup_ms + 1e-5 * n for n in entries]
                                                 for e in obj["model"]["exit_points"]}},
    }
    return obj


# ------------------------------------------------------------------------------ the profile's runtime section


def test_profiles_without_runtime_section_simulate_as_before():
    prof = read_profile(PROFILE)
    assert prof.runtime is None and "runtime" not in prof.to_json()
    dev = from_profile(prof)
    ms = np.array([prof.latency_ms(b) for b in prof.block_names])
    assert np.array_equal(dev.processor(None).block_ms, ms)
    assert dev.update_ms == min(v[0] for v in dev.lookup_ms.values())


def test_runtime_section_round_trips_and_adds_its_costs(tmp_path):
    base = profile_from_json(_profile_json())
    obj = _with_runtime(_profile_json())
    prof = profile_from_json(obj)
    assert prof.to_json() == obj  # round trip
    dev0, dev = from_profile(base), from_profile(prof)
    extra = dev.processor(None).block_ms - dev0.processor(None).block_ms
    assert extra[0] == pytest.approx(0.05 + 0.01) and np.allclose(extra[1:], 0.01)
    assert dev.update_ms == 0.02
    assert dev.lookup_cost("b3", 1)[0] == pytest.approx(0.03 + 1e-5)
    assert dev.lookup_cost("b3", 100)[0] == pytest.approx(0.03 + 1e-3)
    # Plain inference: every block, so the frame costs the kernels + every dispatch + the frame overhead.
    w = shipped_workload().take(np.arange(200))
    plain = Policy(name="no-cache", kind="no-cache")
    m0, m = simulate(w, dev0, plain, with_oracle=False).metrics, simulate(w, dev, plain, with_oracle=False).metrics
    assert m["mean_latency_ms"] == pytest.approx(m0["mean_latency_ms"] + 0.05 + 0.01 * len(prof.block_names))
    assert m["accuracy"] == m0["accuracy"]


def test_hit_cost_is_charged_per_exited_frame():
    """A runtime section with a hit cost only: every frame that leaves at an exit point costs that much more; the
    decisions do not change."""
    obj = _with_runtime(_profile_json(), frame=0.0, dispatch=0.0)
    obj["runtime"].update(update_ms=None, lookup=None, hit_ms=0.004)
    dev0, dev = from_profile(profile_from_json(_profile_json())), from_profile(profile_from_json(obj))
    from simulator.presets import preset

    w = shipped_workload().take(np.arange(400))
    calib = None
    pol = preset("smtm", dev.exits)
    from simulator_helpers import shipped_calibration_trace
    from simulator.workload import from_recorded

    calib = from_recorded(shipped_calibration_trace())
    r0 = simulate(w, dev0, pol, calibration=calib, with_oracle=False)
    r = simulate(w, dev, r0.policy, with_oracle=False)
    assert np.array_equal(r.engine.exit_pos, r0.engine.exit_pos)
    exited = np.count_nonzero(r0.engine.exit_pos >= 0)
    assert exited > 0
    assert r.metrics["mean_latency_ms"] == pytest.approx(r0.metrics["mean_latency_ms"] + 0.004 * exited / len(w))


def test_temporal_cost_is_charged_to_temporal_policies_per_frame_with_a_cache():
    """The temporal metric's drift costs every frame that searches a cache that much more (the runtime works it
    out at the first enabled exit, before searching); other metrics pay nothing; decisions do not change."""
    from simulator.policy import MetricConfig
    from simulator.presets import preset
    from simulator_helpers import shipped_calibration

    obj = _with_runtime(_profile_json(), frame=0.0, dispatch=0.0)
    obj["runtime"].update(update_ms=None, lookup=None, temporal_ms=0.007)
    prof = profile_from_json(obj)
    assert prof.to_json() == obj and prof.runtime.temporal_ms == 0.007  # round trip
    dev0, dev = from_profile(profile_from_json(_profile_json())), from_profile(prof)
    assert dev.temporal_ms == 0.007 and dev0.temporal_ms == 0.0
    w = shipped_workload().take(np.arange(400))
    smtm = preset("smtm", dev.exits)
    for metric in ("temporal", "calibrated"):
        pol = smtm.model_copy(update={"metric": MetricConfig(kind=metric, thresholds={e: 0.93 for e in dev.exits})})
        r0 = simulate(w, dev0, pol, calibration=shipped_calibration(), with_oracle=False)
        r = simulate(w, dev, r0.policy, with_oracle=False)
        assert np.array_equal(r.engine.exit_pos, r0.engine.exit_pos)
        searched = np.count_nonzero(r0.engine.entries > 0)
        assert 0 < searched < len(w)  # a video's first frame meets an empty cache (scene reset)
        added = 0.007 * searched / len(w) if metric == "temporal" else 0.0
        assert r.metrics["mean_latency_ms"] == pytest.approx(r0.metrics["mean_latency_ms"] + added)
        i = int(np.flatnonzero(r0.engine.entries > 0)[0])
        extra = sum(ms for _, ms in r.engine.lookup_breakdown(i)) - sum(ms for _, ms in r0.engine.lookup_breakdown(i))
        assert extra == pytest.approx(0.007 if metric == "temporal" else 0.0)


def _with_cold(obj: dict, gaps=(1, 2, 4), value=lambda e, b, g: 0.001 * g) -> dict:
    """A cold table with a row per exit point and the input level's row (every block)."""
    blocks = obj["model"]["blocks"]
    after = {e: blocks[blocks.index(e) + 1:] for e in obj["model"]["exit_points"]}
    after["input"] = blocks
    obj["runtime"]["cold"] = {"gaps": list(gaps), "after_exit": {
        e: {b: [value(e, b, g) for g in gaps] for b in bs} for e, bs in after.items()}}
    return obj


def _with_cold_ms(cold_ms: dict, gaps: tuple[int, ...]):
    """The shipped profile's device with these cold tables (``{row: (blocks, gaps) array}``) on its processor."""
    import dataclasses

    dev = from_profile(read_profile(PROFILE))
    pc = dataclasses.replace(dev.processor(None), cold_ms=cold_ms, cold_gaps=gaps)
    return dataclasses.replace(dev, processors={pc.name: pc}), pc


def _serve_script(dev, exit_pos, lookups=None):
    """Frames of a scripted engine over the enabled exits b1 and b3 (exit positions, and optionally the lookups each
    made), through ``serve()``: the engine and the service times (s)."""
    from simulator.engines import Engine

    class Scripted(Engine):
        def decide(self, i: int) -> float:
            self.exit_pos[i] = exit_pos[i]
            if lookups is not None:
                self.lookups[i] = lookups[i]
            return 0.0

    w = shipped_workload().take(np.arange(len(exit_pos)))
    eng = Scripted(w, dev, Policy(name="x", kind="no-cache"), ("b1", "b3"))
    return eng, np.array([eng.serve(i) for i in range(len(exit_pos))])


def test_cold_blocks_round_trip_and_interpolate_by_gap():
    obj = _with_cold(_with_runtime(_profile_json()), value=lambda e, b, g: {1: 0.01, 2: 0.03, 4: 0.05}[g])
    prof = profile_from_json(obj)
    assert prof.to_json() == obj  # round trip
    pc = from_profile(prof).processor(None)
    assert pc.cold_gaps == (1, 2, 4) and set(pc.cold_ms) == {*prof.model.exit_points, "input"}
    by_gap = pc.cold_by_gap()
    assert np.allclose(by_gap["input"], [0.0, 0.01, 0.03, 0.04, 0.05])  # every block
    k = prof.block_names.index("b3")
    # Nothing up to the exit's block; after it, 0 at gap 0, the measured values, linear between, held beyond.
    assert np.all(by_gap["b3"][:k + 1] == 0.0)
    assert np.allclose(by_gap["b3"][k + 1], [0.0, 0.01, 0.03, 0.04, 0.05])
    # Without the section, no cold prices.
    assert from_profile(profile_from_json(_with_runtime(_profile_json()))).processor(None).cold_by_gap() == {}


def test_cold_stage_round_trips_and_reaches_the_simulator():
    obj = _with_runtime(_profile_json())
    exits = obj["model"]["exit_points"]
    obj["runtime"]["cold_stage_ms"] = {e: 0.001 * (k + 1) for k, e in enumerate(exits)}
    prof = profile_from_json(obj)
    assert prof.to_json() == obj
    assert from_profile(prof).cold_stage_ms == {e: 0.001 * (k + 1) for k, e in enumerate(exits)}
    # Older profiles: no cold stage priced.
    assert from_profile(profile_from_json(_with_runtime(_profile_json()))).cold_stage_ms == {}


def test_cold_blocks_are_charged_by_where_the_previous_frame_stopped_and_how_long_ago_each_block_ran():
    """A scripted sequence of exits through the engine's serve(): each frame pays, for every block it runs that the
    frames since it last ran skipped by stopping at an exit, the cold price of the gap since that block last ran,
    on the row of the latest such exit."""
    from simulator.engines import FULL

    after_b1 = np.zeros((10, 2))
    after_b1[2], after_b1[3], after_b1[4:] = [0.1, 0.2], [0.01, 0.02], [0.001, 0.002]
    after_b3 = np.zeros((10, 2))
    after_b3[4:] = [1.0, 2.0]
    dev, pc = _with_cold_ms({"b1": after_b1, "b3": after_b3}, (1, 3))
    names = list(dev.blocks)
    assert names[1] == "b1" and names[3] == "b3" and len(names) == 10
    # Exits into ("b1", "b3"): b1 runs 2 blocks, b3 4, FULL all 10.
    eng, service = _serve_script(dev, [FULL, 0, 0, FULL, 1, FULL, 0, 1])
    # Frame 3 (full) after frame 2 stopped at b1: b2..head last ran in frame 0, a gap of 2, halfway between the
    # measured gaps 1 and 3. Frame 5 (full) after a stop at b3: b4..head ran in frame 3, a gap of 1. Frame 7 (stops
    # at b3) after a stop at b1: b2 and b3 ran in frame 5, a gap of 1. Frames after a full one, or stopping no later
    # than the previous one, pay nothing.
    expected = [0, 0, 0, 0.15 + 0.015 + 6 * 0.0015, 0, 6 * 1.0, 0, 0.1 + 0.01]
    assert np.allclose(eng.cold_ms, expected)
    assert np.allclose(eng.compute_ms, expected) and np.allclose(service, np.array(expected) / 1000.0)
    assert np.allclose(eng.energy_mj, np.array(expected) * pc.active_mw / 1000.0)


def test_blocks_after_input_answers_are_charged_the_input_rows_cold_price():
    """Frames answered at the input run no block: the next frame that runs blocks pays the input row's price of
    each, at the gap since it last ran."""
    from simulator.engines import FULL, INPUT

    nb = 10
    after_input = np.tile([0.1, 0.3], (nb, 1)) * (1 + np.arange(nb))[:, None]  # block j: 0.1 (j+1) at gap 1, 3x at 3
    after_b1 = np.zeros((nb, 2))
    after_b1[2:] = [1.0, 2.0]
    dev, _ = _with_cold_ms({"input": after_input, "b1": after_b1}, (1, 3))
    assert len(dev.blocks) == nb
    # Exit 0 is b1: stem and b1 run.
    eng, service = _serve_script(dev, [FULL, INPUT, FULL, INPUT, INPUT, 0, INPUT, FULL, INPUT, 0])
    weight = 1 + np.arange(nb)
    # Frame 2: every block last ran in frame 0, a gap of 1. Frame 5 after two input answers: stem and b1 ran in
    # frame 2, a gap of 2 (halfway between the measured 1 and 3). Frame 7: stem and b1 ran in frame 5 (an input
    # answer since, a gap of 1); b2..head last ran in frame 2, and frame 5 stopped at b1 since: the b1 row, at a gap
    # of 4 (priced as the longest measured, 3). Frame 9: stem and b1 ran in frame 7, a gap of 1.
    expected = [0, 0, 0.1 * weight.sum(), 0, 0, 0.2 * (1 + 2), 0, 0.1 * (1 + 2) + 2.0 * (nb - 2), 0, 0.1 * (1 + 2)]
    assert np.allclose(eng.cold_ms, expected) and np.allclose(eng.compute_ms, expected)
    assert np.allclose(service, np.array(expected) / 1000.0)


def test_blocks_after_a_lookup_are_charged_by_the_latest_lookup_before_them():
    """A scripted sequence through serve(): each block after a lookup of the frame costs the after-lookup price of
    the latest exit point looked up before it; blocks before the first lookup, and frames without one, nothing."""
    from simulator.engines import FULL

    obj = _with_runtime(_profile_json())
    names = obj["model"]["blocks"]
    obj["runtime"]["after_lookup"] = {e: {b: 0.01 * (names.index(b) + 1) + (0.5 if e == "b3" else 0.0)
                                          for b in names[names.index(e) + 1:]} for e in obj["model"]["exit_points"]}
    prof = profile_from_json(obj)
    assert prof.to_json() == obj  # round trip
    dev = from_profile(prof)
    pc = dev.processor(None)
    assert pc.after_lookup_ms["b3"][3] == 0.0 and pc.after_lookup_ms["b3"][4] == pytest.approx(0.55)
    # Frames through the enabled exits b1 and b3: (exit position, lookups made at b1, b3).
    script = [(FULL, (0, 0)), (FULL, (1, 0)), (FULL, (1, 1)), (1, (1, 1)), (0, (1, 0)), (FULL, (0, 1))]
    eng, service = _serve_script(dev, [p for p, _ in script], [lk for _, lk in script])
    price = lambda j, e: 0.01 * (j + 1) + (0.5 if e == "b3" else 0.0)  # noqa: E731
    expected = [0.0,
                sum(price(j, "b1") for j in range(2, 10)),  # b2..head after b1's lookup
                price(2, "b1") + price(3, "b1") + sum(price(j, "b3") for j in range(4, 10)),  # b2, b3; then b4..head
                price(2, "b1") + price(3, "b1"),  # stops at b3: b2 and b3 ran after b1's lookup
                0.0,  # stops at b1: no block after its lookup
                sum(price(j, "b3") for j in range(4, 10))]
    assert np.allclose(eng.after_lookup_ms, expected) and np.allclose(eng.compute_ms, expected)
    assert np.allclose(service, np.array(expected) / 1000.0)
    assert not eng.cold_ms.any()  # no cold table in this profile


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_property_cold_and_after_lookup_tables_round_trip_or_are_refused_with_their_field(data):
    """Any gaps and non-negative prices round-trip; removing any one entry of either table is refused in one line
    naming a field of the runtime section."""
    gaps = sorted(set(data.draw(st.lists(st.integers(1, 64), min_size=1, max_size=5))))
    price = st.floats(0.0, 10.0, allow_nan=False)
    obj = _with_cold(_with_runtime(_profile_json()), gaps=tuple(gaps), value=lambda e, b, g: data.draw(price))
    names = obj["model"]["blocks"]
    obj["runtime"]["after_lookup"] = {e: {b: data.draw(price) for b in names[names.index(e) + 1:]}
                                      for e in obj["model"]["exit_points"]}
    prof = profile_from_json(obj)
    assert prof.to_json() == obj and prof.runtime.cold_gaps == tuple(gaps)
    table = data.draw(st.sampled_from(["cold", "after_lookup"]))
    per_exit = obj["runtime"]["cold"]["after_exit"] if table == "cold" else obj["runtime"]["after_lookup"]
    e = data.draw(st.sampled_from(sorted(per_exit)))
    b = data.draw(st.sampled_from(sorted(per_exit[e])))
    if table == "cold" and data.draw(st.booleans()):
        per_exit[e][b].pop()  # one gap's price missing
    else:
        del per_exit[e][b]
    with pytest.raises(FormatError, match=r"runtime\.") as err:
        profile_from_json(obj, "p.json")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.update(after_lookup={"b3": {"b4": 0.1}}), "runtime.after_lookup.b3"),
    (lambda r: r.update(after_lookup={"b2": {}}), "runtime.after_lookup.b2"),
    (lambda r: r["cold"]["after_exit"]["b3"].pop("head"), "runtime.cold.after_exit.b3"),
    (lambda r: r["cold"]["after_exit"]["b3"].update(b2=[0.0, 0.0, 0.0]), "runtime.cold.after_exit.b3"),
    (lambda r: r["cold"]["after_exit"]["b3"]["head"].pop(), "runtime.cold.after_exit.b3.head"),
    (lambda r: r["cold"]["after_exit"].update(b2={}), "runtime.cold.after_exit.b2"),
    (lambda r: r["cold"].update(gaps=[2, 1, 4]), "runtime.cold.gaps"),
    (lambda r: r["cold"]["after_exit"]["input"].pop("stem"), "runtime.cold.after_exit.input"),
    (lambda r: r["cold"]["after_exit"].update(inputs={}), "runtime.cold.after_exit.inputs"),
    (lambda r: r["cold"]["after_exit"]["b3"].update(head=[-0.1, 0.0, 0.0]), "runtime"),
])
def test_bad_cold_tables_are_refused(edit, field):
    obj = _with_cold(_with_runtime(_profile_json()))
    edit(obj["runtime"])
    with pytest.raises(FormatError, match=field.replace(".", r"\.")):
        profile_from_json(obj, "p.json")


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["dispatch_ms"].pop("b2"), "runtime.dispatch_ms"),
    (lambda r: r.update(temporal_ms=-0.1), "runtime"),
    (lambda r: r.update(frame_ms=-1.0), "runtime"),
    (lambda r: r["lookup"]["exits"].update(b8=[0.1] * 11), "runtime.lookup.exits.b8"),
    (lambda r: r["lookup"]["exits"]["b3"].pop(), "runtime.lookup.exits.b3"),
    (lambda r: r.update(source="guessed"), "runtime"),
    (lambda r: r.update(cold_stage_ms={"b2": 0.005}), "runtime.cold_stage_ms.b2"),
    (lambda r: r.update(cold_stage_ms={"b3": -0.005}), "runtime"),
    (lambda r: r.update(cold_stage_ms={"b3": "fast"}), "runtime"),
])
def test_bad_runtime_sections_are_refused(edit, field):
    obj = _with_runtime(_profile_json())
    edit(obj["runtime"])
    with pytest.raises(FormatError, match=field.replace(".", r"\.")):
        profile_from_json(obj, "p.json")


# ------------------------------------------------------------------------------ validate


_run = run_main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return export_default_bundle(tmp_path_factory.mktemp("validate") / "smtm.bundle")[0]


@pytest.mark.slow
def test_validate_predicted_against_measured(bundle, capsys):
    rc, out, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--frames", str(FRAMES),
                        "--warmup", "5", "--json")
    assert rc == 0, err
    r = json.loads(out)
    for k in ("predicted_mean_ms", "measured_mean_ms", "latency_error", "predicted_p99_ms", "measured_p99_ms",
              "predicted_accuracy", "measured_accuracy", "predicted_exit_histogram", "measured_exit_histogram",
              "predicted_speedup", "measured_speedup", "predicted_no_cache_mean_ms", "measured_no_cache_mean_ms"):
        assert k in r, k
    assert r["frames"] == FRAMES
    assert math.isfinite(r["latency_error"]) and r["measured_mean_ms"] > 0 and r["predicted_mean_ms"] > 0
    assert r["latency_error"] == pytest.approx(r["measured_mean_ms"] / r["predicted_mean_ms"] - 1)
    assert r["measured_speedup"] == pytest.approx(r["measured_no_cache_mean_ms"] / r["measured_mean_ms"])
    hp, hm = r["predicted_exit_histogram"], r["measured_exit_histogram"]
    assert set(hp) == set(hm) and sum(hp.values()) == sum(hm.values()) == FRAMES
    assert sum(abs(hp[k] - hm[k]) for k in hp) <= 4  # the same decisions, but for float rounding on a frame or two
    if r["decisions_agree"] == 1.0:
        assert hp == hm and r["measured_accuracy"] == r["predicted_accuracy"]
    assert abs(r["measured_accuracy"] - r["predicted_accuracy"]) <= 2 / FRAMES
    assert r["measured_no_cache_accuracy"] == r["predicted_no_cache_accuracy"]  # plain inference: the model's answers
    assert not r["profile_has_runtime_overheads"] and "runtime overheads" in err  # the shipped profile: kernels only
    assert math.isfinite(r["kernel_drift"]) and r["kernels_now_ms"] > 0
    # The per-frame parts add up to the means they split (no queueing at these frame rates).
    parts = r["components_ms"]
    assert set(parts["measured"]) == set(parts["predicted_now"]) == {"blocks", "lookups", "updates", "frame"}
    assert sum(parts["measured"].values()) == pytest.approx(r["measured_mean_ms"], rel=1e-9)
    assert sum(parts["predicted_now"].values()) == pytest.approx(r["predicted_now_mean_ms"], rel=1e-9)
    assert parts["measured"]["lookups"] > 0 and parts["predicted_now"]["lookups"] > 0
    assert parts["predicted_now"]["frame"] == 0.0 < parts["measured"]["frame"]  # the shipped profile prices none
    assert "frame_now_ms" not in r
    # Each block's call as the runs paid it: plain inference ran them all, the policy only those before its exits.
    calls = r["block_calls_ms"]
    names = list(read_profile(PROFILE).block_names)
    assert list(calls["no_cache"]) == names and set(calls["policy"]) <= set(names)
    assert all(v > 0 for d in calls.values() for v in d.values())
    assert names[0] in calls["policy"]  # every frame runs the first block
    import tvm

    # The runtime ran with the profile's thread count, or says which it had when the pool had already started.
    assert r["threads"] == tvm.runtime.num_threads() and r["profile_threads"] == read_profile(PROFILE).device.threads
    assert (r["threads"] == r["profile_threads"]) == ("thread pool already runs" not in err)
    # Three passes by default, each from empty caches: the same decisions every time, timings averaged per frame.
    assert r["passes"] == 3 and r["passes_agree"] == 1.0
    assert len(r["measured_mean_ms_passes"]) == len(r["latency_error_now_passes"]) == 3
    assert np.mean(r["measured_mean_ms_passes"]) == pytest.approx(r["measured_mean_ms"], rel=1e-9)
    assert np.mean(r["measured_no_cache_mean_ms_passes"]) == pytest.approx(r["measured_no_cache_mean_ms"], rel=1e-9)


def test_repeated_runs_average_each_frames_timings_and_keep_the_first_passs_decisions():
    from runtime.cli import _repeated_runs
    from runtime.engine import RunLog

    class Scripted:
        """A runtime whose n-th pass (counted by its resets) takes n ms a frame and, from the second pass on,
        answers frame 2 otherwise."""

        resets = 0

        def reset(self):
            self.resets += 1

        def run(self, frames, times, new_video):
            k, start = len(frames), int(times[0])
            answer = np.arange(start, start + k)
            if self.resets >= 2 and start <= 2 < start + k:
                answer[2 - start] = 99
            lat = np.full(k, float(self.resets))
            return RunLog(("b1",), ("b1", "b2"), np.zeros(k, np.int64), answer, np.zeros(k, np.int8), lat,
                          np.stack([lat / 2, lat / 2], axis=1), np.zeros(k), np.zeros(k), np.ones(k, np.int64))

    rt, turns = Scripted(), []
    (log,), means, agree = _repeated_runs([rt], np.zeros((6, 3, 4, 4), np.float32), np.arange(6.0), np.zeros(6, bool),
                                          4, 3, between=lambda: turns.append(rt.resets))
    assert turns == [1, 1, 2, 2, 3, 3]  # each pass from an empty cache; two turns of chunks a pass
    assert means == [[1.0, 2.0, 3.0]]
    assert np.allclose(log.latency_ms, 2.0) and np.allclose(log.block_ms, 1.0)
    assert list(log.answer) == [0, 1, 2, 3, 4, 5]  # the first pass's decisions
    assert agree == [pytest.approx(5 / 6)]  # frame 2 answered otherwise in the later passes


def test_validate_refuses_bad_input_in_one_line(bundle, tmp_path, capsys):
    # Not a bundle.
    rc, _, err = _run(capsys, "validate", "--bundle", str(tmp_path), "--trace", str(LABELS))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    # A bundle for another model.
    import shutil

    other = tmp_path / "other.bundle"
    shutil.copytree(bundle, other)
    m = json.loads((other / "bundle.json").read_text())
    fake = {"architecture": "0" * 64, "weights": "1" * 64}
    m["model"]["fingerprint"] = fake
    m["profile"]["fingerprint"] = fake
    (other / "bundle.json").write_text(json.dumps(m))
    rc, _, err = _run(capsys, "validate", "--bundle", str(other), "--trace", str(LABELS))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "model" in err
    # An unreadable trace.
    bad = tmp_path / "labels.parquet"
    bad.write_bytes(b"not parquet")
    rc, _, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(bad))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    # A profile for another model.
    obj = _profile_json()
    obj["model"]["fingerprint"] = fake
    (tmp_path / "p.json").write_text(json.dumps(obj))
    rc, _, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--profile",
                      str(tmp_path / "p.json"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    # A malformed device address, and a device nobody listens on.
    rc, _, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--device", "phone:9090")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "rpc://HOST:PORT" in err
    from conftest import free_port

    port = free_port()
    rc, _, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--frames", "5",
                      "--device", f"rpc://127.0.0.1:{port}")
    assert rc == 2 and f"cannot connect to rpc://127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_runtime_overheads_are_measured_and_merged(tmp_path, capsys, bundle):
    out = tmp_path / "p.json"
    rc, stdout, err = _run(capsys, "profile", "runtime-overheads", str(PROFILE), "--out", str(out), "--rounds", "3",
                           "--calls", "30")
    assert rc == 0, err
    prof, base = read_profile(out), read_profile(PROFILE)
    assert prof.runtime is not None and prof.runtime.source == "measured-runtime"
    assert set(prof.runtime.dispatch_ms) == set(prof.block_names)
    assert set(prof.runtime.lookup_ms) == set(prof.model.exit_points)
    assert prof.runtime.frame_ms > 0 and all(v > 0 for ys in prof.runtime.lookup_ms.values() for v in ys)
    assert 0 < prof.runtime.temporal_ms < min(ys[0] for ys in prof.runtime.lookup_ms.values())  # part of a lookup's work
    assert prof.runtime.input_ms > 0 and from_profile(prof).input_reuse_cost()[0] == prof.runtime.input_ms
    # A lookup's cold stage, at every exit point: a fraction of the lookup it adds to.
    assert set(prof.runtime.cold_stage_ms) == set(prof.model.exit_points)
    assert all(0 <= v < prof.runtime.lookup_ms[e][4] for e, v in prof.runtime.cold_stage_ms.items())
    assert sum(prof.runtime.cold_stage_ms.values()) > 0
    assert from_profile(prof).cold_stage_ms == prof.runtime.cold_stage_ms
    # Cold blocks: for every exit point, every block after it, at each gap; the simulator takes the table.
    from runtime.overheads import COLD_GAPS

    assert prof.runtime.cold_gaps == COLD_GAPS and set(prof.runtime.cold_ms) == {*prof.model.exit_points, "input"}
    names = list(prof.block_names)
    for e, per_block in prof.runtime.cold_ms.items():
        assert list(per_block) == (names if e == "input" else names[names.index(e) + 1:])
        assert all(len(v) == len(COLD_GAPS) and min(v) >= 0 for v in per_block.values())
        assert all(list(v) == sorted(v) for v in per_block.values())  # non-decreasing in the gap
    assert from_profile(prof).processor(None).cold_ms.keys() == prof.runtime.cold_ms.keys()
    assert set(prof.runtime.after_lookup_ms) == set(prof.model.exit_points)
    for e, per_block in prof.runtime.after_lookup_ms.items():
        assert list(per_block) == names[names.index(e) + 1:] and min(per_block.values()) >= 0
    # Nothing else changed.
    a, b = prof.to_json(), base.to_json()
    a.pop("runtime")
    assert a == b
    # With the runtime's lookup table in the profile, validate probes the lookups' speed now at the cache sizes the
    # policy searches (the smtm preset: 4 hot, 4 + 28 in all) and predicts at the current speed with it.
    rc, stdout, err = _run(capsys, "validate", "--bundle", str(bundle), "--profile", str(out), "--trace", str(LABELS),
                           "--frames", "30", "--warmup", "2", "--chunk", "10", "--passes", "2", "--json")
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["lookup_probe_entries"] == [4, 32]
    exits = json.loads((bundle / "bundle.json").read_text())["enabled_exits"]
    table = dict(zip(prof.runtime.lookup_entries, zip(*(prof.runtime.lookup_ms[e] for e in exits))))
    assert r["lookups_profiled_ms"] == pytest.approx(sum(table[4]) + sum(table[32]))
    assert r["lookups_now_ms"] > 0 and math.isfinite(r["lookup_drift"])
    # One probe after each turn of the chunks (30 frames, chunks of 10: three turns a pass, two passes).
    assert r["lookup_probe_samples"] == 6
    assert "input_now_ms" not in r  # the preset has no input level to probe
    # At the current speed the per-frame overhead is the no-cache runs', and the no-cache prediction is those runs.
    parts = r["components_ms"]
    assert r["frame_profiled_ms"] == prof.runtime.frame_ms and r["frame_now_ms"] > 0
    assert parts["predicted_now"]["frame"] == pytest.approx(r["frame_now_ms"], rel=1e-9)
    assert 0 < r["predicted_now_cold_ms"] < parts["predicted_now"]["blocks"]  # the smtm preset stops at exits
    assert 0 < r["predicted_now_after_lookup_ms"] < parts["predicted_now"]["blocks"]
    assert r["predicted_now_no_cache_mean_ms"] == pytest.approx(r["measured_no_cache_mean_ms"], rel=1e-6)
    assert sum(parts["predicted_now"].values()) == pytest.approx(r["predicted_now_mean_ms"], rel=1e-9)
    from runtime.cli import _format_validation

    assert "the runtime's lookups now" in _format_validation(r)


@pytest.mark.slow
def test_validate_measures_the_runtime_overheads_first_when_asked(bundle, capsys, monkeypatch):
    import runtime.overheads as ro

    full = ro.measure_overheads
    calls = []

    def short(*a, **k):  # the same measurement, fewer rounds
        calls.append(k)
        return full(*a, **{**k, "rounds": 3, "calls": 30})

    monkeypatch.setattr(ro, "measure_overheads", short)
    rc, stdout, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--frames", "20",
                           "--warmup", "2", "--measure-overheads", "--json")
    assert rc == 0, err
    r = json.loads(stdout)
    assert len(calls) == 1 and calls[0]["in_context"] == read_profile(PROFILE).blocks_in_context
    # The shipped profile has no runtime section; the one measured now is simulated and probed against.
    assert r["overheads_measured_now"] and r["profile_has_runtime_overheads"] and "no runtime overheads" not in err
    assert r["frame_profiled_ms"] > 0 and r["lookup_probe_entries"] and r["predicted_now_after_lookup_ms"] > 0
    # Not through RPC: one line, before any work.
    rc, _, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--measure-overheads",
                      "--device", "rpc://127.0.0.1:9")
    assert rc == 2 and "--measure-overheads" in err and len(err.strip().splitlines()) == 1 and len(calls) == 1


def test_runtime_overheads_refuse_a_profile_not_made_here(capsys, tmp_path):
    rc, _, err = _run(capsys, "profile", "runtime-overheads", str(ROOT / "profiles" / "data" / "reference_pixel4.json"),
                      "--out", str(tmp_path / "p.json"))
    assert rc == 2 and "local profile" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_validate_through_rpc(bundle, rpc_server, capsys):
    """`validate --device rpc://...`: the same bundle and runtime with the blocks on a device behind TVM's RPC server
    (a loopback server here): the device's decisions are judged; its latencies are flagged as including the network."""
    n = 40
    rc, out, err = _run(capsys, "validate", "--bundle", str(bundle), "--trace", str(LABELS), "--frames", str(n),
                        "--warmup", "2", "--chunk", "20", "--device", rpc_server, "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["device"] == rpc_server and r["latency_includes_network"] is True and rpc_server in r["blocks"]
    assert "kernel_drift" not in r  # the host cannot time the device's kernels
    hp, hm = r["predicted_exit_histogram"], r["measured_exit_histogram"]
    assert sum(hm.values()) == n and sum(abs(hp.get(k, 0) - hm.get(k, 0)) for k in {*hp, *hm}) <= 2
    assert r["decisions_agree"] >= 0.95
    from runtime.cli import _format_validation

    assert "include the network's round trips" in _format_validation(r)


def test_prediction_at_current_speed_prices_each_part_as_it_ran():
    import dataclasses

    from runtime.overheads import at_current_speed, speed_factor

    prof = profile_from_json(_with_runtime(_profile_json()))
    dev = from_profile(prof)
    pc = dev.processor(None)
    then = np.array([prof.latency_ms(b) for b in prof.block_names])
    calls = then * 1.5 + 0.02
    calls[0] = then[0] * 3.0  # one block slowed more than the others
    g = 0.7
    now = at_current_speed(dev, None, calls, 0.08, g)
    q = now.processor(None)
    # Every block at its call's price now; the frame overhead now with the first block (every frame runs it).
    assert np.allclose(q.block_ms, calls + np.eye(len(calls))[0] * 0.08)
    assert np.array_equal(q.block_mj, pc.block_mj)  # energy as profiled
    # The decider's numpy work at its own measured speed.
    assert now.update_ms == pytest.approx(dev.update_ms * g) and now.hit_ms == pytest.approx(dev.hit_ms * g)
    assert dev.temporal_ms == 0.003 and now.temporal_ms == pytest.approx(dev.temporal_ms * g)
    for e in dev.lookup_ms:
        assert np.allclose(now.lookup_ms[e], dev.lookup_ms[e] * g)
    # The cold stage and the input level's probe as well; the probe as timed during the runs where it was.
    staged = dataclasses.replace(dev, cold_stage_ms={"b1": 0.004}, input_ms=0.05)
    assert at_current_speed(staged, None, calls, None, g).cold_stage_ms["b1"] == pytest.approx(0.004 * g)
    assert at_current_speed(staged, None, calls, None, g).input_ms == pytest.approx(0.05 * g)
    assert at_current_speed(staged, None, calls, None, g, input_ms=0.061).input_ms == 0.061
    # Cold prices at the kernels' speed now.
    cold = {"b1": np.arange(len(calls) * 2, dtype=float).reshape(-1, 2)}
    pcc = dataclasses.replace(pc, cold_ms=cold, cold_gaps=(1, 2))
    devc = dataclasses.replace(dev, processors={pc.name: pcc})
    assert np.allclose(at_current_speed(devc, None, calls, None, g, 1.25).processor(None).cold_ms["b1"], cold["b1"] * 1.25)
    # No frame overhead modelled: none added.
    assert np.allclose(at_current_speed(dev, None, calls, None).processor(None).block_ms, calls)
    # At the profile's own prices nothing changes.
    same = at_current_speed(dev, None, pc.block_ms - np.eye(len(calls))[0] * 0.05, 0.05)
    assert np.allclose(same.processor(None).block_ms, pc.block_ms) and same.update_ms == pytest.approx(dev.update_ms)
    assert speed_factor(then, calls) == pytest.approx(calls.sum() / then.sum()) and speed_factor([0.0, 0.0], [1.0, 2.0]) == 1.0


def test_lookup_probe_sizes_are_the_table_points_nearest_the_policys_cache():
    from runtime.overheads import ENTRIES, probe_entries

    assert probe_entries(ENTRIES, [1, 55]) == [1, 64]
    assert probe_entries(ENTRIES, [3, 3]) == [4]  # log-nearest: 3 is nearer 4 than 2
    assert probe_entries(ENTRIES, [4, 4 + 28]) == [4, 32]
    assert probe_entries(ENTRIES, [2000]) == [1024]
