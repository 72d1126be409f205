"""The recorder: turn a label trace into a recorded trace by rendering its frames and running the model.

For every frame of a label trace it renders the frame's primary object (mapped to a model class) with the
reference workload's procedural renderer, runs the reference CNN over it block by block, and keeps what
the simulator needs: the semantic vector at every exit point, each exit head's answer and entropy, the full
model's prediction, and how much of the frame changed since the previous one.

Object instances: within one video, one trace class is one physical object (the same plate keeps its look
every time it comes back into view). While in view it drifts, turns and zooms slowly; every frame gets
fresh sensor noise. The background and lighting belong to the video: the camera pans slowly across one
scene (see ``kernels.procedural.video``).

This is the one place where the traces room runs a model; it uses only the kernels room's public API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from engram.input_descriptor import describe_input
from traces.format import INPUT_DESC_DIMS, LabelTrace, ModelInfo, RecordedTrace, TraceMeta
from traces.mapping import ClassMapping


@dataclass(frozen=True)
class RecordSettings:
    seed: int = 0
    strength: float | None = None  # nuisance strength; None = the one the model was trained at
    batch: int = 256
    tile: int = 8  # frame-difference tiles, in pixels
    change_threshold: float = 0.05  # a tile counts as changed when its mean RGB moves more than this


FRAME_DIFF_RULE = (
    "share of {tile}x{tile}-pixel tiles whose mean RGB change since the previous frame of the video exceeds {thr} "
    "in some channel"
)


def instance_ids(trace: LabelTrace) -> np.ndarray:
    """One instance per (video, primary class), numbered in order of first appearance."""
    key = trace.video.astype(np.int64) * (trace.num_classes + 1) + trace.label
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each unique key by first appearance
    return order[inverse].astype(np.int64)


def tile_change(prev: np.ndarray, cur: np.ndarray, tile: int, threshold: float) -> np.ndarray:
    """Share of tiles that changed between two image batches (n, 3, H, W) -> (n,)."""
    n, c, h, w = cur.shape
    th, tw = h // tile, w // tile
    d = cur[:, :, : th * tile, : tw * tile] - prev[:, :, : th * tile, : tw * tile]
    # Average within the tile before taking the magnitude: sensor noise (sigma up to 0.08 per pixel)
    # averages out over a tile, a real change does not.
    d = np.abs(d.reshape(n, c, th, tile, tw, tile).mean(axis=(3, 5))).max(axis=1)
    return (d > threshold).mean(axis=(1, 2)).astype(np.float32)


def record(
    trace: LabelTrace,
    ref,  # kernels.reference.store.ReferenceModel
    mapping: ClassMapping,
    settings: RecordSettings = RecordSettings(),
    progress: Callable[[int, int], None] | None = None,
) -> RecordedTrace:
    import torch

    from kernels.procedural import CATALOGUE, render
    from kernels.procedural.video import video_scenes
    from kernels.reference.encoders import pooled_exit_features

    model = ref.model
    strength = settings.strength if settings.strength is not None else float(ref.meta.get("train", {}).get("strength", 1.0))
    size = model.input_shape[1]
    true_class = mapping.mapping[trace.label].astype(np.int64)
    if np.any(true_class < 0):
        raise ValueError("mapping leaves primary classes unmapped")  # ClassMapping builders check this first
    instances = instance_ids(trace)
    params = video_scenes(true_class, instances, trace.time_s, settings.seed, strength, videos=trace.video)

    n = len(trace)
    exits = list(model.exit_points)
    vectors = {e: np.empty((n, ref.encoders[e].dims), np.float32) for e in exits}
    head_pred = {e: np.empty(n, np.int32) for e in exits}
    head_entropy = {e: np.empty(n, np.float32) for e in exits}
    prediction = np.empty(n, np.int32)
    frame_diff = np.empty(n, np.float32)
    input_desc = np.empty((n, INPUT_DESC_DIMS), np.float32)
    first_of_video = trace.video_start_mask()
    prev_img: np.ndarray | None = None
    with torch.no_grad():
        for start in range(0, n, settings.batch):
            stop = min(n, start + settings.batch)
            idx = np.arange(start, stop)
            imgs = render(params.take(idx), size)
            logits, pooled = pooled_exit_features(model, imgs, batch=settings.batch)
            prediction[start:stop] = logits.argmax(1)
            for e in exits:
                vectors[e][start:stop] = ref.encoders[e].encode_pooled(pooled[e])
                head_pred[e][start:stop], head_entropy[e][start:stop] = ref.heads[e].predict(pooled[e])
            cur = imgs.numpy()
            prev = np.concatenate([prev_img if prev_img is not None else cur[:1], cur[:-1]])
            diff = tile_change(prev, cur, settings.tile, settings.change_threshold)
            diff[first_of_video[start:stop]] = 1.0
            frame_diff[start:stop] = diff
            input_desc[start:stop] = describe_input(cur)
            prev_img = cur[-1:]
            if progress is not None:
                progress(stop, n)

    fp = model.fingerprint()
    info = ModelInfo(
        name=model.name,
        architecture_sha=fp["architecture"],
        weights_sha=fp["weights"],
        exit_points=tuple(exits),
        semantic_dims=tuple(ref.encoders[e].dims for e in exits),
        class_names=tuple(CATALOGUE.names()),
        class_mapping=tuple(int(c) for c in mapping.mapping),
    )
    provenance = dict(trace.meta.provenance)
    provenance["recorder"] = {
        "tool": "engram trace record",
        **asdict(settings),
        "strength": strength,
        "image_size": size,
        "mapping": mapping.describe(),
        "instances": "one per (video, primary class): the same object keeps its look when it comes back",
        "frame_diff": FRAME_DIFF_RULE.format(tile=settings.tile, thr=settings.change_threshold),
        "input_desc": "frame averaged to 4x4 RGB, centred, L2-normalised",
    }
    meta = TraceMeta(
        source=trace.meta.source,
        license=trace.meta.license,
        attribution=trace.meta.attribution,
        fps=trace.meta.fps,
        class_names=trace.meta.class_names,
        primary_rule=trace.meta.primary_rule,
        provenance=provenance,
    )
    return RecordedTrace(
        labels=trace.with_meta(meta),
        model=info,
        true_class=true_class,
        prediction=prediction,
        vectors=vectors,
        head_pred=head_pred,
        head_entropy=head_entropy,
        frame_diff=frame_diff,
        input_desc=input_desc,
    )
