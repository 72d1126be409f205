"""The semantic cache's two levels and replacement rules, on a handful of classes."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.cache import COLD, HOT, SemanticCache
from simulator.policy import CacheConfig

E, D = 2, 4


def make(hot: int = 2, cold: int = 2, replacement: str = "lru", half_life_s: float = 1.0) -> SemanticCache:
    return SemanticCache(CacheConfig(hot_size=hot, cold_size=cold, replacement=replacement, half_life_s=half_life_s),
                         E, D, (D, D), num_classes=10)


def vec(c: int) -> np.ndarray:
    v = np.zeros((E, D), np.float32)
    v[:, c % D] = 1.0
    return v


def level_of(cache: SemanticCache, c: int) -> int | None:
    s = cache.slot_of[c]
    return None if s < 0 else int(cache.level[s])


def test_new_classes_enter_hot_and_push_the_victim_down_then_out():
    cache = make(hot=2, cold=2)
    for t, c in enumerate([0, 1, 2, 3, 4]):
        cache.insert(c, vec(c), float(t))
    # 0 and 1 went down to cold as 2 and 3 arrived; 4 pushed 2 down, and 0 (oldest in cold) left the cache.
    assert [level_of(cache, c) for c in range(5)] == [None, COLD, COLD, HOT, HOT]
    assert cache.counts() == (2, 2) and cache.entries() == 4 and cache.peak_entries == 4
    assert cache.bytes() == 4 * (2 * D * 2 + 16)


def test_cold_hit_promotion_swaps_with_the_hot_victim():
    cache = make(hot=2, cold=2)
    for t, c in enumerate([0, 1, 2]):
        cache.insert(c, vec(c), float(t))
    v = cache.version
    cache.promote(int(cache.slot_of[0]))
    assert level_of(cache, 0) == HOT and level_of(cache, 1) == COLD and level_of(cache, 2) == HOT
    assert cache.counts() == (2, 1) and cache.version > v


@pytest.mark.parametrize("uses_a,use_b,victims", [
    # A used often long ago, B once recently: LRU and the decayed count drop A, plain LFU drops B.
    ([0.0, 0.1, 0.2], 10.0, {"lru": 0, "lfu": 1, "lfu-decay": 0}),
    # A used often just before B's single use: only LRU drops A.
    ([9.8, 9.9, 10.0], 10.5, {"lru": 0, "lfu": 1, "lfu-decay": 1}),
])
@pytest.mark.parametrize("rule", ["lru", "lfu", "lfu-decay"])
def test_replacement_rules(rule, uses_a, use_b, victims):
    cache = make(hot=2, cold=0, replacement=rule, half_life_s=1.0)
    a = cache.insert(0, vec(0), uses_a[0])
    cache.touch(np.array([a, a]), np.array(uses_a[1:]))
    cache.insert(1, vec(1), use_b)
    cache.insert(2, vec(2), use_b + 0.1)  # the hot level is full: one of 0 and 1 must go (no cold level)
    gone = [c for c in (0, 1) if cache.slot_of[c] < 0]
    assert gone == [victims[rule]]


def test_shrink_keeps_the_most_recent_classes_within_the_hot_size():
    cache = make(hot=2, cold=4)
    for t, c in enumerate(range(6)):
        cache.insert(c, vec(c), float(t))
    cache.shrink(4)
    assert sorted(c for c in range(6) if cache.slot_of[c] >= 0) == [2, 3, 4, 5]
    # All four kept, but the hot level still holds at most hot_size of them (the most recent).
    assert cache.counts() == (2, 2)
    assert level_of(cache, 5) == HOT and level_of(cache, 4) == HOT
    cache.shrink(1)
    assert [c for c in range(6) if cache.slot_of[c] >= 0] == [5] and cache.counts() == (1, 0)


def test_set_hot_size_demotes_and_reset_empties():
    cache = make(hot=4, cold=1)
    for t, c in enumerate(range(4)):
        cache.insert(c, vec(c), float(t))
    cache.set_hot_size(2)
    # 0 and 1 are demoted, but the cold level holds one: 0 (demoted first, then pushed out by 1) leaves.
    assert [level_of(cache, c) for c in range(4)] == [None, COLD, HOT, HOT]
    cache.reset()
    assert cache.entries() == 0 and np.all(cache.slot_of == -1)


def test_moving_average_renormalises_each_exit():
    cache = make()
    s = cache.insert(0, vec(0), 0.0)
    cache.update_centre(s, vec(1), 0.5)
    assert np.allclose(np.linalg.norm(cache.centres[s], axis=1), 1.0)
    assert np.allclose(cache.centres[s][:, :2], np.sqrt(0.5))
    cache.update_centre(s, vec(3), 1.0)
    assert np.array_equal(cache.centres[s], vec(3))
