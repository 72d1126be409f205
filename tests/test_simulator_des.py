"""The discrete-event model of the device: service order, queueing, and which frames a full queue drops."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.des import run_des
from simulator.engines import NOT_PROCESSED
from simulator.policy import Policy, QueueConfig
from simulator.run import simulate
from simulator_helpers import hand_device, hand_workload


def reference_queue(arrival, service, capacity: int, drop: str):
    """A plain single-server queue with a bounded waiting line, written without SimPy."""
    n = len(arrival)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    dropped = np.zeros(n, dtype=bool)
    free_at = -math.inf
    waiting: deque[int] = deque()
    order: list[int] = []

    def serve(i: int, t: float) -> float:
        start[i], finish[i] = t, t + service[i]
        order.append(i)
        return finish[i]

    for i, t in enumerate(arrival):
        while waiting and free_at <= t:
            free_at = serve(waiting.popleft(), free_at)
        if free_at <= t and not waiting:
            free_at = serve(i, t)
            continue
        if len(waiting) >= capacity:
            if drop == "newest" or not waiting:
                dropped[i] = True
                continue
            dropped[waiting.popleft()] = True
        waiting.append(i)
    while waiting:
        free_at = serve(waiting.popleft(), free_at)
    return start, finish, dropped, order


def _run(arrival, service, capacity, drop):
    calls: list[int] = []

    def decide(i: int) -> float:
        calls.append(i)
        return service[i]

    return run_des(np.asarray(arrival, float), decide, QueueConfig(capacity=capacity, drop=drop)), calls


# Frames every 100 ms, each takes 270 ms, one frame may wait.
ARRIVAL = [0.1 * i for i in range(10)]
SERVICE = [0.27] * 10


@pytest.mark.parametrize("drop,dropped,served", [
    # newest: an arrival that finds the waiting slot taken is dropped.
    ("newest", [2, 4, 5, 7, 8], [0, 1, 3, 6, 9]),
    # oldest: the arrival replaces the frame that was waiting.
    ("oldest", [1, 3, 4, 6, 7], [0, 2, 5, 8, 9]),
])
def test_full_queue_drops_the_expected_frames(drop, dropped, served):
    res, calls = _run(ARRIVAL, SERVICE, 1, drop)
    assert list(np.flatnonzero(res.dropped)) == dropped
    assert calls == served  # decided at service start, in order, never for a dropped frame
    assert np.all(np.isnan(res.start_s[dropped])) and np.all(np.isnan(res.finish_s[dropped]))
    # Back to back: each served frame starts when the previous one finishes.
    assert res.start_s[served] == pytest.approx([0.0, 0.27, 0.54, 0.81, 1.08])
    assert res.finish_s[served] == pytest.approx(res.start_s[served] + 0.27)
    assert res.end_s == pytest.approx(1.35)


def test_no_queue_drops_everything_that_finds_the_processor_busy():
    res, calls = _run(ARRIVAL, SERVICE, 0, "oldest")
    assert calls == [0, 3, 6, 9]
    assert list(np.flatnonzero(res.dropped)) == [1, 2, 4, 5, 7, 8]


def test_a_longer_queue_delays_instead_of_dropping():
    res, calls = _run(ARRIVAL, SERVICE, 10, "newest")
    assert not res.dropped.any() and calls == list(range(10))
    assert res.start_s == pytest.approx([0.27 * i for i in range(10)])


def test_frames_slower_than_real_time_are_dropped_by_the_simulation():
    # 4 blocks of 59 ms = 236 ms per frame at 10 fps, queue of 2: the drop policy picks which frames are lost.
    dev = hand_device(block_ms=(59.0, 59.0, 59.0, 59.0))
    w = hand_workload([0] * 20)
    for drop in ("newest", "oldest"):
        pol = Policy(name="n", kind="no-cache", queue=QueueConfig(capacity=2, drop=drop))
        r = simulate(w, dev, pol)
        start, finish, dropped, order = reference_queue(w.arrival_s, [0.236] * 20, 2, drop)
        assert np.array_equal(r.des.dropped, dropped)
        assert np.array_equal(r.engine.exit_pos == NOT_PROCESSED, dropped)
        assert r.metrics["dropped"] == int(dropped.sum()) > 0
        assert r.metrics["processed"] + r.metrics["dropped"] == 20
        # Service latency excludes waiting; queued latency includes it.
        assert r.metrics["mean_latency_ms"] == pytest.approx(236.0)
        assert r.metrics["mean_latency_queued_ms"] == pytest.approx(np.nanmean(finish - w.arrival_s) * 1000)
    newest = simulate(w, dev, Policy(name="n", kind="no-cache", queue=QueueConfig(capacity=2, drop="newest")))
    oldest = simulate(w, dev, Policy(name="o", kind="no-cache", queue=QueueConfig(capacity=2, drop="oldest")))
    assert not np.array_equal(newest.des.dropped, oldest.des.dropped)
    assert not oldest.des.dropped[-1]  # under "oldest" nothing newer can push the last frame out


# Arrivals on a whole-second grid, services an integer plus an irrational fraction: no finish can ever tie with
# an arrival, so the order of simultaneous events cannot matter.
FRACTION = math.sqrt(2) / 10


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    work=st.lists(st.integers(0, 4), min_size=40, max_size=40),
    capacity=st.integers(0, 3),
    drop=st.sampled_from(["newest", "oldest"]),
)
def test_des_matches_a_plain_queue(gaps, work, capacity, drop):
    arrival = np.cumsum(gaps).astype(float)
    service = [w + FRACTION for w in work[: len(arrival)]]
    res, calls = _run(arrival, service, capacity, drop)
    start, finish, dropped, order = reference_queue(arrival, service, capacity, drop)
    assert calls == order
    assert np.array_equal(res.dropped, dropped)
    np.testing.assert_allclose(res.start_s, start, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.finish_s, finish, rtol=0, atol=1e-9)
    assert res.end_s == pytest.approx(max(np.nanmax(finish), arrival[-1]))


def test_a_dropped_frame_shows_the_last_answer():
    # The same schedule as above (queue of 1, drop newest): frames 2, 4, 5, 7 and 8 are dropped and show the
    # answer of the last processed frame (1, 3, 3, 6, 6); classes alternate 0, 1, 0, 1...
    dev = hand_device(block_ms=(67.5, 67.5, 67.5, 67.5))
    w = hand_workload([i % 2 for i in range(10)])
    r = simulate(w, dev, Policy(name="n", kind="no-cache", queue=QueueConfig(capacity=1, drop="newest")))
    assert list(np.flatnonzero(r.des.dropped)) == [2, 4, 5, 7, 8]
    # Wrong: frame 2 (shows 1, is 0), 4 (shows 1, is 0), 7 (shows 0, is 1).
    assert r.metrics["accuracy"] == pytest.approx(0.7)
    assert r.metrics["accuracy_loss_pt"] == 0.0  # plain inference is the baseline, under the same queue
