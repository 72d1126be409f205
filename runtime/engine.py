"""The runtime: a bundle's policy run for real, frame by frame, block by block.

Per frame: with a policy that has an input level (``input_reuse``, :class:`runtime.input_level.InputLevel`),
describe the frame and reuse the answer of the video's last frame that ran the model if the frame is still like
it; otherwise copy the frame to the device, run the blocks in order (TVM executables); after each block an enabled
exit point follows, pool, centre, project and normalise the feature map with that exit's encoder and search the
semantic cache (:class:`runtime.smtm.CacheDecider`: the simulator's SMTM semantics); stop at the first
confident exit with the cached class, else run to the end and let the model's answer update the cache. The
wall-clock latency of the whole frame (``perf_counter`` from the frame's arrival in :meth:`Runtime.step` to its
answer, cache update included) and of every block is recorded, with the exit point, the answer and whether it
was a hot or cold hit.

Frames are numpy arrays ``(N, 3, H, W)`` float32, already normalised as the model expects. Timestamps (seconds)
drive the cache's recency and adaptation rules exactly as arrival times do in the simulator; without them the
runtime uses the monotonic clock.

Vectors are searched at float16 precision, the precision a recorded trace stores them at and so the one the
simulator decides on: in float32 the two sides' vectors differ by up to half a float16 step, and with the
temporal exit metric one decision taken differently changes the previous answer of the next frame, so a
single difference can carry on for a whole run of frames.

Only numpy and the TVM runtime are called per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from engram.errors import EngramError, MismatchError
from runtime.bundle import Bundle
from runtime.input_level import InputLevel
from runtime.smtm import FULL, SEARCH_DTYPE, CacheDecider

NO_HIT = -1
INPUT = -3  # exit_index of a frame answered by the input level (no block ran), as the simulator's


@dataclass(frozen=True)
class FrameResult:
    exit: str | None  # exit point the frame left at ("input": the input level; None: it ran the whole model)
    exit_index: int  # index into the enabled exits, FULL (-1) for the whole model, INPUT (-3) for the input level
    answer: int
    level: int  # cache level of the hit: 0 hot, 1 cold, -1 none
    latency_ms: float  # the whole frame: blocks, encodings and lookups, cache update
    block_ms: np.ndarray  # (blocks,) time of each block (0 for blocks not run)
    lookup_ms: float  # encoding + search at the exit points
    update_ms: float  # recording the hit, or the cache update of a confirmed frame
    entries: int  # cache entries the frame was compared against


@dataclass
class RunLog:
    """Per-frame results of a run, as arrays."""

    enabled: tuple[str, ...]
    blocks: tuple[str, ...]
    exit_index: np.ndarray  # (n,) int, FULL for the whole model, INPUT for the input level
    answer: np.ndarray  # (n,) int
    level: np.ndarray  # (n,) int8
    latency_ms: np.ndarray  # (n,)
    block_ms: np.ndarray  # (n, blocks)
    lookup_ms: np.ndarray  # (n,)
    update_ms: np.ndarray  # (n,)
    entries: np.ndarray  # (n,)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.answer)

    @property
    def exits(self) -> list[str | None]:
        return [None if k == FULL else "input" if k == INPUT else self.enabled[k] for k in self.exit_index]

    def summary(self, true_class: np.ndarray | None = None) -> dict[str, Any]:
        """Measured metrics, named like the simulator's (``simulator.metrics``) where they mean the same."""
        n = len(self)
        lat = self.latency_ms
        hist = {e: int(np.count_nonzero(self.exit_index == k)) for k, e in enumerate(self.enabled)}
        if np.any(self.exit_index == INPUT):
            hist = {"input": int(np.count_nonzero(self.exit_index == INPUT)), **hist}
        hist["full"] = int(np.count_nonzero(self.exit_index == FULL))
        m: dict[str, Any] = {
            "frames": n,
            "mean_latency_ms": float(lat.mean()) if n else 0.0,
            "p50_latency_ms": float(np.percentile(lat, 50)) if n else 0.0,
            "p99_latency_ms": float(np.percentile(lat, 99)) if n else 0.0,
            "mean_block_ms": {b: float(v) for b, v in zip(self.blocks, self.block_ms.mean(axis=0))} if n else {},
            "mean_lookup_ms": float(self.lookup_ms.mean()) if n else 0.0,
            "mean_update_ms": float(self.update_ms.mean()) if n else 0.0,
            "hit_rate": {"hot": float(np.mean(self.level == 0)) if n else 0.0,
                         "cold": float(np.mean(self.level == 1)) if n else 0.0},
            "exit_histogram": hist,
        }
        if true_class is not None:
            m["accuracy"] = float(np.mean(self.answer == np.asarray(true_class))) if n else 0.0
        return m


class Runtime:
    """Runs frames under a bundle's policy with per-block executables (:class:`runtime.blocks.TvmBlocks`)."""

    def __init__(self, bundle: Bundle, blocks) -> None:  # noqa: ANN001
        m = bundle.model
        if tuple(blocks.names) != tuple(m.blocks):
            raise MismatchError(f"the executables' blocks ({', '.join(blocks.names)}) are not the model's "
                                f"({', '.join(m.blocks)})", path=str(bundle.path), field="model.blocks")
        self.bundle = bundle
        self.blocks = blocks
        self.policy = bundle.policy
        self.input_shape = tuple(int(v) for v in m.input_shape)
        names = list(m.blocks)
        self.kind = self.policy.kind
        self.enabled = bundle.enabled if self.kind == "smtm" else ()
        self.exit_at = [-1] * len(names)
        for k, e in enumerate(self.enabled):
            self.exit_at[names.index(e)] = k
        self.encoders = [bundle.encoders[e] for e in self.enabled]
        self.dims = tuple(enc.dims for enc in self.encoders)
        self.dmax = max(self.dims) if self.dims else 1
        self.decider: CacheDecider | None = None
        self.input_level: InputLevel | None = None
        self.reset()

    def reset(self) -> None:
        """Start over with an empty cache."""
        if self.kind == "smtm":
            self.decider = CacheDecider(self.policy, self.enabled, tuple(self.bundle.model.exit_points), self.dims,
                                        self.bundle.model.num_classes)
            reuse = self.policy.input_reuse
            self.input_level = InputLevel(reuse.similarity, reuse.max_run) if reuse is not None else None
        self._vec = np.zeros((len(self.enabled), self.dmax), dtype=np.float32)

    # -- per frame -----------------------------------------------------------------------------------------
    def step(self, frame: np.ndarray, t: float | None = None, new_video: bool = False) -> FrameResult:
        """Run one frame ``(3, H, W)`` or ``(1, 3, H, W)`` arriving at time ``t`` (seconds)."""
        t0 = time.perf_counter()
        if t is None:
            t = time.monotonic()
        dec = self.decider
        fns = self.blocks.functions
        to_numpy = self.blocks.to_numpy
        nb = len(fns)
        block_ms = np.zeros(nb)
        lookup_s = 0.0
        entries = 0
        level_in = self.input_level
        if level_in is not None:
            # Before the copy-in: a frame that reuses an answer never touches the device.
            desc = level_in.describe(frame)
            reused = level_in.reuse(desc, new_video)
            lookup_s = time.perf_counter() - t0
            if reused is not None:
                t1 = time.perf_counter()
                return FrameResult("input", INPUT, reused, NO_HIT, (t1 - t0) * 1000.0, block_ms, lookup_s * 1000.0,
                                   0.0, 0)
        if dec is not None:
            dec.begin(t, new_video)
            entries = dec.K
        cur = self.blocks.input(frame.reshape(1, *self.input_shape))
        hit = None
        k_exit = FULL
        vec = self._vec
        for j in range(nb):
            tb = time.perf_counter()
            cur = fns[j](cur)
            te = time.perf_counter()
            block_ms[j] = (te - tb) * 1000.0
            k = self.exit_at[j]
            if k >= 0:
                vec[k, : self.dims[k]] = self.encoders[k].encode(to_numpy(cur))[0].astype(SEARCH_DTYPE)
                hit = dec.lookup(k, vec[k])
                lookup_s += time.perf_counter() - te
                if hit is not None:
                    k_exit = k
                    break
        tu = time.perf_counter()
        if hit is not None:
            answer, level = dec.hit(hit[0])
        else:
            answer, level = int(np.argmax(to_numpy(cur).reshape(-1))), NO_HIT
            tu = time.perf_counter()
            if dec is not None:
                dec.confirm(answer, vec)
        if level_in is not None:
            level_in.ran(desc, answer)
        t1 = time.perf_counter()
        return FrameResult(None if k_exit == FULL else self.enabled[k_exit], k_exit, answer, level, (t1 - t0) * 1000.0,
                           block_ms, lookup_s * 1000.0, (t1 - tu) * 1000.0, entries)

    def run(self, frames: np.ndarray, times: Sequence[float] | np.ndarray | None = None,
            new_video: Sequence[bool] | np.ndarray | None = None,
            progress: Callable[[int, int], None] | None = None) -> RunLog:
        """Run frames ``(N, 3, H, W)`` in order; ``times``: arrival times (seconds); ``new_video``: first frames of
        videos (a scene-reset policy resets the cache there)."""
        frames = self._check_frames(frames)
        n = len(frames)
        if times is not None and len(times) != n:
            raise EngramError(f"{len(times)} timestamps for {n} frames")
        if new_video is not None and len(new_video) != n:
            raise EngramError(f"{len(new_video)} new-video flags for {n} frames")
        nb = len(self.blocks.functions)
        log = RunLog(self.enabled, tuple(self.blocks.names), np.full(n, FULL, np.int64), np.full(n, -1, np.int64),
                     np.full(n, NO_HIT, np.int8), np.zeros(n), np.zeros((n, nb)), np.zeros(n), np.zeros(n),
                     np.zeros(n, np.int64))
        for i in range(n):
            r = self.step(frames[i], None if times is None else float(times[i]),
                          bool(new_video[i]) if new_video is not None else False)
            log.exit_index[i], log.answer[i], log.level[i] = r.exit_index, r.answer, r.level
            log.latency_ms[i], log.block_ms[i], log.lookup_ms[i] = r.latency_ms, r.block_ms, r.lookup_ms
            log.update_ms[i], log.entries[i] = r.update_ms, r.entries
            if progress is not None:
                progress(i + 1, n)
        if self.decider is not None:
            log.extra["scene_changes"] = self.decider.scene_changes
            log.extra["cache_bytes"] = self.decider.cache_bytes
        return log

    def features(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every frame's vectors at every enabled exit ``(N, E, dmax)`` (zero-padded, float32 before the search's
        float16 rounding) and the model's answer, from the same executables and encoders as :meth:`step`, with the
        cache left alone (for checking decisions)."""
        frames = self._check_frames(frames)
        n = len(frames)
        vectors = np.zeros((n, len(self.enabled), self.dmax), dtype=np.float32)
        pred = np.empty(n, dtype=np.int64)
        for i in range(n):
            cur = self.blocks.input(frames[i].reshape(1, *self.input_shape))
            for j, fn in enumerate(self.blocks.functions):
                cur = fn(cur)
                k = self.exit_at[j]
                if k >= 0:
                    vectors[i, k, : self.dims[k]] = self.encoders[k].encode(self.blocks.to_numpy(cur))[0]
            pred[i] = int(np.argmax(self.blocks.to_numpy(cur).reshape(-1)))
        return vectors, pred

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.input_shape:
            raise EngramError(f"frames must be (N, {', '.join(map(str, self.input_shape))}), got {frames.shape}")
        if frames.dtype != np.float32:
            raise EngramError(f"frames must be float32 (normalised as the model expects), got {frames.dtype}")
        return frames


def load_runtime(bundle_path, model, target=None) -> Runtime:  # noqa: ANN001
    """Read a bundle for ``model`` (a BlockwiseModel), compile its blocks for this CPU and return the runtime, with
    as many TVM threads as the bundle's profile was timed with (unless TVM's pool already runs in this process)."""
    from kernels.tvm.threads import use_threads
    from runtime.blocks import compile_blocks
    from runtime.bundle import read_bundle

    bundle = read_bundle(bundle_path, model)
    use_threads(bundle.manifest.profile.threads)
    blocks, _ = compile_blocks(model, target)
    return Runtime(bundle, blocks)
