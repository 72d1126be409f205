"""Frames to drive the runtime with: a label trace rendered with the reference workload, as the recorder does.

The recorder (``traces.record.record``) maps each frame's primary class to a model class, gives every
(video, class) one object instance (``instance_ids``), moves it through the video (``video_scenes``) and renders
it (``render``). The same functions with the same settings give the same pixels, so the frames a recorded trace
was made from can be rendered again (its provenance keeps the seed, the nuisance strength and the image size;
its model section keeps the class mapping). Needs torch (the renderer); not for the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def render_label_frames(trace, class_mapping: np.ndarray, seed: int, strength: float, size: int,
                        rows: np.ndarray | None = None, batch: int = 256, recorder_batch: int | None = None) -> np.ndarray:
    """Frames ``(len(rows), 3, size, size)`` float32 in [0, 1] of ``trace`` (a LabelTrace) rows ``rows`` (default:
    all), rendered as ``traces.record.record`` renders them for ``trace``.

    Instances and motion are worked out over whole videos, so any subset of rows gets the scene parameters the
    recorder gave those frames. The renderer's float32 arithmetic depends slightly on the batch (pixels move by
    up to ~5e-6 with another batch composition); with ``recorder_batch`` (the recorder's ``--batch``), rows are
    rendered in the recorder's own batches of consecutive frames of ``trace``, which gives its pixels bit for bit.
    """
    from kernels.procedural import render
    from kernels.procedural.video import video_scenes
    from traces.record import instance_ids

    n = len(trace)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"rows outside the trace's {n} frames")
    true_class = np.asarray(class_mapping, dtype=np.int64)[trace.label]
    if np.any(true_class[rows] < 0):
        raise ValueError("the class mapping leaves a primary class of these frames unmapped")
    if recorder_batch:
        groups = [np.arange(b * recorder_batch, min(n, (b + 1) * recorder_batch))
                  for b in np.unique(rows // recorder_batch)]
    else:
        groups = [rows[a : a + batch] for a in range(0, len(rows), batch)]
    need = np.concatenate(groups) if groups else rows
    instances = instance_ids(trace)
    # Whole videos, so that every instance's first appearance (its motion's time origin) is in view.
    whole = np.flatnonzero(np.isin(trace.video, np.unique(trace.video[need])))
    params = video_scenes(true_class[whole], instances[whole], trace.time_s[whole], seed, strength, videos=trace.video[whole])
    out = np.empty((len(rows), 3, size, size), dtype=np.float32)
    where = {int(r): k for k, r in enumerate(rows)}
    for g in groups:
        imgs = render(params.take(np.searchsorted(whole, g)), size).numpy()
        for j, r in enumerate(g):
            k = where.get(int(r))
            if k is not None:
                out[k] = imgs[j]
    return out


def recorder_settings(recorded) -> dict[str, Any]:
    """Seed, strength, image size and class mapping a rendered recorded trace was made with (from its metadata)."""
    from engram.errors import EngramError

    rec = recorded.meta.provenance.get("recorder") or {}
    missing = [k for k in ("seed", "strength", "image_size") if k not in rec]
    if missing or recorded.model.class_mapping is None:
        raise EngramError(f"the trace's provenance does not say how its frames were rendered (missing "
                          f"{', '.join(missing) or 'class_mapping'}); only rendered recordings can be re-rendered")
    return {"seed": int(rec["seed"]), "strength": float(rec["strength"]), "size": int(rec["image_size"]),
            "batch": int(rec.get("batch", 0)) or None,
            "class_mapping": np.asarray(recorded.model.class_mapping, dtype=np.int64)}


def render_recorded_frames(recorded, rows: np.ndarray | None = None) -> np.ndarray:
    """The frames a rendered recorded trace (``trace record --trace``) was recorded from, rows ``rows``, bit for bit
    (rendered in the recorder's batches)."""
    s = recorder_settings(recorded)
    return render_label_frames(recorded.labels, s["class_mapping"], s["seed"], s["strength"], s["size"], rows,
                               recorder_batch=s["batch"])
