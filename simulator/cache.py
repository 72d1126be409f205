"""The semantic cache (SMTM): per class, one reference vector per exit point, in a hot and a cold level.

Slots are fixed arrays so that a similarity search is one matrix product over the occupied slots. A new
class enters the hot level; a full hot level demotes its victim to the cold level (the cold level's own
victim then leaves the cache). A hit in the cold level promotes the class back to hot. Victims are chosen
by the replacement rule:

- ``lru``: least recently used;
- ``lfu``: fewest uses (ties: least recent);
- ``lfu-decay``: smallest exponentially decayed use count, each use's weight halving every ``half_life_s``.
  It is kept as ``log2(sum_i 2**(t_i / h))``, which orders entries exactly like the decayed count at any
  common time and never overflows.
"""

from __future__ import annotations

import numpy as np

from simulator.policy import CacheConfig

HOT, COLD = 0, 1


class SemanticCache:
    def __init__(self, cfg: CacheConfig, exits: int, dmax: int, dims: tuple[int, ...], num_classes: int,
                 max_hot: int | None = None) -> None:
        self.cfg = cfg
        self.hot_size = cfg.hot_size
        self.cold_size = cfg.cold_size
        self.dims = dims
        cap = max(cfg.hot_size, max_hot or 0) + cfg.cold_size
        self.cls = np.full(cap, -1, dtype=np.int64)
        self.level = np.zeros(cap, dtype=np.int8)
        self.centres = np.zeros((cap, exits, dmax), dtype=np.float32)
        self.last = np.full(cap, -np.inf)
        self.count = np.zeros(cap)
        self.logscore = np.full(cap, -np.inf)
        self.slot_of = np.full(num_classes, -1, dtype=np.int64)
        self.version = 0  # bumped by every change a lookup could see
        self.peak_entries = 0

    # -- state -------------------------------------------------------------------------------------------
    @property
    def valid(self) -> np.ndarray:
        return self.cls >= 0

    def counts(self) -> tuple[int, int]:
        v = self.valid
        return int(np.count_nonzero(v & (self.level == HOT))), int(np.count_nonzero(v & (self.level == COLD)))

    def entries(self) -> int:
        return int(np.count_nonzero(self.valid))

    def bytes(self, entries: int | None = None) -> int:
        """Reference vectors at the element size, plus 16 bytes of bookkeeping per entry."""
        n = self.entries() if entries is None else entries
        return n * (sum(self.dims) * self.cfg.element_bytes + 16)

    # -- replacement -------------------------------------------------------------------------------------
    def _pick_victim(self, slots: np.ndarray) -> int:
        r = self.cfg.replacement
        if r == "lru":
            return int(slots[np.argmin(self.last[slots])])
        if r == "lfu":  # fewest uses; among equals the least recent
            return int(slots[np.lexsort((self.last[slots], self.count[slots]))[0]])
        return int(slots[np.lexsort((self.last[slots], self.logscore[slots]))[0]])

    def victim(self, level: int) -> int:
        return self._pick_victim(np.flatnonzero(self.valid & (self.level == level)))

    def touch(self, slots: np.ndarray, times: np.ndarray) -> None:
        """Record uses (hits or confirmations) of the given slots, in any order."""
        if len(slots) == 0:
            return
        np.maximum.at(self.last, slots, times)
        # Use counts and decayed scores matter only to the rules that read them (LRU reads `last` alone).
        if self.cfg.replacement != "lru":
            np.add.at(self.count, slots, 1.0)
            np.logaddexp2.at(self.logscore, slots, times / self.cfg.half_life_s)
        # No version bump: uses change no lookup result, only which class leaves next.

    def touch_one(self, slot: int, t: float) -> None:
        if t > self.last[slot]:
            self.last[slot] = t
        self.count[slot] += 1.0
        self.logscore[slot] = np.logaddexp2(self.logscore[slot], t / self.cfg.half_life_s)

    def _clear(self, slot: int) -> None:
        c = self.cls[slot]
        if c >= 0:
            self.slot_of[c] = -1
        self.cls[slot] = -1
        self.last[slot] = -np.inf
        self.count[slot] = 0.0
        self.logscore[slot] = -np.inf

    def _make_room_in_hot(self) -> None:
        self._demote_until(self.hot_size - 1)

    def _demote_until(self, limit: int) -> None:
        """Move the hot level's victims down (the cold level's own victims leave) until at most ``limit``
        classes are hot; without a cold level the victims leave the cache."""
        n_hot, n_cold = self.counts()
        while n_hot > limit:
            v = self.victim(HOT)
            if self.cold_size > 0:
                if n_cold >= self.cold_size:
                    self._clear(self.victim(COLD))
                    n_cold -= 1
                self.level[v] = COLD
                n_cold += 1
            else:
                self._clear(v)
            n_hot -= 1

    # -- changes -----------------------------------------------------------------------------------------
    def insert(self, c: int, vectors: np.ndarray, t: float) -> int:
        """Add class ``c`` to the hot level with these reference vectors (per exit, padded)."""
        assert self.slot_of[c] < 0
        self._make_room_in_hot()
        slot = int(np.flatnonzero(~self.valid)[0])
        self.cls[slot] = c
        self.slot_of[c] = slot
        self.level[slot] = HOT
        self.centres[slot] = vectors
        self.last[slot] = t
        self.count[slot] = 1.0
        self.logscore[slot] = t / self.cfg.half_life_s
        self.version += 1
        self.peak_entries = max(self.peak_entries, self.entries())
        return slot

    def update_centre(self, slot: int, vectors: np.ndarray, alpha: float) -> None:
        """Moving average of the reference vectors, renormalised per exit point (alpha 1: replace)."""
        if alpha >= 1.0:
            self.centres[slot] = vectors
        else:
            m = (1.0 - alpha) * self.centres[slot] + alpha * vectors
            norms = np.sqrt(np.einsum("ed,ed->e", m, m))[:, None]
            self.centres[slot] = m / np.maximum(norms, 1e-12)
        self.version += 1

    def promote(self, slot: int) -> None:
        """A cold hit: the class goes back to the hot level, whose victim moves down to cold."""
        if self.level[slot] == HOT:
            return
        self.level[slot] = HOT  # temporarily over the hot size by one
        n_hot, _ = self.counts()
        if n_hot > self.hot_size:
            others = np.flatnonzero(self.valid & (self.level == HOT))
            self.level[self._pick_victim(others[others != slot])] = COLD
        self.version += 1

    def set_hot_size(self, size: int) -> None:
        size = max(1, int(size))
        if size == self.hot_size:
            return
        self.hot_size = size
        self._fit_hot()
        self.version += 1

    def _fit_hot(self) -> None:
        """Demote the hot level's victims until it holds at most ``hot_size`` classes."""
        self._demote_until(self.hot_size)

    def reset(self) -> None:
        for s in np.flatnonzero(self.valid):
            self._clear(int(s))
        self.version += 1

    def shrink(self, keep: int) -> None:
        """Keep only the ``keep`` most recently used classes (all in the hot level)."""
        slots = np.flatnonzero(self.valid)
        if len(slots) > keep:
            order = slots[np.argsort(-self.last[slots], kind="stable")]
            for s in order[keep:]:
                self._clear(int(s))
        self.level[self.valid] = HOT
        self._fit_hot()  # (set_hot_size(self.hot_size) would return early: the size is unchanged)
        self.version += 1
