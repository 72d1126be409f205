"""Shared inputs of the simulator tests (``tests/test_simulator_*.py``).

- the shipped profile, trace and calibration trace, read once per test process (``lru_cache``);
- small recorded traces cut from the shipped ones (two videos each), written with ``traces.format.write_trace``;
- hand-built workloads on a synthetic device, whose answers can be worked out on paper.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from simulator.device import synthetic_device
from simulator.workload import Workload
from traces.format import RecordedTrace, read_recorded_trace, write_trace

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "data" / "reference_local.json"
TRACE = ROOT / "traces" / "data" / "epic100_val_recorded.parquet"
CALIBRATION = ROOT / "traces" / "data" / "epic100_calibration_recorded.parquet"

SMALL_VIDEOS = ("P01_12", "P04_33")  # 271 + 266 frames of the shipped trace
SMALL_CALIBRATION_VIDEOS = ("P04_28", "P07_14")  # 245 + 201 frames of the shipped calibration trace


@lru_cache(maxsize=None)
def shipped_trace() -> RecordedTrace:
    return read_recorded_trace(TRACE)


@lru_cache(maxsize=None)
def shipped_calibration_trace() -> RecordedTrace:
    return read_recorded_trace(CALIBRATION)


@lru_cache(maxsize=None)
def shipped_device():
    from profiles.format import read_profile
    from simulator.device import from_profile

    return from_profile(read_profile(PROFILE))


@lru_cache(maxsize=None)
def shipped_workload() -> Workload:
    from simulator.workload import from_recorded

    return from_recorded(shipped_trace(), TRACE)


@lru_cache(maxsize=None)
def shipped_calibration() -> Workload:
    from simulator.workload import from_recorded

    return from_recorded(shipped_calibration_trace(), CALIBRATION)


@lru_cache(maxsize=None)
def shipped_presets():
    """Every preset on the whole shipped trace and profile (as ``run_sim.py compare`` runs them)."""
    from simulator.cli import run_presets

    return run_presets(shipped_device(), shipped_workload(), shipped_calibration())


def cut(trace: RecordedTrace, videos: Sequence[str]) -> RecordedTrace:
    """The named videos of a recorded trace, as a recorded trace of their own."""
    codes = [trace.labels.video_names.index(v) for v in videos]
    rows = np.flatnonzero(np.isin(trace.labels.video, codes))
    return RecordedTrace(
        labels=trace.labels.select_rows(rows),
        model=trace.model,
        true_class=trace.true_class[rows],
        prediction=trace.prediction[rows],
        vectors={e: v[rows] for e, v in trace.vectors.items()},
        head_pred={e: v[rows] for e, v in trace.head_pred.items()},
        head_entropy={e: v[rows] for e, v in trace.head_entropy.items()},
        frame_diff=trace.frame_diff[rows],
        input_desc=trace.input_desc[rows],
    )


def write_small_traces(directory: Path) -> tuple[Path, Path]:
    """A two-video recorded trace and a two-video calibration trace (other videos), as files."""
    directory.mkdir(parents=True, exist_ok=True)
    trace = write_trace(cut(shipped_trace(), SMALL_VIDEOS), directory / "small.parquet")
    calib = write_trace(cut(shipped_calibration_trace(), SMALL_CALIBRATION_VIDEOS), directory / "small_calib.parquet")
    return trace, calib


# ------------------------------------------------------------------------------------------- hand-built


HAND_BLOCKS = ("b0", "b1", "b2", "b3")
HAND_EXITS = ("b1", "b2")


def hand_device(block_ms: Sequence[float] = (1.0, 1.0, 1.0, 1.0), **kw):
    """Four blocks, exits after the second and the third; lookup = 0.01 ms + 0.001 ms per entry."""
    return synthetic_device(HAND_BLOCKS, HAND_EXITS, block_ms, **kw)


def lookup_ms(entries: int) -> float:
    """Lookup cost of :func:`hand_device` (with its defaults) against ``entries`` cached entries."""
    return 0.0 if entries <= 0 else 0.01 + 0.001 * entries


def class_vectors(num_classes: int, exits: int = 2, dims: int = 8) -> np.ndarray:
    """(classes, exits, dims): one unit vector per class and exit, orthogonal between classes."""
    assert num_classes <= dims
    v = np.zeros((num_classes, exits, dims), dtype=np.float32)
    for c in range(num_classes):
        v[c, :, c] = 1.0
    return v


def hand_workload(
    classes: Sequence[int],
    vectors: np.ndarray | None = None,
    *,
    prediction: Sequence[int] | None = None,
    fps: float = 10.0,
    arrival_s: Sequence[float] | None = None,
    video: Sequence[int] | None = None,
    num_classes: int = 8,
    head_pred: np.ndarray | None = None,
    head_entropy: np.ndarray | None = None,
    frame_diff: Sequence[float] | None = None,
    input_desc: np.ndarray | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> Workload:
    """A workload over :data:`HAND_EXITS`; by default frame ``i`` carries its class's vector from
    :func:`class_vectors` (plus ``noise``, renormalised), and the model answers the true class."""
    classes = np.asarray(classes, dtype=np.int64)
    n = len(classes)
    E, d = len(HAND_EXITS), 8
    if vectors is None:
        vectors = class_vectors(num_classes, E, d)[classes]
        if noise:
            vectors = vectors + noise * np.random.default_rng(seed).standard_normal(vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    video = np.zeros(n, dtype=np.int64) if video is None else np.asarray(video, dtype=np.int64)
    new = np.r_[True, video[1:] != video[:-1]] if n else np.zeros(0, bool)
    arrival = np.arange(n) / fps if arrival_s is None else np.asarray(arrival_s, dtype=np.float64)
    return Workload(
        source="hand-built",
        video_names=tuple(f"v{k}" for k in range(int(video.max()) + 1 if n else 0)),
        video=video,
        new_video=new,
        arrival_s=arrival,
        true_class=classes.copy(),
        prediction=classes.copy() if prediction is None else np.asarray(prediction, dtype=np.int64),
        exits=HAND_EXITS,
        dims=(d, d),
        vectors=vectors,
        head_pred=np.tile(classes[:, None], (1, E)) if head_pred is None else np.asarray(head_pred, dtype=np.int64),
        head_entropy=np.full((n, E), 5.0, np.float32) if head_entropy is None else np.asarray(head_entropy, np.float32),
        frame_diff=np.ones(n, np.float32) if frame_diff is None else np.asarray(frame_diff, np.float32),
        input_desc=np.zeros((n, 48), np.float32) if input_desc is None else np.asarray(input_desc, np.float32),
        num_classes=num_classes,
        fingerprint=None,
        fps=fps,
    )
