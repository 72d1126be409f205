"""The semantic-memory engine (SMTM) and its oracle.

At each enabled exit point, in order, a frame's semantic vector is compared with the hot level's reference
vectors; if the exit metric is not confident and the cold level is searched at that exit, with both levels.
A confident match stops the frame there with the cached class; otherwise the frame runs to the end, and the
full model's answer updates the cache (a *confirmed* frame). The oracle exits at the earliest exit whose
top-1 cached class equals the full model's answer.

A lookup costs the lookup table at the hot level's entry count; where the cold level is searched as well, the
table at all the entries, plus the runtime's second top-two and exit metric where the profile measured it
(``runtime.cold_stage_ms``).

Speed: the cache only changes on a confirmed frame or a cold hit (a promotion). Between such *events* every
frame is decided against the same cache, so decisions are computed for a chunk of upcoming frames at once (one
batched matrix product for all exits) and accepted up to and including the first event; then the event is
applied and the next chunk starts. Uses (hits) change only which class leaves next, so they are recorded and
applied in one batch before the next event. ``chunk=1`` decides frame by frame (the tests check both agree).

The ``temporal`` exit metric also depends on the previous processed frame's answer, which inside a chunk is
that frame's own decision. A chunk is therefore decided by guess and verify: guess every frame's previous
answer (the full model's answer of the frame before), decide the chunk, take the previous answers those
decisions give and decide again, until the guesses stop changing (a few passes). When a frame is then asked
about, the previous answer its decision assumed is checked against the one the engine actually gave (frames
may have been dropped in between): on a mismatch the chunk is decided again from that frame. Its other input,
the drift since the video's last confirmed frame, is exact: a confirmation is an event and ends the chunk.

Adaptation (policy ``adaptation.strategies``, applied at confirmed frames):

- ``working-set``: the hot level's size follows the number of classes answered in the last ``window_s``;
- ``ema``: a confirmed frame moves its class's reference vectors by a moving average (``ema_alpha`` 1: the
  latest confirmed frame replaces them); without it a class keeps the vectors it entered the cache with;
- ``scene-reset``: a new video, or ``miss_streak`` consecutive confirmed frames of classes not in the cache,
  is a scene change: the cache is reset or shrunk to its ``keep`` most recently used classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.adaptation import Adapter, new_cache
from simulator.cache import COLD, HOT
from simulator.engines import FULL, INPUT, Engine
from simulator.exit_metric import LOGISTIC_METRICS, MIN_DISTANCE, bias_terms, drift

NEG = -np.inf
MAX_CHUNK = 1024  # frames decided at once between cache events (automatic chunking)
MAX_PASSES = 4  # guess-and-verify passes over a chunk (temporal metric); decide() catches what they miss


@dataclass(frozen=True)
class CalibrationSample:
    """What one confirmed frame saw at every enabled exit (calibration mode)."""

    frame: int
    n_hot: int
    n_all: int
    s1_hot: np.ndarray  # (E,) top-1 / top-2 similarity in the hot level (-inf when empty)
    s2_hot: np.ndarray
    top1_hot: np.ndarray  # (E,) class of the hot top-1
    s1_all: np.ndarray  # the same over both levels
    s2_all: np.ndarray
    top1_all: np.ndarray
    cold_searched: np.ndarray  # (E,) whether the cold level would be searched at that exit
    prev: int = -1  # the previous processed frame's answer in the same video (-1: none)
    log_drift: float = 0.0  # temporal: log distance to the last confirmed frame at the first enabled exit


def _top2(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index and value of the largest and the value of the second largest along the last axis."""
    k = s.shape[-1]
    t1 = np.argmax(s, axis=-1)
    if k == 1:
        return t1, s[..., 0], np.full(s.shape[:-1], NEG)
    # A full sort is cheaper than a partition on a handful of entries (the hot level).
    top = np.sort(s, axis=-1) if k <= 8 else np.partition(s, k - 2, axis=-1)
    return t1, top[..., k - 1], top[..., k - 2]


class SmtmEngine(Engine):
    kind = "smtm"

    def __init__(self, workload, device, policy, enabled, calibration=None, oracle: bool = False,
                 chunk: int | None = None, collect: bool = False, log_samples: bool = False) -> None:
        super().__init__(workload, device, policy, enabled)
        self.kind = "oracle" if oracle else "smtm"
        self.oracle = oracle
        self.collect = collect  # calibration mode: every frame is confirmed, features are logged
        self.log_samples = log_samples  # log what every lookup saw, under the policy's own dynamics
        self.samples: list[CalibrationSample] = []
        cfg = policy.cache
        self.ad = policy.adaptation
        self.strategies = set(self.ad.strategies)
        w = workload
        E = len(enabled)
        self.V = np.ascontiguousarray(w.vectors[:, self.ex_idx, :])  # (n, E, d)
        self.VT = np.ascontiguousarray(self.V.transpose(1, 0, 2))  # (E, n, d): a window is one contiguous slab
        dims = tuple(w.dims[j] for j in self.ex_idx)
        self.cache = new_cache(cfg, self.ad, E, self.V.shape[2], dims, w.num_classes)
        self.adapt = Adapter(self.cache, self.ad, w.num_classes)
        self.metric = policy.metric.kind if policy.metric is not None else "cosine"
        if not oracle:
            self.thresholds = np.array([policy.metric.thresholds[e] for e in enabled], dtype=np.float64)
        # Whether decisions depend on the previous answer (collecting samples still records it).
        self.temporal = self.metric == "temporal" and not oracle and not collect
        # Previous answers are kept only where something reads them: temporal decisions, calibration samples.
        self.track_prev = self.temporal or collect or log_samples
        # The first enabled exit's vectors, for the temporal metric's drift since the last confirmed frame.
        self.V0 = (np.ascontiguousarray(self.V[:, 0, :dims[0]], dtype=np.float64)
                   if self.metric == "temporal" and not oracle and E else None)
        if self.metric in LOGISTIC_METRICS and not oracle:
            table = policy.metric.calibration or calibration
            if table is None and not collect:
                raise ValueError(f"the {self.metric} exit metric needs calibration coefficients")
            self.coeffs = None if table is None else np.array([table[e] for e in enabled], dtype=np.float64)
            thr = np.clip(self.thresholds, 1e-12, 1 - 1e-12)
            self.logit_thr = np.log(thr / (1 - thr))
        else:
            self.coeffs = None
        if self.coeffs is not None:
            self._w1 = (self.coeffs[:, 1] - self.coeffs[:, 2])[:, None]
            self._w2 = self.coeffs[:, 2][:, None]
            if self.temporal:
                self._a1 = (self.coeffs[:, 5] - self.coeffs[:, 6])[:, None]
                self._a2 = self.coeffs[:, 6][:, None]
                self._a3 = self.coeffs[:, 8][:, None]
        self._bias_memo: dict[tuple, np.ndarray] = {}
        self.w_seen = None  # what the window's lookups saw, while samples are logged
        self.prev_answer = -1  # answer of the last decided frame
        self.prev_video = -1  # its video
        self.anchor = -1  # the last confirmed frame (temporal metric)
        self.w_prev = np.zeros(0, dtype=np.int64)
        self.w_drift = np.zeros(0)
        self._cols = np.arange(max(MAX_CHUNK, chunk or 0))
        self._flags = np.ones((E + 1, len(self._cols)), dtype=bool)
        self.n_enabled = E
        self.prefix_ms_ext = np.r_[self.prefix_ms, self.full_ms]
        self.prefix_mj_ext = np.r_[self.prefix_mj, self.full_mj]
        self.hot_conf = np.zeros(len(w), dtype=bool)
        self.hot_entries = np.zeros(len(w), dtype=np.int64)
        # The cold level is searched at exits from cold_from on (by model order).
        order = {e: k for k, e in enumerate(device.exits)}
        start = order[cfg.cold_from] if cfg.cold_from is not None else 0
        self.cold_ok = np.array([order[e] >= start for e in enabled], dtype=bool)
        # The runtime's second top-two and exit metric where the cold level is searched too (ms, mJ per exit).
        stage = np.array([float(device.cold_stage_ms.get(e, 0.0)) for e in enabled])
        self.stage_cost = np.stack([stage, stage * self.proc.active_mw / 1000.0], axis=1).reshape(-1, 2)
        self.reset_on_video = "scene-reset" in self.strategies and self.ad.reset_on_new_video
        # First frame of the next video, for every frame: a chunk never crosses a scene reset.
        n = len(w)
        starts = np.r_[np.flatnonzero(w.new_video), n]
        nxt = np.empty(n, dtype=np.int64)
        for a, b in zip(starts[:-1], starts[1:]):
            nxt[a:b] = b
        self.next_video = nxt
        self.fixed_chunk = chunk
        self.chunk = chunk or 32
        self.win_start = self.win_end = 0
        self.win_version = -1
        self.cur_video = -1
        self.pending: list[int] = []  # frames whose hits are not yet recorded as uses
        self.hit_slot = np.full(len(w), -1, dtype=np.int64)
        self.upd_mj = device.update_ms * self.proc.active_mw / 1000.0
        self.hit_ms = float(getattr(device, "hit_ms", 0.0))  # recording a hit (0 unless the profile measured it)
        self.hit_mj = self.hit_ms * self.proc.active_mw / 1000.0
        # The temporal metric's drift, which the runtime works out at the first enabled exit of every frame.
        t_ms = float(getattr(device, "temporal_ms", 0.0)) if self.temporal else 0.0
        self.temporal_cost = np.array([t_ms, t_ms * self.proc.active_mw / 1000.0])
        self._cost_memo: dict[int, np.ndarray] = {}
        # The input level (policy ``input_reuse``): the last frame that ran the model, and frames reusing it since.
        self.reuse = policy.input_reuse
        self.D = w.input_desc
        self.r_anchor, self.r_run = -1, 0
        self.r_cost = device.input_reuse_cost(policy.processor) if self.reuse is not None else (0.0, 0.0)
        self._tab_memo: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # -- per frame ---------------------------------------------------------------------------------------
    def decide(self, i: int) -> float:
        if self.reuse is None:
            return self._decide_cache(i)
        w = self.w
        a = self.r_anchor
        if (a >= 0 and w.video[a] == w.video[i] and self.r_run < self.reuse.max_run
                and (int(self.answer[a]) == int(w.prediction[i]) if self.oracle
                     else float(self.D[i] @ self.D[a]) >= self.reuse.similarity)):
            self.r_run += 1
            self.exit_pos[i] = INPUT
            self.answer[i] = self.answer[a]
            self.lookup_ms[i] = self.input_ms[i] = self.r_cost[0]
            self.energy_mj[i] = self.r_cost[1]
            if self.track_prev:
                self.prev_answer = int(self.answer[i])
                self.prev_video = int(w.video[i])
            return self.r_cost[0] / 1000.0
        self.r_anchor, self.r_run = i, 0
        service = self._decide_cache(i)
        self.lookup_ms[i] += self.r_cost[0]
        self.input_ms[i] = self.r_cost[0]
        self.energy_mj[i] += self.r_cost[1]
        return service + self.r_cost[0] / 1000.0

    def _decide_cache(self, i: int) -> float:
        """Frame ``i`` through the semantic cache (its exits, then the full model)."""
        w = self.w
        if w.video[i] != self.cur_video:
            self.cur_video = int(w.video[i])
            if self.reset_on_video and self.cache.entries():
                self._flush()
                self.cache.reset()
                self.scene_changes.append(i)
        prev = self.prev_answer if self.track_prev and self.prev_video == w.video[i] else -1
        if (not (self.win_start <= i < self.win_end) or self.win_version != self.cache.version
                or (self.temporal and self.w_prev[i - self.win_start] != prev)):
            self._evaluate(i, prev)
        j = i - self.win_start
        if self.collect or self.log_samples:
            self._log(i, j)
        fe = int(self.w_fe[j])
        exited = fe < self.n_enabled
        self.exit_pos[i] = fe if exited else FULL
        self.answer[i] = self.w_answer[j]
        self.level[i] = self.w_level[j]
        self.hot_conf[i] = self.w_hc[j]
        compute = self.w_compute[j]
        lookup = self.w_lookup[j]
        self.compute_ms[i] = compute
        self.lookup_ms[i] = lookup
        self.energy_mj[i] = self.w_energy[j]
        self.entries[i] = self.w_entries
        self.hot_entries[i] = self.w_hot
        if self.track_prev:
            self.prev_answer = int(self.answer[i])
            self.prev_video = int(w.video[i])
        if self.w_event[j]:
            update = 0.0
            if not exited:
                update = self.device.update_ms
                self.update_ms[i] = update
                self.energy_mj[i] += self.upd_mj
            elif self.hit_ms:
                update = self.hit_ms
                self.update_ms[i] = update
                self.energy_mj[i] += self.hit_mj
            self._apply_event(i, int(self.w_slot[j]))
            self.win_end = self.win_start  # invalidate
            return (compute + lookup + update) / 1000.0
        self.hit_slot[i] = self.w_slot[j]
        self.pending.append(i)
        self.adapt.hits_since_miss += 1
        if self.hit_ms:
            self.update_ms[i] = self.hit_ms
            self.energy_mj[i] += self.hit_mj
            return (compute + lookup + self.hit_ms) / 1000.0
        return (compute + lookup) / 1000.0

    def lookup_breakdown(self, i: int) -> list[tuple[str, float]]:
        """(exit, lookup ms) of every lookup frame ``i`` made, in order (for the timeline)."""
        n_hot, K = int(self.hot_entries[i]), int(self.entries[i])
        hot, allc = self._costs(n_hot)[:, 0], self._costs(K)[:, 0]
        inc = np.where(self.cold_ok & (K > n_hot), allc - hot + self.stage_cost[:, 0], 0.0)
        fe = self.exit_pos[i] if self.exit_pos[i] >= 0 else self.n_enabled
        out = []
        for k, e in enumerate(self.enabled[: fe + 1]):
            ms = hot[k] + (inc[k] if (k < fe or not self.hot_conf[i]) else 0.0)
            if k == 0 and K:
                ms += float(self.temporal_cost[0])
            if ms > 0:
                out.append((e, float(ms)))
        return out

    # -- speculative chunk -------------------------------------------------------------------------------
    def _costs(self, entries: int) -> np.ndarray:
        """(E, 2) lookup ms and mJ at every enabled exit against ``entries`` entries (memoised)."""
        c = self._cost_memo.get(entries)
        if c is None:
            c = np.array([self.device.lookup_cost(e, entries) for e in self.enabled]).reshape(-1, 2)
            self._cost_memo[entries] = c
        return c

    def _cost_table(self, n_hot: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the cold level is searched, and the lookup (ms, mJ) of a frame by whether the hot level
        sufficed (first index) and where it stops (second index; E = nowhere): (2, E + 1, 2). Memoised."""
        key = (n_hot, K)
        hit = self._tab_memo.get(key)
        if hit is not None:
            return hit
        E = self.n_enabled
        hot_cost = self._costs(n_hot)
        cold_stage = self.cold_ok & (K > n_hot)
        cold_inc = np.where(cold_stage[:, None], self._costs(K) - hot_cost + self.stage_cost, 0.0)
        before = np.vstack([np.zeros((1, 2)), np.cumsum(hot_cost + cold_inc, axis=0)])  # (E + 1, 2)
        at_hot = before[:E] + hot_cost
        tab = np.stack([np.vstack([at_hot + cold_inc, before[E:]]), np.vstack([at_hot, before[E:]])])
        if K:
            tab += self.temporal_cost
        self._tab_memo[key] = (cold_stage, tab)
        return cold_stage, tab

    def _conf(self, s1: list[np.ndarray], s2: list[np.ndarray], ns: tuple[int, ...]) -> np.ndarray:
        """Exit-metric decisions (G, E, b) for G search stages, stage g having searched ``ns[g]`` entries and
        found top-1 similarities ``s1[g]`` (E, b) and top-2 ``s2[g]`` (-inf without a runner-up)."""
        m = self.metric
        if m == "cosine":
            return np.stack(s1) >= self.thresholds[:, None]
        if m == "margin":
            return np.stack([a - b if n > 1 else a for a, b, n in zip(s1, s2, ns)]) >= self.thresholds[:, None]
        return self._logits(s1, s2, ns)[0] >= 0.0

    def _logits(self, s1: list[np.ndarray], s2: list[np.ndarray], ns: tuple[int, ...], log_drift=None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """The logistic metric's logit minus logit(threshold), (G, E, b), and for ``temporal`` what agreement
        with the previous answer adds to it, given each frame's ``log_drift`` (b,) (else None)."""
        G = len(ns)
        # logit P = c0 + c1 log d1 + c2 log(d2 / d1) + c3 log n; compare with logit(threshold). Without a
        # runner-up d2 = 1 (similarity 0, as in the calibration features): its log is 0. One pass over all
        # stages' distances, in place (the float32 arithmetic of the calibration features).
        d = np.empty((2 * G, *s1[0].shape), dtype=s1[0].dtype)
        for k, s in enumerate((*s1, *s2)):
            np.subtract(1.0, s, out=d[k])
        np.maximum(d, MIN_DISTANCE, out=d)
        np.log(d, out=d)
        for g, n in enumerate(ns):
            if n <= 1:
                d[G + g] = 0.0
        z = self._w1 * d[:G]
        z += self._w2 * d[G:]
        z += self._bias(ns, 0)
        if not self.temporal:
            return z, None
        za = self._a1 * d[:G]
        za += self._a2 * d[G:]
        za += self._bias(ns, 4)
        za += self._a3 * log_drift
        return z, za

    def _bias(self, ns: tuple[int, ...], first: int) -> np.ndarray:
        """(G, E, 1) :func:`bias_terms` from coefficient ``first`` (0 less logit(threshold); 4: under agreement)."""
        key = (first, ns)
        a = self._bias_memo.get(key)
        if a is None:
            a = bias_terms(self.coeffs, ns, first, self.logit_thr if first == 0 else None)[:, :, None]
            self._bias_memo[key] = a
        return a

    def _evaluate(self, i: int, prev: int = -1) -> None:
        """Decide frames from ``i`` on against the current cache; ``prev``: the answer frame ``i`` follows."""
        w, cache = self.w, self.cache
        E = self.n_enabled
        stop = min(len(w), i + self.chunk)
        if self.reset_on_video:
            stop = min(stop, int(self.next_video[i]))
        # Occupied slots, the hot level's first, so that the hot level's similarities are a leading slice.
        valid = cache.cls >= 0
        is_hot = cache.level == HOT
        hot_slots = np.flatnonzero(valid & is_hot)
        n_hot = len(hot_slots)
        slots = np.concatenate([hot_slots, np.flatnonzero(valid & ~is_hot)]) if n_hot < cache.cls.size else hot_slots
        K = len(slots)
        if K == 0 or self.collect:
            stop = i + 1
        b = stop - i
        self.win_start, self.win_end, self.win_version = i, stop, cache.version
        self.w_entries, self.w_hot = K, n_hot

        cold_stage, cost_tab = self._cost_table(n_hot, K)
        if self.track_prev:
            self.w_prev = self._prev_guess(i, stop, prev, w.prediction[i:stop])
            self.w_drift = self._drift(i, stop)

        if K == 0:
            fe = np.full(b, E)
            hc = np.zeros(b, dtype=bool)
            slot = np.full(b, -1)
            self.w_seen = None
        else:
            cls = cache.cls[slots]
            S = np.matmul(self.VT[:, i:stop], cache.centres[slots].transpose(1, 2, 0))  # (E, b, K)
            search_all = n_hot < K and bool(cold_stage.any())
            if n_hot:
                t1h, s1h, s2h = _top2(S[:, :, :n_hot])
            else:
                t1h = np.zeros((E, b), dtype=np.int64)
                s1h = s2h = np.full((E, b), NEG)
            if search_all:
                t1a, s1a, s2a = _top2(S)
            else:
                t1a, s1a, s2a = t1h, s1h, s2h
            c1h, c1a = cls[t1h], cls[t1a]
            if self.temporal:
                guess = self.w_prev
                stages = ([s1h, s1a], [s2h, s2a], (n_hot, K)) if search_all else ([s1h], [s2h], (n_hot,))
                z, za = self._logits(*stages, log_drift=self.w_drift)
                for n_pass in range(MAX_PASSES):
                    conf_h = np.where(c1h == guess, z[0] + za[0], z[0]) >= 0.0
                    conf_a = np.where(c1a == guess, z[-1] + za[-1], z[-1]) >= 0.0 if search_all else conf_h
                    fe, hc, slot = self._pick(conf_h, conf_a, n_hot, search_all, cold_stage, t1h, t1a, slots)
                    answers = np.where(fe < E, cache.cls[np.maximum(slot, 0)], w.prediction[i:stop])
                    implied = self._prev_guess(i, stop, prev, answers)
                    if n_pass == MAX_PASSES - 1 or np.array_equal(implied, guess):
                        break
                    guess = implied
                # Decisions were taken with ``guess`` (not with the last ``implied``, when the passes ran out);
                # decide() checks each frame's guess against what really came before it.
                self.w_prev = guess
            else:
                if self.oracle:
                    pred = w.prediction[i:stop]
                    conf_h = c1h == pred
                    conf_a = c1a == pred
                elif self.collect:
                    conf_h = conf_a = np.zeros((E, b), dtype=bool)
                elif search_all:
                    conf_h, conf_a = self._conf([s1h, s1a], [s2h, s2a], (n_hot, K))
                else:
                    conf_h = conf_a = self._conf([s1h], [s2h], (n_hot,))[0]
                fe, hc, slot = self._pick(conf_h, conf_a, n_hot, search_all, cold_stage, t1h, t1a, slots)
            if self.collect or self.log_samples:
                self.w_seen = (n_hot, K, s1h, s2h, c1h, s1a, s2a, c1a, cold_stage)
        exited = fe < E
        safe = np.maximum(slot, 0)
        lvl = np.where(exited, cache.level[safe], -1).astype(np.int8, copy=False)
        costs = cost_tab[hc.astype(np.int64), fe]  # (b, 2)
        self.w_fe, self.w_hc, self.w_slot, self.w_level = fe, hc, slot, lvl
        self.w_answer = np.where(exited, cache.cls[safe], w.prediction[i:stop])
        self.w_compute = self.prefix_ms_ext[fe]
        self.w_lookup = costs[:, 0]
        self.w_energy = self.prefix_mj_ext[fe] + costs[:, 1]
        event = ~exited | (lvl == COLD)
        self.w_event = event
        k = int(np.argmax(event))
        if event[k]:
            self.win_end = i + k + 1
            if self.fixed_chunk is None:
                self.chunk = min(MAX_CHUNK, max(16, 2 * (k + 1)))
        elif self.fixed_chunk is None:
            self.chunk = min(MAX_CHUNK, self.chunk * 2)

    def _pick(self, conf_h, conf_a, n_hot, search_all, cold_stage, t1h, t1a, slots):
        """From per-exit confidences (E, b) in the hot level and in both levels: the exit each frame takes
        (E: none), whether the hot level sufficed there, and the slot it leaves with (-1: none)."""
        E, b = conf_h.shape
        if not n_hot:
            conf_h = np.zeros((E, b), dtype=bool)
        # Row E of the flags is always set, so the first set row is the exit taken (E: none).
        flags = self._flags[:, :b]
        if search_all:
            np.bitwise_and(cold_stage[:, None], conf_a, out=flags[:E])
            np.bitwise_or(flags[:E], conf_h, out=flags[:E])
        else:
            flags[:E] = conf_h
        fe = np.argmax(flags, axis=0)
        exits = fe < E
        fc = np.minimum(fe, E - 1)
        cols = self._cols[:b]
        hc = conf_h[fc, cols] & exits
        slot = np.where(exits, slots[np.where(hc, t1h[fc, cols], t1a[fc, cols])], -1)
        return fe, hc, slot

    def _prev_guess(self, i: int, stop: int, prev: int, answers: np.ndarray) -> np.ndarray:
        """The answer each frame of ``i..stop`` follows, if frame ``i`` follows ``prev`` and every later one
        follows its predecessor's ``answers`` (-1 at the first frame of a video)."""
        out = np.empty(stop - i, dtype=np.int64)
        out[0] = prev
        out[1:] = answers[:-1]
        v = self.w.video
        out[1:][v[i + 1:stop] != v[i:stop - 1]] = -1
        return out

    def _drift(self, i: int, stop: int) -> np.ndarray:
        """Each frame's drift since the last confirmed frame of its video (:func:`exit_metric.drift`; 0, as far
        as it gets, without one). Exact for the whole chunk: a confirmation ends it."""
        out = np.zeros(stop - i)
        a = self.anchor
        if self.V0 is None or a < 0:
            return out
        rows = np.flatnonzero(self.w.video[i:stop] == self.w.video[a])
        if len(rows):
            out[rows] = drift(self.V0[i + rows], self.V0[a][None, :])
        return out

    def _log(self, i: int, j: int) -> None:
        """The calibration sample of frame ``i``, the ``j``-th of the window, as it is decided."""
        if self.w_seen is None:
            return
        n_hot, K, s1h, s2h, c1h, s1a, s2a, c1a, cold_stage = self.w_seen
        self.samples.append(CalibrationSample(
            i, n_hot, K, s1h[:, j], s2h[:, j], c1h[:, j], s1a[:, j], s2a[:, j], c1a[:, j], cold_stage, int(self.w_prev[j]),
            float(self.w_drift[j])))

    # -- cache changes -----------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.pending:
            idx = np.array(self.pending)
            times = self.w.arrival_s[idx]
            self.cache.touch(self.hit_slot[idx], times)
            if self.adapt.track_answers:
                np.maximum.at(self.adapt.last_answer, self.answer[idx], times)
            self.pending.clear()

    def _apply_event(self, i: int, slot: int) -> None:
        self._flush()
        t = float(self.w.arrival_s[i])
        if self.exit_pos[i] != FULL:  # a cold hit: promotion
            self.adapt.promote(slot, int(self.answer[i]), t)
            return
        self.anchor = i
        if self.adapt.confirm(int(self.w.prediction[i]), self.V[i], t):
            self.scene_changes.append(i)
        self.cache_bytes = self.adapt.peak_bytes
