"""Recording the user's own frames (``trace record --frames``), with the reference CNN or the user's model.

The rendered recorder (:mod:`traces.record`) makes its frames from a label trace; here the frames exist
(image folders or video files, :mod:`traces.frames`) and a label trace is optional:

- **with labels** (``--trace``), each label row is matched to a frame by video name and frame index; only
  labelled frames are recorded (a label trace's gaps are frames with nothing in view), and the label
  trace's frame rate must be the frames' rate, or the indices would not line up. Ground truth is
  ``class_mapping[label]`` as for rendered frames.
- **without labels**, every frame is recorded, and the trace format's label columns hold the model's own
  top-1 prediction. The trace says so: ``primary_rule`` is ``model-prediction`` and the recorder's
  provenance has ``ground_truth: model-prediction``, so accuracy against it is 100% by construction.

A user's model has no shipped semantic encoders or exit heads. They are fitted on a declared calibration
set (``--calibration-frames``, never the recorded frames unless the user points at them), with its labels
when given, else PCA unsupervised and the model's own predictions as head targets. They are written next to
the output as safetensors (``<out>.encoders.safetensors``, ``<out>.heads.safetensors``, bound to the model's
fingerprint, readable with ``kernels.reference.store.load_encoders/load_heads``), and the trace records
their file names and SHA-256, so the vectors can be recomputed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engram.errors import EngramError, FormatError
from engram.fileio import atomic_path
from traces.format import INPUT_DESC_DIMS, LabelTrace, ModelInfo, PrimaryRule, RecordedTrace, TraceMeta, validate, write_trace
from traces.frames import VideoSource, discover
from traces.mapping import ClassMapping
from engram.input_descriptor import describe_input
from traces.record import FRAME_DIFF_RULE, RecordSettings, tile_change
from traces.user_model import Normalisation, pool

FPS_TOLERANCE = 0.01  # relative
MODEL_PREDICTION_RULE = PrimaryRule(
    "model-prediction",
    "no label trace was given: each frame's primary (and only) object is the recorded model's own top-1 "
    "prediction, so true_class equals prediction by construction",
)
PROJECTION = "global average pooling, centred PCA, L2 normalisation"


@dataclass
class FramePlan:
    """Which frames to read, in which order, and the label rows they stand for."""

    root: Path
    sources: list[VideoSource]
    wanted: list[np.ndarray | None]  # ascending frame indices per source, None = every frame
    labels: LabelTrace | None  # rows in stream order (video by video, frames ascending)
    labels_path: Path | None
    fps: float | None
    max_frames: int | None = None  # without labels: stop after this many frames
    pairing: dict[str, str] = field(default_factory=dict)  # trace video -> frames source, where names differ

    def total(self) -> int | None:
        if self.labels is not None:
            return len(self.labels)
        counts = [s.count() for s in self.sources]
        if any(c is None for c in counts):
            return self.max_frames
        n = sum(counts)  # type: ignore[arg-type]
        return n if self.max_frames is None else min(n, self.max_frames)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.root),
            "videos": {s.name: s.describe(self.root) for s in self.sources},
            **({"paired": self.pairing} if self.pairing else {}),
        }


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= FPS_TOLERANCE * max(a, b)


def plan_frames(
    frames_path: Path,
    labels: LabelTrace | None = None,
    labels_path: Path | None = None,
    fps: float | None = None,
    videos: list[str] | None = None,
    max_frames: int | None = None,
    need_fps: bool = True,
) -> FramePlan:
    """Find the videos at ``frames_path`` and match them to the label trace (if any); check everything
    that can be checked before decoding. ``need_fps=False`` (calibration frames, whose times do not matter)
    skips the frame-rate rules except the one that keeps frame indices in line with a label trace."""
    frames_path = Path(frames_path)
    sources = discover(frames_path)
    if videos:
        names = [s.name for s in sources]
        unknown = [v for v in videos if v not in names]
        if unknown:
            raise EngramError(f"no video {unknown[0]!r} among the frames (videos: {_list(names)})", path=frames_path,
                              field="--videos")
        sources = [s for s in sources if s.name in videos]
    if labels is None and not need_fps:
        return FramePlan(frames_path, sources, [None] * len(sources), None, None, None, max_frames)
    video_rates = {s.name: s.fps() for s in sources if s.kind == "video"}
    if fps is not None and video_rates and len(video_rates) == len(sources):
        raise EngramError("--fps only applies to image folders: a video file's frame times come from the file",
                          path=frames_path, field="--fps")

    if labels is None:
        rates = {n: r for n, r in video_rates.items() if r is not None}
        if len(rates) < len(sources):  # image folders, or videos that do not state a rate
            if fps is None:
                missing = next(s for s in sources if rates.get(s.name) is None)
                raise EngramError(f"give --fps: without a label trace, the frame rate of {missing.name!r} "
                                  f"({missing.kind}) is unknown", path=missing.path, field="--fps")
            rates.update({s.name: fps for s in sources if s.name not in rates})
        first = next(iter(rates.values()))
        for n, r in rates.items():
            if not _close(r, first):
                raise EngramError(f"videos have different frame rates ({sources[0].name!r} {first:g} fps, {n!r} {r:g} fps): "
                                  "a trace has one frame grid; record them separately", path=frames_path, field="fps")
        return FramePlan(frames_path, sources, [None] * len(sources), None, None, first, max_frames)

    assert labels_path is not None
    labels = labels.pick(videos, max_frames, labels_path)

    pairing: dict[str, str] = {}
    by_name = {s.name: s for s in sources}
    label_videos = list(labels.video_names)
    if len(sources) == 1 and len(label_videos) == 1 and sources[0].name != label_videos[0]:
        # One video on each side: they belong together whatever their names; the pairing is recorded.
        pairing[label_videos[0]] = sources[0].name
        by_name = {label_videos[0]: sources[0]}
    for v in label_videos:
        if v not in by_name:
            raise FormatError(f"video {v!r} has labels but no frames in {frames_path} (videos there: "
                              f"{_list(list(by_name))})", path=labels_path, field="video")
    unlabelled = [n for n in by_name if n not in label_videos]
    if unlabelled:
        raise EngramError(f"video {unlabelled[0]!r} has frames but no rows in {labels_path} (record a part of the "
                          "frames with --videos)", path=by_name[unlabelled[0]].path, field="video")

    ordered = [by_name[v] for v in label_videos]
    wanted: list[np.ndarray | None] = []
    for name, start, stop in labels.video_bounds():
        src = by_name[name]
        frames = labels.frame[start:stop].copy()
        n = src.count()
        if n is not None and frames[-1] >= n:
            raise FormatError(f"video {name!r}: the label trace has frame {int(frames[-1])} but {src.path} holds only "
                              f"{n} frames", path=labels_path, field="frame")
        wanted.append(frames)

    label_fps = labels.meta.fps
    for src in ordered:
        rate = video_rates.get(src.name) if src.kind == "video" else fps
        if rate is not None and not _close(rate, label_fps):
            raise EngramError(f"the label trace is at {label_fps:g} fps but {src.name!r} at {rate:g} fps: frame indices "
                              "would not line up (import the labels at the frames' rate)", path=src.path, field="fps")
    return FramePlan(frames_path, ordered, wanted, labels, Path(labels_path), label_fps, None, pairing)


def _list(names: list[str], limit: int = 6) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


# ----------------------------------------------------------------------------------------------------------
# Running the model over a plan
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Features:
    """Per recorded frame, in plan order."""

    source: np.ndarray  # int (n,) index into plan.sources
    frame: np.ndarray  # int64 (n,)
    time_s: np.ndarray  # float64 (n,), NaN where the file gives no time
    prediction: np.ndarray  # int64 (n,)
    pooled: dict[str, np.ndarray]  # exit -> (n, C) float32
    frame_diff: np.ndarray  # float32 (n,)
    input_desc: np.ndarray  # float32 (n, 48)

    def __len__(self) -> int:
        return int(self.frame.shape[0])


def extract(
    model,  # kernels.blockwise.BlockwiseModel
    norm: Normalisation,
    plan: FramePlan,
    resize: str = "stretch",
    batch: int = 64,
    settings: RecordSettings = RecordSettings(),
    progress: Callable[[int], None] | None = None,
) -> Features:
    """Decode the plan's frames, run the model block by block, keep pooled exit features and the rest."""
    import torch

    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    tile = max(1, min(settings.tile, *size))  # a model input smaller than a tile is one tile
    exits = list(model.exit_points)
    src_l: list[int] = []
    frame_l: list[int] = []
    time_l: list[float] = []
    diff_l: list[float] = []
    imgs: list[np.ndarray] = []
    pred_l: list[np.ndarray] = []
    pooled_l: dict[str, list[np.ndarray]] = {e: [] for e in exits}
    desc_l: list[np.ndarray] = []

    def flush() -> None:
        if not imgs:
            return
        x = np.stack(imgs)
        desc_l.append(describe_input(x))
        with torch.no_grad():
            out, feats = model.forward_exits(torch.from_numpy(np.ascontiguousarray(norm.apply(x), dtype=np.float32)))
        pred_l.append(out.argmax(1).numpy())
        for e in exits:
            pooled_l[e].append(pool(feats[e]))
        if progress is not None:
            progress(len(imgs))
        imgs.clear()

    done = False
    for si, src in enumerate(plan.sources):
        wanted = plan.wanted[si]
        prev: np.ndarray | None = None
        got = 0
        for fi, t, img in src.frames(size, resize, wanted):
            diff = 1.0 if prev is None else float(tile_change(prev[None], img[None], tile, settings.change_threshold)[0])
            prev = img
            src_l.append(si)
            frame_l.append(fi)
            time_l.append(np.nan if t is None else t)
            diff_l.append(diff)
            imgs.append(img)
            got += 1
            if len(imgs) >= batch:
                flush()
            if plan.max_frames is not None and len(frame_l) >= plan.max_frames:
                done = True
                break
        if wanted is not None and got < len(wanted):
            name = plan.labels.video_names[si] if plan.labels is not None else src.name
            raise FormatError(f"video {name!r}: the label trace has frame {int(wanted[got])} but {src.path} ends "
                              "before it", path=plan.labels_path, field="frame")
        if done:
            break
    flush()
    if not frame_l:
        raise EngramError("no frames to record", path=plan.root)
    return Features(
        source=np.asarray(src_l, np.int64),
        frame=np.asarray(frame_l, np.int64),
        time_s=np.asarray(time_l, np.float64),
        prediction=np.concatenate(pred_l).astype(np.int64),
        pooled={e: np.concatenate(v) for e, v in pooled_l.items()},
        frame_diff=np.asarray(diff_l, np.float32),
        input_desc=np.concatenate(desc_l),
    )


# ----------------------------------------------------------------------------------------------------------
# Calibration: semantic encoders and exit heads for a user's model
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Fitted:
    encoders: dict  # exit -> SemanticEncoder
    heads: dict  # exit -> ExitHead
    description: dict[str, Any]


def fit_on_calibration(model, feats: Features, plan: FramePlan, mapping: ClassMapping | None, dims: int) -> Fitted:
    """Encoders (PCA to ``dims``, L2-normalised; centres per class) and linear exit heads on calibration frames."""
    from kernels.reference.encoders import fit_encoder
    from kernels.reference.heads import fit_heads

    if len(feats) < 2:
        raise EngramError(f"calibration needs at least 2 frames, {plan.root} gives {len(feats)}", path=plan.root,
                          field="--calibration-frames")
    if plan.labels is not None:
        assert mapping is not None
        targets = mapping.mapping[plan.labels.label].astype(np.int64)
        kind = "labels"
    else:
        targets = feats.prediction
        kind = "model-prediction"
    k = model.num_classes
    encoders = {e: fit_encoder(e, feats.pooled[e], targets, dims, k) for e in model.exit_points}
    heads = fit_heads(feats.pooled, targets, k)
    desc = {
        "frames": plan.describe(),
        "count": len(feats),
        "labels": str(plan.labels_path) if plan.labels_path is not None else None,
        "targets": kind,
        **({} if kind == "labels" else {"targets_note": "no calibration labels: the PCA needs none; class centres and "
                                                        "exit heads are fitted to the model's own top-1"}),
        **({"mapping": mapping.describe()} if mapping is not None and plan.labels is not None else {}),
        "dims": dims,
    }
    return Fitted(encoders, heads, desc)


# ----------------------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FramesModel:
    """The model side of a frames recording."""

    model: Any  # BlockwiseModel
    class_names: tuple[str, ...]
    norm: Normalisation
    encoders: dict  # exit -> SemanticEncoder
    heads: dict  # exit -> ExitHead
    provenance: dict[str, Any]  # how the model was built; encoders/heads: how they were obtained


@dataclass
class Recording:
    trace: RecordedTrace
    sidecars: dict[Path, bytes]  # files to write next to the trace (fitted encoders and heads)


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.encoders.safetensors"), out.with_name(f"{stem}.heads.safetensors")


def record_frames(
    plan: FramePlan,
    fm: FramesModel,
    mapping: ClassMapping | None,
    out: Path,
    resize: str = "stretch",
    batch: int = 64,
    fitted: Fitted | None = None,
    progress: Callable[[int], None] | None = None,
) -> Recording:
    from kernels.reference.heads import predict_from_logits
    from kernels.reference.store import encoders_bytes, heads_bytes

    model = fm.model
    settings = RecordSettings(batch=batch)
    feats = extract(model, fm.norm, plan, resize, batch, settings, progress)
    exits = list(model.exit_points)
    encoders = fitted.encoders if fitted is not None else fm.encoders
    heads = fitted.heads if fitted is not None else fm.heads
    vectors, head_pred, head_entropy = {}, {}, {}
    for e in exits:
        vectors[e] = encoders[e].encode_pooled(feats.pooled[e])
        head_pred[e], head_entropy[e] = predict_from_logits(heads[e].logits(feats.pooled[e]))
        norms = np.linalg.norm(vectors[e], axis=1)
        if np.any(norms < 0.5):
            row = int(np.flatnonzero(norms < 0.5)[0])
            src = plan.sources[int(feats.source[row])]
            raise EngramError(f"exit point {e!r}: frame {int(feats.frame[row])} of {src.name!r} has a zero semantic "
                              "vector (its pooled features equal the calibration mean); the calibration set is too "
                              "small or the exit's features are constant", field="--exit-points")

    fp = model.fingerprint()
    sidecars: dict[Path, bytes] = {}
    enc_info: dict[str, Any]
    head_info: dict[str, Any]
    if fitted is not None:
        enc_path, head_path = sidecar_paths(out)
        enc_meta = {"calibration": fitted.description, "projection": PROJECTION}
        eb, hb = encoders_bytes(encoders, fp, enc_meta), heads_bytes(heads, fp, {"calibration": fitted.description})
        sidecars = {enc_path: eb, head_path: hb}
        enc_info = {"file": enc_path.name, "sha256": hashlib.sha256(eb).hexdigest(), "projection": PROJECTION,
                    "calibration": fitted.description}
        head_info = {"file": head_path.name, "sha256": hashlib.sha256(hb).hexdigest(),
                     "calibration": "as the encoders'"}
    else:
        enc_info = {"file": "shipped with the model (bound to its fingerprint)", "projection": PROJECTION}
        head_info = {"file": "shipped with the model (bound to its fingerprint)"}

    recorder: dict[str, Any] = {
        "tool": "engram trace record",
        "input": "frames",
        "frames": {**plan.describe(), "resize": resize, "image_size": [int(v) for v in model.input_shape[1:]],
                   "resampling": "Pillow bilinear (antialiased), EXIF orientation applied",
                   "normalize": fm.norm.describe()},
        "model": fm.provenance,
        "encoders": enc_info,
        "heads": head_info,
        "batch": batch,
        "frame_diff": FRAME_DIFF_RULE.format(tile=settings.tile, thr=settings.change_threshold)
        + " (the previous recorded frame; measured on the resized frame, RGB in [0, 1])",
        "input_desc": "frame averaged to 4x4 RGB, centred, L2-normalised (resized frame, RGB in [0, 1])",
    }
    k = len(fm.class_names)
    if plan.labels is not None:
        assert mapping is not None
        labels = plan.labels
        if not (np.array_equal(feats.frame, labels.frame) and len(feats) == len(labels)):  # pragma: no cover
            raise AssertionError("frames and label rows out of step")
        true_class = mapping.mapping[labels.label].astype(np.int64)
        recorder.update(ground_truth="labels", labels=str(plan.labels_path), mapping=mapping.describe(),
                        unlabelled_frames="not recorded (a label trace's gaps are frames with nothing in view)",
                        time_s="the label trace's")
        provenance = dict(labels.meta.provenance)
        provenance["recorder"] = recorder
        meta = TraceMeta(source=labels.meta.source, license=labels.meta.license, attribution=labels.meta.attribution,
                         fps=labels.meta.fps, class_names=labels.meta.class_names,
                         primary_rule=labels.meta.primary_rule, provenance=provenance)
        out_labels = labels.with_meta(meta)
        class_mapping = tuple(int(c) for c in mapping.mapping)
    else:
        assert plan.fps is not None
        time_s = np.where(np.isnan(feats.time_s), feats.frame / plan.fps, feats.time_s)
        recorder.update(ground_truth="model-prediction", labels=None,
                        ground_truth_note="no label trace: label, objects and true_class are the model's own top-1",
                        time_s="the video's frame times; image folders and frames without a time: frame / fps")
        meta = TraceMeta(source=f"{fm.model.name} top-1 predictions on the frames in {plan.root}",
                         license="not stated (the user's own frames)", attribution="not stated",
                         fps=plan.fps, class_names=fm.class_names, primary_rule=MODEL_PREDICTION_RULE,
                         provenance={"recorder": recorder})
        names = [plan.sources[int(s)].name for s in feats.source]
        out_labels = LabelTrace.from_frames(meta, names, feats.frame, time_s, [[int(p)] for p in feats.prediction])
        true_class = feats.prediction
        class_mapping = tuple(range(k))

    info = ModelInfo(
        name=model.name,
        architecture_sha=fp["architecture"],
        weights_sha=fp["weights"],
        exit_points=tuple(exits),
        semantic_dims=tuple(encoders[e].dims for e in exits),
        class_names=fm.class_names,
        class_mapping=class_mapping,
    )
    assert feats.input_desc.shape[1] == INPUT_DESC_DIMS
    rec = RecordedTrace(labels=out_labels, model=info, true_class=true_class, prediction=feats.prediction,
                        vectors=vectors, head_pred=head_pred, head_entropy=head_entropy,
                        frame_diff=feats.frame_diff, input_desc=feats.input_desc)
    return Recording(rec, sidecars)


def write_recording(recording: Recording, out: Path) -> Path:
    """Write the sidecars and the trace so that a failure leaves none of them behind.

    The trace is validated first; each sidecar goes to a temporary file that replaces its target only once
    the trace is written (itself atomically).
    """
    validate(recording.trace, path=out)
    paths = list(recording.sidecars)
    if any(p.resolve() == Path(out).resolve() for p in paths):
        raise EngramError("the output would overwrite its own encoders file; give --out a .parquet name", path=out)

    def nest(i: int) -> None:
        if i == len(paths):
            write_trace(recording.trace, out)
            return
        with atomic_path(paths[i]) as tmp:
            tmp.write_bytes(recording.sidecars[paths[i]])
            nest(i + 1)

    nest(0)
    return Path(out)
