"""A recorded trace as the simulator sees it: numpy arrays on one global timeline.

Videos are played back to back (each starts one frame period after the previous one ends), so that one
simulation can replay a whole trace. Semantic vectors of all exit points sit in one zero-padded array
``(frames, exits, max dims)`` so that every exit's similarity search is one batched matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from engram.errors import MismatchError


@dataclass(frozen=True)
class Workload:
    source: str
    video_names: tuple[str, ...]
    video: np.ndarray  # (n,) int
    new_video: np.ndarray  # (n,) bool: first frame of a video
    arrival_s: np.ndarray  # (n,) global arrival time
    true_class: np.ndarray  # (n,) ground truth (model classes)
    prediction: np.ndarray  # (n,) the full model's answer
    exits: tuple[str, ...]
    dims: tuple[int, ...]
    vectors: np.ndarray  # (n, exits, max dims) float32, zero-padded
    head_pred: np.ndarray  # (n, exits) int
    head_entropy: np.ndarray  # (n, exits) float32
    frame_diff: np.ndarray  # (n,) float32
    input_desc: np.ndarray  # (n, D) float32
    num_classes: int
    fingerprint: Mapping[str, str] | None
    fps: float

    def __len__(self) -> int:
        return len(self.true_class)

    def exit_index(self, exit: str) -> int:
        return self.exits.index(exit)

    def select_videos(self, names: list[str] | tuple[str, ...]) -> "Workload":
        """The frames of the named videos, in trace order, on a fresh timeline."""
        codes = [self.video_names.index(v) for v in names]
        rows = np.flatnonzero(np.isin(self.video, codes))
        return self.take(rows)

    def take(self, rows: np.ndarray) -> "Workload":
        rows = np.asarray(rows)
        video = self.video[rows]
        new = np.r_[True, video[1:] != video[:-1]] if len(rows) else np.zeros(0, bool)
        local = self.arrival_s[rows]
        arrival = _timeline(video, local - _video_start(video, local), self.fps)
        return Workload(self.source, self.video_names, video, new, arrival, self.true_class[rows], self.prediction[rows],
                        self.exits, self.dims, self.vectors[rows], self.head_pred[rows], self.head_entropy[rows],
                        self.frame_diff[rows], self.input_desc[rows], self.num_classes, self.fingerprint, self.fps)


def _video_start(video: np.ndarray, t: np.ndarray) -> np.ndarray:
    start = np.empty_like(t)
    if len(t) == 0:
        return start
    edges = np.r_[0, np.flatnonzero(video[1:] != video[:-1]) + 1, len(t)]
    for a, b in zip(edges[:-1], edges[1:]):
        start[a:b] = t[a]
    return start


def _timeline(video: np.ndarray, local: np.ndarray, fps: float) -> np.ndarray:
    """Global arrival times: each video's local times, shifted to start one frame period after the last."""
    out = np.empty_like(local)
    if len(local) == 0:
        return out
    edges = np.r_[0, np.flatnonzero(video[1:] != video[:-1]) + 1, len(local)]
    offset = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        out[a:b] = offset + local[a:b]
        offset = out[b - 1] + 1.0 / fps
    return out


def from_recorded(trace, source: str | Path = "") -> Workload:
    """Arrays from a ``traces.format.RecordedTrace``."""
    labels = trace.labels
    exits = tuple(trace.model.exit_points)
    dims = tuple(int(d) for d in trace.model.semantic_dims)
    n = len(labels)
    dmax = max(dims) if dims else 1
    vectors = np.zeros((n, len(exits), dmax), dtype=np.float32)
    for j, e in enumerate(exits):
        vectors[:, j, : dims[j]] = trace.vectors[e]
    head_pred = np.stack([trace.head_pred[e] for e in exits], axis=1).astype(np.int64) if exits else np.zeros((n, 0), np.int64)
    head_entropy = np.stack([trace.head_entropy[e] for e in exits], axis=1).astype(np.float32) if exits else np.zeros((n, 0), np.float32)
    video = labels.video.astype(np.int64)
    local = labels.time_s - _video_start(video, labels.time_s)
    fps = float(trace.meta.fps)
    return Workload(
        source=str(source),
        video_names=tuple(labels.video_names),
        video=video,
        new_video=labels.video_start_mask().copy(),
        arrival_s=_timeline(video, local, fps),
        true_class=trace.true_class.astype(np.int64),
        prediction=trace.prediction.astype(np.int64),
        exits=exits,
        dims=dims,
        vectors=vectors,
        head_pred=head_pred,
        head_entropy=head_entropy,
        frame_diff=trace.frame_diff.astype(np.float32),
        input_desc=trace.input_desc.astype(np.float32),
        num_classes=len(trace.model.class_names),
        fingerprint={"architecture": trace.model.architecture_sha, "weights": trace.model.weights_sha},
        fps=fps,
    )


def check_fit(workload: Workload, device, where_trace: str | None = None, where_profile: str | None = None) -> None:
    """Refuse a trace recorded with another model than the profile's, or with other exit points."""
    if device.fingerprint and workload.fingerprint:
        for k in ("architecture", "weights"):
            if device.fingerprint.get(k) != workload.fingerprint.get(k):
                raise MismatchError(
                    f"the trace was recorded with another model than the profile's ({k} "
                    f"{workload.fingerprint.get(k, '')[:12]}... vs {device.fingerprint.get(k, '')[:12]}...)",
                    path=where_trace, field=f"model.fingerprint.{k}")
    missing = [e for e in workload.exits if e not in device.exits]
    if missing:
        raise MismatchError(f"the trace has exit point {missing[0]!r}, which the profile does not ({', '.join(device.exits)})",
                            path=where_trace, field="model.exit_points")
    missing = [e for e in device.exits if e not in workload.exits]
    if missing:
        raise MismatchError(f"the profile has exit point {missing[0]!r}, which the trace did not record",
                            path=where_profile, field="model.exit_points")
