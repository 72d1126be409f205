"""The runtime's frame-by-frame cache decisions (``runtime.smtm.CacheDecider``) against the simulator's chunked
ones (``simulator.smtm.SmtmEngine``) on the whole shipped recorded trace, with no kernels in the loop: fed the
recorded vectors one exit at a time, the decider must take the simulator's decision on every frame.

This is the contract ``run_sim.py validate`` relies on for its accuracy: any frame decided differently is a
difference in semantics, not in arithmetic, since both sides search the same float16 vectors. The TVM runtime's
own check (``test_runtime.py``) covers 200 frames; whole videos reach states (long runs of hits, guesses of the
previous answer that need several passes, scene resets, cold promotions) that a short piece does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.smtm import FULL, CacheDecider
from simulator.policy import AdaptationConfig, CacheConfig, MetricConfig, Policy
from simulator.run import resolve, run_once
from simulator_helpers import shipped_calibration, shipped_device, shipped_workload


def _replay(policy, enabled, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decider over every frame of ``w``, in order: exit index (FULL: none), answer and hit level."""
    dims = tuple(w.dims[w.exit_index(e)] for e in enabled)
    dec = CacheDecider(policy, tuple(enabled), tuple(w.exits), dims, w.num_classes)
    V = w.vectors[:, [w.exit_index(e) for e in enabled], :]
    n = len(w)
    exit_index, answer, level = np.full(n, FULL), np.full(n, -1), np.full(n, -1)
    for i in range(n):
        dec.begin(float(w.arrival_s[i]), bool(w.new_video[i]))
        hit = None
        for k in range(len(enabled)):
            hit = dec.lookup(k, V[i, k])
            if hit is not None:
                exit_index[i] = k
                break
        if hit is not None:
            answer[i], level[i] = dec.hit(hit[0])
        else:
            answer[i] = int(w.prediction[i])
            dec.confirm(answer[i], V[i])
    return exit_index, answer, level


def _policy(name: str) -> Policy:
    if name == "temporal-tuned":  # the main job's choice (trial 108): one hot slot, a cold level from b5, all three rules
        exits = ["b1", "b5", "b6", "b7"]
        return Policy(name=name, kind="smtm", exits=exits,
                      cache=CacheConfig(hot_size=1, cold_size=54, cold_from="b5", replacement="lru"),
                      metric=MetricConfig(kind="temporal", thresholds={"b1": 0.945, "b5": 0.995, "b6": 0.96, "b7": 0.9975}),
                      adaptation=AdaptationConfig(strategies=["working-set", "ema", "scene-reset"], ema_alpha=0.3,
                                                  window_s=9.2, min_hot=1, max_hot=16, miss_streak=6,
                                                  on_scene_change="shrink", keep=2))
    if name == "temporal-working-set":  # every exit, a small hot level that the working set resizes
        exits = list(shipped_device().exits)
        return Policy(name=name, kind="smtm", exits=exits, cache=CacheConfig(hot_size=3, cold_size=12),
                      metric=MetricConfig(kind="temporal", thresholds={e: 0.93 for e in exits}),
                      adaptation=AdaptationConfig(strategies=["working-set"], window_s=15.0, min_hot=1, max_hot=4))
    exits = ["b3", "b4", "b7"]
    return Policy(name=name, kind="smtm", exits=exits, cache=CacheConfig(hot_size=4, cold_size=8, replacement="lfu"),
                  metric=MetricConfig(kind="calibrated", thresholds={e: 0.95 for e in exits}),
                  adaptation=AdaptationConfig(strategies=["scene-reset", "ema"], miss_streak=3, ema_alpha=0.5))


@pytest.mark.parametrize("name", ["temporal-tuned", "temporal-working-set", "calibrated-lfu-reset"])
def test_the_decider_takes_the_simulators_decision_on_every_frame_of_the_trace(name):
    w, dev = shipped_workload(), shipped_device()
    policy, enabled = resolve(_policy(name), w, dev, shipped_calibration())  # fits the exit metric
    sim = run_once(w, dev, policy, enabled).engine
    exit_index, answer, level = _replay(policy, enabled, w)
    same = (sim.exit_pos == exit_index) & (sim.answer == answer) & (sim.level == level)
    first = np.flatnonzero(~same)[:5].tolist()
    assert same.all(), f"{int((~same).sum())} of {len(w)} frames decided differently, first at {first}"
    # The trace exercises the paths: hot and cold hits, several exits, full runs.
    assert (level == 0).any() and (level == 1).any() and (exit_index == FULL).any()
    assert len(set(exit_index[exit_index >= 0].tolist())) >= 2
