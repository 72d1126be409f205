"""FoggyCache-style input-level reuse (Guo et al., MobiCom'18), on the recorded input descriptors.

Cached records are (input descriptor, answer) pairs of frames the full model ran on. A new frame's
descriptor is hashed with random-hyperplane LSH into ``tables`` buckets; records sharing a bucket in any
table are candidates; the ``k`` most similar candidates vote, and the majority answer is reused when it holds
at least ``homogeneity`` of the k votes (the homogeneity check of their H-kNN) and its voters are similar
enough on average. Otherwise the model runs, and the frame becomes a record (LRU beyond ``capacity``).

The cost of a lookup is not in the profile: it is charged as a lookup at the model's first exit point
against the number of candidates (hashing and comparing a 48-value descriptor is of the same order as
encoding that exit's small feature map and comparing it).
"""

from __future__ import annotations

import numpy as np

from simulator.engines import FULL, INPUT, Engine


class FoggyCacheEngine(Engine):
    kind = "foggycache"

    def __init__(self, *args, chunk: int | None = None) -> None:
        super().__init__(*args)
        cfg = self.policy.foggycache
        self.cfg = cfg
        D = self.w.input_desc
        planes = np.random.default_rng(cfg.seed).standard_normal((cfg.tables, cfg.bits, D.shape[1]))
        bits = (np.einsum("nd,tbd->ntb", D, planes) > 0).astype(np.int64)
        self.codes = (bits << np.arange(cfg.bits)).sum(axis=2)  # (n, tables)
        cap = cfg.capacity
        self.rec_desc = np.zeros((cap, D.shape[1]), dtype=np.float32)
        self.rec_code = np.zeros((cap, cfg.tables), dtype=np.int64)
        self.rec_answer = np.full(cap, -1, dtype=np.int64)
        self.rec_last = np.full(cap, -np.inf)
        self.probe_exit = self.device.exits[0]
        self.fixed_chunk = chunk
        self.chunk = chunk or 32
        self.win_start = self.win_end = 0
        self.version = 0
        self.win_version = -1
        self.pending: list[tuple[int, float]] = []
        self.upd_mj = self.device.update_ms * self.proc.active_mw / 1000.0

    def decide(self, i: int) -> float:
        if not (self.win_start <= i < self.win_end) or self.win_version != self.version:
            self._evaluate(i)
        j = i - self.win_start
        hit = bool(self.w_hit[j])
        self.lookup_ms[i] = self.w_lookup_ms[j]
        self.entries[i] = self.w_entries
        if hit:
            self.exit_pos[i] = INPUT
            self.answer[i] = self.w_answer[j]
            self.level[i] = 0
            self.energy_mj[i] = self.w_lookup_mj[j]
            self.pending.append((int(self.w_best[j]), float(self.w.arrival_s[i])))
        else:
            self.exit_pos[i] = FULL
            self.answer[i] = self.w.prediction[i]
            self.compute_ms[i] = self.full_ms
            self.update_ms[i] = self.device.update_ms
            self.energy_mj[i] = self.full_mj + self.w_lookup_mj[j] + self.upd_mj
            self._insert(i)
        return (self.compute_ms[i] + self.lookup_ms[i] + self.update_ms[i]) / 1000.0

    def _flush(self) -> None:
        for r, t in self.pending:
            self.rec_last[r] = max(self.rec_last[r], t)
        self.pending.clear()

    def _insert(self, i: int) -> None:
        self._flush()
        free = np.flatnonzero(self.rec_answer < 0)
        r = int(free[0]) if len(free) else int(np.argmin(self.rec_last))
        self.rec_desc[r] = self.w.input_desc[i]
        self.rec_code[r] = self.codes[i]
        self.rec_answer[r] = self.w.prediction[i]
        self.rec_last[r] = float(self.w.arrival_s[i])
        self.version += 1
        n = int(np.count_nonzero(self.rec_answer >= 0))
        self.cache_bytes = max(self.cache_bytes, n * (self.rec_desc.shape[1] * 2 + self.cfg.tables * 4 + 16))

    def _evaluate(self, i: int) -> None:
        cfg = self.cfg
        stop = min(len(self.w), i + self.chunk)
        recs = np.flatnonzero(self.rec_answer >= 0)
        K = len(recs)
        if K == 0:
            stop = i + 1
        b = stop - i
        self.win_start, self.win_end, self.win_version, self.w_entries = i, stop, self.version, K
        if K == 0:
            cand = np.zeros(b, dtype=np.int64)
            hit = np.zeros(b, dtype=bool)
            answer = best = np.full(b, -1, dtype=np.int64)
        else:
            match = (self.codes[i:stop, None, :] == self.rec_code[recs][None, :, :]).any(axis=2)  # (b, K)
            cand = match.sum(axis=1)
            sims = np.where(match, self.w.input_desc[i:stop] @ self.rec_desc[recs].T, -np.inf)
            k = min(cfg.k, K)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            ts = np.take_along_axis(sims, top, axis=1)
            lab = np.where(np.isfinite(ts), self.rec_answer[recs][top], -1)
            same = (lab[:, :, None] == lab[:, None, :]) & (lab[:, None, :] >= 0)
            votes = same.sum(axis=2)  # (b, k): votes for each voter's answer
            pick = np.argmax(votes, axis=1)
            rows = np.arange(b)
            maj = lab[rows, pick]
            n_maj = votes[rows, pick]
            agree = (lab == maj[:, None]) & (maj[:, None] >= 0)
            mean_sim = np.where(agree, np.where(np.isfinite(ts), ts, 0.0), 0.0).sum(axis=1) / np.maximum(n_maj, 1)
            hit = (maj >= 0) & (n_maj >= cfg.homogeneity * cfg.k) & (mean_sim >= cfg.min_similarity)
            answer = maj
            best = recs[top[rows, np.argmax(np.where(agree, ts, -np.inf), axis=1)]]
        self.w_hit, self.w_answer, self.w_best = hit, answer, best
        self.w_lookup_ms, self.w_lookup_mj = self.device.lookup_costs(self.probe_exit, np.maximum(1, cand))
        miss = ~hit
        if miss.any():
            k0 = int(np.argmax(miss))
            self.win_end = i + k0 + 1
            if self.fixed_chunk is None:
                self.chunk = min(1024, max(16, 2 * (k0 + 1)))
        elif self.fixed_chunk is None:
            self.chunk = min(1024, self.chunk * 2)
