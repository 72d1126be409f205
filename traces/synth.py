"""Synthetic long-tail label traces with scene regimes, for sweeping the statistics that drive caching.

The generative model, per video:

1. **Popularity.** Class ``c`` (0-based) has weight ``1 / (c + 1) ** zipf``: class 0 is the most common.
2. **Regimes.** Each of ``regimes`` scenes (a kitchen, a street...) owns ``regime_classes`` classes, drawn
   without replacement in proportion to popularity, so popular classes recur across scenes and the tail is
   scene-specific. Within a regime, classes are drawn in proportion to their popularity.
3. **Regime switching** is a Markov chain: a regime lasts a geometric number of frames with mean
   ``regime_dwell_s`` seconds, then the scene moves to one of the other regimes, uniformly.
4. **Objects.** The primary object stays in view for a geometric number of frames with mean ``dwell_s``
   seconds; the next one is drawn from the regime current at that moment, never the same class twice in a
   row (so ``dwell_s`` is the real mean run length). Alongside it, a Poisson(``extra_objects``) number of
   other classes of the regime are in view for the same period.

All draws come from one ``numpy.random.Generator(PCG64(seed))``, so a seed gives the same trace every time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engram.errors import EngramError
from traces.format import LabelTrace, PrimaryRule, TraceMeta

RULE_SYNTHETIC = PrimaryRule(
    "synthetic",
    "Generated: one primary object at a time (geometric dwell); the other objects in view are extra classes "
    "of the same scene regime, listed after it.",
)


@dataclass(frozen=True)
class SynthParams:
    classes: int = 100
    zipf: float = 1.0
    regimes: int = 4
    regime_classes: int = 12
    regime_dwell_s: float = 60.0
    dwell_s: float = 2.0
    extra_objects: float = 0.5
    videos: int = 4
    frames: int = 3000  # per video
    fps: float = 10.0
    seed: int = 0

    def check(self) -> None:
        if self.classes < 1 or self.regimes < 1 or self.videos < 1 or self.frames < 1:
            raise EngramError("classes, regimes, videos and frames must be at least 1")
        if not 1 <= self.regime_classes <= self.classes:
            raise EngramError(f"regime_classes must be between 1 and classes ({self.classes}), got {self.regime_classes}")
        for name in ("fps", "dwell_s", "regime_dwell_s"):
            if not getattr(self, name) > 0:
                raise EngramError(f"{name} must be positive")
        if self.zipf < 0 or self.extra_objects < 0:
            raise EngramError("zipf and extra_objects must be >= 0")
        if self.seed < 0:
            raise EngramError("seed must be >= 0")


def class_names(n: int) -> tuple[str, ...]:
    width = max(3, len(str(n - 1)))
    return tuple(f"class_{i:0{width}d}" for i in range(n))


def _geometric(rng: np.random.Generator, mean_frames: float) -> int:
    return int(rng.geometric(1.0 / mean_frames)) if mean_frames > 1 else 1


def synthesize(params: SynthParams) -> LabelTrace:
    params.check()
    rng = np.random.Generator(np.random.PCG64(params.seed))
    weights = 1.0 / np.arange(1, params.classes + 1, dtype=np.float64) ** params.zipf
    weights /= weights.sum()
    regimes = [np.sort(rng.choice(params.classes, size=params.regime_classes, replace=False, p=weights))
               for _ in range(params.regimes)]
    probs = [weights[r] / weights[r].sum() for r in regimes]
    dwell = params.dwell_s * params.fps
    regime_dwell = params.regime_dwell_s * params.fps

    video, frame, objects = [], [], []
    for v in range(params.videos):
        name = f"synth_{v:03d}"
        # Regime timeline: regime_of[f] for every frame of the video.
        regime_of = np.empty(params.frames, dtype=np.int64)
        f, r = 0, int(rng.integers(params.regimes))
        while f < params.frames:
            n = _geometric(rng, regime_dwell)
            regime_of[f: f + n] = r
            f += n
            if params.regimes > 1:
                r = int((r + 1 + rng.integers(params.regimes - 1)) % params.regimes)
        f, current = 0, -1
        while f < params.frames:
            r = int(regime_of[f])
            members, p = regimes[r], probs[r]
            if len(members) > 1 and current in members:
                keep = members != current
                members, p = members[keep], p[keep] / p[keep].sum()
            current = int(rng.choice(members, p=p))
            k = min(int(rng.poisson(params.extra_objects)), len(regimes[r]) - 1)
            extras: list[int] = []
            if k:
                pool = regimes[r][regimes[r] != current]
                pp = weights[pool] / weights[pool].sum()
                extras = [int(c) for c in rng.choice(pool, size=k, replace=False, p=pp)]
            n = min(_geometric(rng, dwell), params.frames - f)
            objs = [current, *extras]
            for i in range(f, f + n):
                video.append(name)
                frame.append(i)
                objects.append(objs)
            f += n
    frame_arr = np.asarray(frame, dtype=np.int64)
    meta = TraceMeta(
        source=f"synthetic: engram trace synth (seed {params.seed})",
        license="CC0-1.0 (generated data, no rights reserved)",
        attribution="Generated by Engram's trace synthesiser",
        fps=params.fps,
        class_names=class_names(params.classes),
        primary_rule=RULE_SYNTHETIC,
        provenance={"tool": "engram trace synth", "params": asdict(params),
                    "regimes": [r.tolist() for r in regimes]},
    )
    return LabelTrace.from_frames(meta, video, frame_arr, frame_arr / params.fps, objects)
