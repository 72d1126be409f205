"""Statistics of a label trace that predict how well a semantic cache can do on it.

All sequence statistics use the primary label (the class a cache answer is judged against) and restart at
each video boundary (a new video is a new session: nothing is carried over).

- **long tail**: per-class frame counts, the share of frames held by the top 10% of the classes that occur
  (at least one class), and the Gini coefficient of those counts (0: all classes equally frequent;
  towards 1: a few classes take everything). Classes of the vocabulary that never occur are left out of
  both, so that a large label vocabulary does not inflate them.
- **temporal locality**: P(label_t == label_{t-1}) over consecutive rows of a video, and the mean run
  length (frames per uninterrupted stretch of one label).
- **reuse distance** (LRU stack distance): for a frame whose class occurred earlier in the video, the
  number of *other* distinct classes seen since its last occurrence. An LRU cache of k classes hits exactly
  the frames with distance < k, so the summary includes that hit rate for several k. First occurrences
  (cold misses) count as misses.
- **working set**: at each frame, the number of distinct classes seen in the last ``window_s`` seconds of
  the same video (frames with time in (t - window_s, t]).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from traces.format import LabelTrace

DEFAULT_WINDOW_S = 30.0
CACHE_SIZES = (1, 2, 4, 8, 16, 32, 64)
TOP_FRACTION = 0.10


def class_counts(trace: LabelTrace) -> np.ndarray:
    """Frames per class id (primary label), over the whole vocabulary."""
    return np.bincount(trace.label, minlength=trace.num_classes).astype(np.int64)


def top_share(counts: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Share of frames held by the most frequent ``ceil(fraction * seen)`` classes (at least one)."""
    seen = np.sort(counts[counts > 0])[::-1]
    if seen.size == 0:
        return 0.0
    k = max(1, math.ceil(fraction * seen.size - 1e-9))
    return float(seen[:k].sum() / seen.sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of the counts of classes that occur: sum_i (2i - n - 1) x_i / (n sum x), x ascending."""
    x = np.sort(counts[counts > 0]).astype(np.float64)
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def _same_video_pairs(trace: LabelTrace) -> np.ndarray:
    """Mask over rows 1..n-1: True where row i and row i-1 belong to the same video."""
    return np.diff(trace.video) == 0


def p_same(trace: LabelTrace) -> float | None:
    pairs = _same_video_pairs(trace)
    if not pairs.any():
        return None
    same = np.diff(trace.label) == 0
    return float(same[pairs].sum() / pairs.sum())


def run_lengths(trace: LabelTrace) -> np.ndarray:
    """Length of every maximal run of one label within one video."""
    n = len(trace)
    breaks = np.ones(n, dtype=bool)
    breaks[1:] = (np.diff(trace.label) != 0) | (np.diff(trace.video) != 0)
    starts = np.flatnonzero(breaks)
    return np.diff(np.append(starts, n))


def reuse_distances(trace: LabelTrace) -> np.ndarray:
    """LRU stack distance per frame (-1 for the first occurrence of a class in its video)."""
    out = np.empty(len(trace), dtype=np.int64)
    labels = trace.label.tolist()
    for _, start, stop in trace.video_bounds():
        stack: list[int] = []  # most recently used first
        for i in range(start, stop):
            c = labels[i]
            if stack and stack[0] == c:
                out[i] = 0
                continue
            try:
                d = stack.index(c)
            except ValueError:
                out[i] = -1
                stack.insert(0, c)
                continue
            out[i] = d
            del stack[d]
            stack.insert(0, c)
    return out


def lru_hit_rates(distances: np.ndarray, sizes: Sequence[int] = CACHE_SIZES) -> dict[int, float]:
    n = distances.size
    return {k: float(((distances >= 0) & (distances < k)).sum() / n) if n else 0.0 for k in sizes}


def working_set(trace: LabelTrace, window_s: float = DEFAULT_WINDOW_S) -> np.ndarray:
    """Distinct primary classes with a frame in (t - window_s, t] of the same video, per frame."""
    if not window_s > 0:
        raise ValueError("window_s must be positive")
    out = np.empty(len(trace), dtype=np.int64)
    labels = trace.label.tolist()
    times = trace.time_s.tolist()
    for _, start, stop in trace.video_bounds():
        counts: dict[int, int] = {}
        lo = start
        for i in range(start, stop):
            c = labels[i]
            counts[c] = counts.get(c, 0) + 1
            t = times[i]
            while times[lo] <= t - window_s:
                old = labels[lo]
                counts[old] -= 1
                if counts[old] == 0:
                    del counts[old]
                lo += 1
            out[i] = len(counts)
    return out


def _summary(x: np.ndarray) -> dict[str, float | int | None]:
    if x.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    q = np.percentile(x, [50, 90, 99], method="lower")
    return {"mean": round(float(x.mean()), 4), "p50": int(q[0]), "p90": int(q[1]), "p99": int(q[2]), "max": int(x.max())}


def compute_stats(trace: LabelTrace, *, window_s: float = DEFAULT_WINDOW_S,
                  cache_sizes: Sequence[int] = CACHE_SIZES) -> dict[str, Any]:
    """Every statistic above as one JSON-ready dict."""
    n = len(trace)
    counts = class_counts(trace)
    seen = int((counts > 0).sum())
    bounds = trace.video_bounds()
    duration = sum(float(trace.time_s[e - 1] - trace.time_s[s]) for _, s, e in bounds)
    dist = reuse_distances(trace)
    warm = dist[dist >= 0]
    changed = np.ones(n, dtype=bool)
    changed[1:] = (np.diff(trace.label) != 0) | (np.diff(trace.video) != 0)
    ws = working_set(trace, window_s)
    runs = run_lengths(trace)
    n_obj = np.diff(trace.objects_offsets)
    order = np.argsort(-counts, kind="stable")
    ps = p_same(trace)
    return {
        "videos": len(bounds),
        "frames": n,
        "duration_s": round(duration, 3),
        "fps": trace.meta.fps,
        "classes": {"vocabulary": trace.num_classes, "seen": seen},
        "top10pct_classes": max(1, math.ceil(TOP_FRACTION * seen - 1e-9)) if seen else 0,
        "top10pct_share": round(top_share(counts), 6),
        "gini": round(gini(counts), 6),
        "p_same_as_previous": None if ps is None else round(ps, 6),
        "mean_run_length_frames": round(float(runs.mean()), 4),
        "objects_per_frame": {"mean": round(float(n_obj.mean()), 4), "max": int(n_obj.max())},
        "reuse_distance": {
            "cold_share": round(float((dist < 0).sum() / n), 6),
            "warm": _summary(warm),
            "on_change": _summary(dist[changed & (dist >= 0)]),
            "lru_hit_rate": {str(k): round(v, 6) for k, v in lru_hit_rates(dist, cache_sizes).items()},
        },
        "working_set": {"window_s": window_s, **_summary(ws)},
        "class_frequency": [[trace.meta.class_names[c], int(counts[c])] for c in order if counts[c] > 0],
    }
