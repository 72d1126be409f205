"""The semantic cache's per-frame decisions on the device: the simulator's SMTM semantics, one frame at a time.

``simulator.smtm.SmtmEngine`` is the reference: it decides a chunk of recorded frames at once, with every exit's
vector known in advance. Here a frame's vectors arrive one exit at a time, as its blocks run, so the same
decision is taken lazily: at each enabled exit, in order, search the hot level; if that is not confident and the
cold level is searched at that exit (``cache.cold_from``), search both levels; stop at the first confident exit
with the cached class. The ``temporal`` metric also asks whether the top-1 class is the previous answer in the
same video, and how far the frame has drifted from the video's last confirmed frame at the first enabled exit;
the decider keeps both itself (every frame ends in :meth:`hit` or :meth:`confirm`). A frame that runs to the
end is *confirmed*: the full model's answer updates the cache (insertion, ``ema``), with the adaptation rules
(``working-set``, ``scene-reset``). A cold hit promotes its class.
The cache itself is the simulator's :class:`simulator.cache.SemanticCache` (numpy only), so slots, levels,
replacement and promotions are the same code.

Arithmetic follows ``SmtmEngine._logits`` operation for operation (float32 similarities and log distances,
float64 logistic sums, the same slot order: hot slots first, each level by slot number), so that the same
vectors give the same decisions. Uses (hits) are recorded at once instead of in batches; they change only
which class leaves next, and every batch in the simulator is applied before the next change, so the order of
events is the same.

Everything here is numpy; nothing is called per frame that allocates more than a few small arrays.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from simulator.adaptation import Adapter, new_cache
from simulator.cache import COLD, HOT
from simulator.exit_metric import LOGISTIC_METRICS, MIN_DISTANCE, bias_terms, drift

NEG = -np.inf
FULL = -1
SEARCH_DTYPE = np.float16  # the recorded traces' vector and descriptor precision (traces/FORMAT.md)


def _top2(s: np.ndarray) -> tuple[int, float, float]:
    """Index and value of the largest entry and the value of the second largest (-inf without one)."""
    k = s.shape[0]
    t1 = int(np.argmax(s))
    if k == 1:
        return t1, s[0], NEG
    top = np.sort(s) if k <= 8 else np.partition(s, k - 2)
    return t1, top[k - 1], top[k - 2]


class CacheDecider:
    """The semantic cache of one policy, asked frame by frame.

    Per frame: :meth:`begin` (new video, timestamp), then :meth:`lookup` at each enabled exit in order until one
    is confident, then :meth:`hit` (the frame exits with the cached class) or :meth:`confirm` (it ran to the
    end; its answer and vectors update the cache).
    """

    def __init__(self, policy, enabled: tuple[str, ...], model_exits: tuple[str, ...], dims: tuple[int, ...],
                 num_classes: int) -> None:
        # Plain copies of the policy's sections: nothing on the per-frame path touches the validated models.
        cfg = SimpleNamespace(**policy.cache.model_dump())
        self.policy = policy
        self.ad = SimpleNamespace(**policy.adaptation.model_dump())
        self.strategies = set(self.ad.strategies)
        self.enabled = tuple(enabled)
        E = len(enabled)
        self.E = E
        self.dims = tuple(int(d) for d in dims)
        self.dmax = max(self.dims) if self.dims else 1
        self.cache = new_cache(cfg, self.ad, E, self.dmax, self.dims, num_classes)
        self.adapt = Adapter(self.cache, self.ad, num_classes)
        m = policy.metric
        self.metric = m.kind
        self.thresholds = [float(m.thresholds[e]) for e in enabled]
        self.temporal = self.metric == "temporal"
        if self.metric in LOGISTIC_METRICS:
            if m.calibration is None:
                raise ValueError(f"the {self.metric} exit metric needs calibration coefficients (export fills them in)")
            c = np.array([m.calibration[e] for e in enabled], dtype=np.float64)
            thr = np.clip(np.array(self.thresholds, dtype=np.float64), 1e-12, 1 - 1e-12)
            self.coeffs = c
            self.logit_thr = np.log(thr / (1 - thr))
            self.w1 = (c[:, 1] - c[:, 2]).tolist()
            self.w2 = c[:, 2].tolist()
            if self.temporal:
                self.a1 = (c[:, 5] - c[:, 6]).tolist()
                self.a2 = c[:, 6].tolist()
                self.a3 = c[:, 8].tolist()
        self._bias: dict[tuple[int, int], list[float]] = {}
        self.prev = -1  # the previous frame's answer in this video (-1: none yet)
        self.anchor: np.ndarray | None = None  # the last confirmed frame's vector at the first exit, this video
        self.log_drift = 0.0  # this frame's drift from it (0: as far as it gets, without one)
        order = {e: k for k, e in enumerate(model_exits)}
        start = order[cfg.cold_from] if cfg.cold_from is not None else 0
        self.cold_ok = [order[e] >= start for e in enabled]
        self.reset_on_video = "scene-reset" in self.strategies and self.ad.reset_on_new_video
        self.scene_changes = 0
        self._d = np.empty(2, dtype=np.float32)
        self._view_version = -1
        # Per frame (set by begin)
        self.t = 0.0
        self.slots = np.zeros(0, dtype=np.int64)
        self.n_hot = 0
        self.K = 0
        self.cold_stage: list[bool] = [False] * E
        self.CT = np.zeros((E, self.dmax, 0), dtype=np.float32)

    # -- one frame ---------------------------------------------------------------------------------------
    def begin(self, t: float, new_video: bool) -> None:
        """A frame arrives at time ``t`` (seconds); ``new_video``: it is the first frame of a new video."""
        cache = self.cache
        self.t = float(t)
        if new_video:
            self.prev = -1
            self.anchor = None
        if new_video and self.reset_on_video and cache.entries():
            cache.reset()
            self.scene_changes += 1
        if cache.version != self._view_version:
            self._refresh_view()

    def _refresh_view(self) -> None:
        """Occupied slots, the hot level's first, and their reference vectors as (E, d, K) (as the simulator)."""
        cache = self.cache
        valid = cache.cls >= 0
        is_hot = cache.level == HOT
        hot_slots = np.flatnonzero(valid & is_hot)
        self.n_hot = len(hot_slots)
        self.slots = np.concatenate([hot_slots, np.flatnonzero(valid & ~is_hot)]) \
            if self.n_hot < cache.cls.size else hot_slots
        self.K = len(self.slots)
        self.cold_stage = [ok and self.K > self.n_hot for ok in self.cold_ok]
        self.CT = cache.centres[self.slots].transpose(1, 2, 0)
        self._view_version = cache.version

    def lookup(self, k: int, vector: np.ndarray) -> tuple[int, bool] | None:
        """Search at enabled exit ``k`` with the frame's (padded) vector there: ``(slot, hot level sufficed)`` of a
        confident match, else None."""
        K, n_hot = self.K, self.n_hot
        if k == 0 and self.temporal:
            self.observe_drift(vector)
        if K == 0:
            return None
        s = np.matmul(vector[None, :], self.CT[k])[0]  # (K,) float32, hot slots first
        if n_hot:
            t1, s1, s2 = _top2(s[:n_hot])
            slot = int(self.slots[t1])
            if self._confident(k, s1, s2, n_hot, slot):
                return slot, True
        if self.cold_stage[k]:
            t1, s1, s2 = _top2(s)
            slot = int(self.slots[t1])
            if self._confident(k, s1, s2, K, slot):
                return slot, False
        return None

    def observe_drift(self, vector: np.ndarray) -> None:
        """The frame's drift from the video's last confirmed frame, from its (padded) vector at the first enabled
        exit (temporal metric; 0 without a confirmed frame yet)."""
        self.log_drift = 0.0 if self.anchor is None else float(drift(vector[None, : self.dims[0]], self.anchor)[0])

    def _confident(self, k: int, s1, s2, n: int, slot: int) -> bool:
        m = self.metric
        if m == "cosine":
            return bool(s1 >= self.thresholds[k])
        if m == "margin":
            return bool((s1 - s2 if n > 1 else s1) >= self.thresholds[k])
        # logit P = c0 + c1 log d1 + c2 log(d2 / d1) + c3 log n >= logit(threshold), d = 1 - similarity, in the
        # simulator's arithmetic: float32 distances and logs, float64 sums, in its order.
        d = self._d
        d[0] = s1
        d[1] = s2 if n > 1 else 0.0
        np.subtract(1.0, d, out=d)
        np.maximum(d, MIN_DISTANCE, out=d)
        np.log(d, out=d)
        z = self.w1[k] * float(d[0])
        z += self.w2[k] * (float(d[1]) if n > 1 else 0.0)
        z += self._bias_for(n, 0)[k]
        if self.temporal and int(self.cache.cls[slot]) == self.prev:
            za = self.a1[k] * float(d[0])
            za += self.a2[k] * (float(d[1]) if n > 1 else 0.0)
            za += self._bias_for(n, 4)[k]
            za += self.a3[k] * self.log_drift
            z = z + za
        return z >= 0.0

    def _bias_for(self, n: int, first: int) -> list[float]:
        """Per exit, the simulator's :func:`bias_terms` for ``n`` entries (``first`` 0: less logit(threshold);
        4: the temporal terms under agreement)."""
        key = (n, first)
        b = self._bias.get(key)
        if b is None:
            b = bias_terms(self.coeffs, (n,), first, self.logit_thr if first == 0 else None)[0].tolist()
            self._bias[key] = b
        return b

    def hit(self, slot: int) -> tuple[int, int]:
        """The frame exits with the class in ``slot``: record the use (a cold hit promotes). Returns (class, level)."""
        cache = self.cache
        c = int(cache.cls[slot])
        level = int(cache.level[slot])
        t = self.t
        self.prev = c
        if level == COLD:
            self.adapt.promote(slot, c, t)
        else:
            cache.touch(np.array([slot]), np.array([t]))
            if self.adapt.track_answers:
                self.adapt.last_answer[c] = max(self.adapt.last_answer[c], t)
            self.adapt.hits_since_miss += 1
        return c, level

    def confirm(self, c: int, vectors: np.ndarray) -> None:
        """The frame ran to the end and the model answered ``c``; ``vectors``: (E, dmax) its vectors, padded."""
        self.prev = int(c)
        if self.temporal:
            self.anchor = np.asarray(vectors[0, : self.dims[0]], dtype=np.float64)[None, :]
        if self.adapt.confirm(c, vectors, self.t):
            self.scene_changes += 1

    @property
    def cache_bytes(self) -> int:
        """Peak bytes of the cache so far."""
        return self.adapt.peak_bytes
