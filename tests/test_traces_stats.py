"""Trace statistics against values worked out by hand on tiny traces, and the HTML page."""

import math

import numpy as np
import pytest

from traces.format import LabelTrace, PrimaryRule, TraceMeta
from traces.report import render_html
from traces.stats import (
    class_counts, compute_stats, gini, lru_hit_rates, p_same, reuse_distances, run_lengths, top_share, working_set,
)

META = TraceMeta("t", "CC0-1.0", "x", 10.0, ("a", "b", "c", "d"), PrimaryRule("first-label", "d"))


def trace_of(videos, labels, fps=10.0):
    frames, times = [], []
    seen = {}
    for v in videos:
        k = seen.get(v, 0)
        seen[v] = k + 1
        frames.append(k)
        times.append(k / fps)
    return LabelTrace.from_frames(META, videos, frames, times, [[c] for c in labels])


SEQ = [0, 0, 1, 0, 2, 2, 1, 0]  # one video, 8 frames at 10 fps


def test_long_tail_numbers_by_hand():
    t = trace_of(["v"] * 8, SEQ)
    counts = class_counts(t)
    assert counts.tolist() == [4, 2, 2, 0]
    # 3 classes seen -> top ceil(0.3) = 1 class holds 4 of 8 frames.
    assert top_share(counts) == 0.5
    # Gini of (2, 2, 4): ((2*1-4)*2 + (2*2-4)*2 + (2*3-4)*4) / (3*8) = 4/24.
    assert gini(counts) == pytest.approx(1 / 6)
    assert gini(np.array([5, 5, 5])) == 0.0 and gini(np.array([0, 0, 7])) == 0.0
    assert gini(np.array([1, 1, 1, 97])) == pytest.approx((-3 - 1 + 1 + 3 * 97) / (4 * 100))
    # 10 classes seen -> top 1 class; 11 seen -> top 2.
    assert top_share(np.array([10] + [1] * 9)) == pytest.approx(10 / 19)
    assert top_share(np.array([10, 9] + [1] * 9)) == pytest.approx(19 / 28)


def test_locality_numbers_by_hand():
    t = trace_of(["v"] * 8, SEQ)
    # Same-as-previous pairs: (0,0) and (2,2) of 7.
    assert p_same(t) == pytest.approx(2 / 7)
    assert run_lengths(t).tolist() == [2, 1, 1, 2, 1, 1]
    # LRU stacks: 0 cold | 0 top | 1 cold | 0 under 1 -> 1 | 2 cold | 2 top | 1 under 2,0 -> 2 | 0 under 1,2 -> 2.
    d = reuse_distances(t)
    assert d.tolist() == [-1, 0, -1, 1, -1, 0, 2, 2]
    assert lru_hit_rates(d, (1, 2, 3, 4)) == {1: 2 / 8, 2: 3 / 8, 3: 5 / 8, 4: 5 / 8}
    # Window 0.25 s at 10 fps covers this frame and the two before.
    assert working_set(t, 0.25).tolist() == [1, 1, 2, 2, 3, 2, 2, 3]
    assert working_set(t, 100.0).tolist() == [1, 1, 2, 2, 3, 3, 3, 3]


def test_statistics_restart_at_video_boundaries():
    t = trace_of(["x", "x", "y", "y"], [0, 1, 1, 1])
    # The x->y pair (1, 1) is not a repeat: only (1, 1) inside y counts, 1 of 2 pairs.
    assert p_same(t) == 0.5
    assert reuse_distances(t).tolist() == [-1, -1, -1, 0]
    assert run_lengths(t).tolist() == [1, 1, 2]
    assert working_set(t, 100.0).tolist() == [1, 2, 1, 1]
    s = compute_stats(t, window_s=100.0, cache_sizes=(1,))
    assert s["videos"] == 2 and s["reuse_distance"]["cold_share"] == 0.75
    assert s["reuse_distance"]["lru_hit_rate"] == {"1": 0.25}
    single = trace_of(["a", "b"], [0, 1])
    assert p_same(single) is None and compute_stats(single)["p_same_as_previous"] is None


def test_compute_stats_summary_fields():
    t = trace_of(["v"] * 8, SEQ)
    s = compute_stats(t, window_s=0.25)
    assert s["frames"] == 8 and s["classes"] == {"vocabulary": 4, "seen": 3}
    assert s["duration_s"] == pytest.approx(0.7) and s["top10pct_classes"] == 1
    assert s["working_set"]["max"] == 3 and s["working_set"]["mean"] == pytest.approx(16 / 8)
    assert s["reuse_distance"]["warm"]["max"] == 2 and s["reuse_distance"]["on_change"]["p50"] == 2  # of 1, 2, 2
    assert s["class_frequency"] == [["a", 4], ["b", 2], ["c", 2]]
    assert s["mean_run_length_frames"] == pytest.approx(8 / 6, abs=1e-4)
    assert math.isclose(s["gini"], 1 / 6, abs_tol=1e-6)


def test_html_page_is_self_contained():
    t = trace_of(["v"] * 8, SEQ)
    page = render_html(t, compute_stats(t), 0.25, "tiny")
    assert page.startswith("<!DOCTYPE html>") and "<title>tiny</title>" in page
    assert "Plotly.newPlot" in page and 'src="http' not in page  # plotly.js inlined, works offline
    assert "Class frequency" in page and "Working set" in page and "CC0-1.0" in page
