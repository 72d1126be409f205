"""The cache's adaptation rules, in one place for the simulator's engine and the on-device runtime, so that both
change the cache identically (the runtime's equivalence tests rely on it).

At a *confirmed* frame (it ran to the end; the full model answered class ``c``):

- ``scene-reset``: ``miss_streak`` consecutive confirmed frames of classes not in the cache are a scene
  change: the cache is reset or shrunk to its ``keep`` most recently used classes;
- ``working-set``: the hot level's size follows the number of classes answered in the last ``window_s``;
- ``ema``: a class already cached moves its reference vectors by a moving average; without it a class keeps
  the vectors it entered with. A class not cached is inserted.

A cold hit promotes its class back to the hot level. Plain hits are recorded by the caller (the simulator
batches them): each one counts in :attr:`Adapter.hits_since_miss` and, for the working set, in
:attr:`Adapter.last_answer`.
"""

from __future__ import annotations

import numpy as np

from simulator.cache import SemanticCache


def new_cache(cfg, ad, exits: int, dmax: int, dims: tuple[int, ...], num_classes: int) -> SemanticCache:  # noqa: ANN001
    """The semantic cache of a policy (``cfg`` its cache section, ``ad`` its adaptation section)."""
    working_set = "working-set" in ad.strategies
    cache = SemanticCache(cfg, exits, dmax, dims, num_classes, max_hot=ad.max_hot if working_set else None)
    if working_set:
        cache.set_hot_size(min(max(cfg.hot_size, ad.min_hot), ad.max_hot))
    return cache


class Adapter:
    def __init__(self, cache: SemanticCache, ad, num_classes: int) -> None:  # noqa: ANN001
        self.cache, self.ad = cache, ad
        self.strategies = frozenset(ad.strategies)
        self.track_answers = "working-set" in self.strategies  # last_answer's only reader
        self.last_answer = np.full(num_classes, -np.inf)  # time each class was last answered
        self.miss_streak = 0
        self.hits_since_miss = 0
        self.peak_bytes = 0

    def promote(self, slot: int, c: int, t: float) -> None:
        """A cold hit on class ``c`` in ``slot`` at time ``t``."""
        self.cache.promote(slot)
        self.cache.touch_one(slot, t)
        self.last_answer[c] = t
        self.hits_since_miss += 1

    def confirm(self, c: int, vectors: np.ndarray, t: float) -> bool:
        """Apply the rules for a confirmed frame of class ``c`` with ``vectors`` (exits, dmax); returns whether a
        scene change was acted on."""
        cache, ad = self.cache, self.ad
        present = cache.slot_of[c] >= 0
        if self.hits_since_miss:
            self.miss_streak = 0
        self.hits_since_miss = 0
        self.miss_streak = 0 if present else self.miss_streak + 1
        scene = False
        if "scene-reset" in self.strategies and self.miss_streak >= ad.miss_streak:
            if ad.on_scene_change == "reset":
                cache.reset()
            else:
                cache.shrink(ad.keep)
            scene = True
            self.miss_streak = 0
            present = cache.slot_of[c] >= 0
        self.last_answer[c] = t
        if "working-set" in self.strategies:
            ws = int(np.count_nonzero(self.last_answer >= t - ad.window_s))
            cache.set_hot_size(min(max(ws, ad.min_hot), ad.max_hot))
        if present:
            s = int(cache.slot_of[c])
            if "ema" in self.strategies:
                cache.update_centre(s, vectors, ad.ema_alpha)
        else:
            s = cache.insert(c, vectors, t)
        cache.touch_one(s, t)
        if not present:  # only an insertion can grow the cache
            self.peak_bytes = max(self.peak_bytes, cache.bytes())
        return scene
