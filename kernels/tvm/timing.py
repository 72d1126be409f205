"""Timing compiled kernels: one sample = the mean of ``number`` back-to-back runs, timed by TVM's
``time_evaluator`` on the device itself (locally or through RPC), after one warm-up run.

Statistics use trimming: interference from other processes only ever makes a run slower, so the slowest
``trim`` fraction of the samples is dropped before the median, percentiles and coefficient of variation
are taken (the profile records how many samples were taken and kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_TRIM = 0.2


class KernelTimer:
    """Times ``vm[func](*args)`` with the inputs set once on the device (no host copies in the loop)."""

    def __init__(self, vm: Any, device: Any, args: Sequence[Any], number: int = 1, func: str = "main") -> None:
        self.vm, self.device, self.func = vm, device, func
        vm.set_input(func, *args)
        self.number = 1
        self._make(number)

    def _make(self, number: int) -> None:
        self.number = max(1, int(number))
        self._f = self.vm.time_evaluator("invoke_stateful", self.device, number=self.number, repeat=1)

    def sample_ms(self) -> float:
        return float(self._f(self.func).mean) * 1e3

    def calibrate(self, sample_ms: float, max_number: int = 10_000) -> int:
        """Pick ``number`` so that one sample lasts about ``sample_ms``."""
        self._make(1)
        est = sorted(self.sample_ms() for _ in range(3))[1]
        self._make(min(max_number, max(1, math.ceil(sample_ms / max(est, 1e-6)))))
        return self.number


def trimmed(samples: Sequence[float], trim: float = DEFAULT_TRIM) -> np.ndarray:
    a = np.sort(np.asarray(samples, dtype=np.float64))
    keep = max(1, int(math.ceil(len(a) * (1.0 - trim))))
    return a[:keep]


def latency_stats(samples: Sequence[float], trim: float = DEFAULT_TRIM, digits: int = 6) -> dict[str, float | int]:
    """Median, mean, p10, p90, min, max and CV of the kept samples (milliseconds)."""
    k = trimmed(samples, trim)
    mean = float(k.mean())
    cv = float(k.std(ddof=1) / mean) if len(k) > 1 and mean > 0 else 0.0
    r = lambda v: round(float(v), digits)  # noqa: E731
    return {"median_ms": r(np.median(k)), "mean_ms": r(mean), "p10_ms": r(np.percentile(k, 10)),
            "p90_ms": r(np.percentile(k, 90)), "min_ms": r(k[0]), "max_ms": r(k[-1]), "cv": round(cv, 6),
            "samples": int(len(k))}


@dataclass(frozen=True)
class TimingConfig:
    warmup: int = 5  # rounds discarded
    repeats: int = 40  # rounds kept (before trimming)
    sample_ms: float = 4.0  # target duration of one sample
    trim: float = DEFAULT_TRIM
    lookup_repeats: int = 15
    lookup_sample_ms: float = 1.0
    cv_warn: float = 0.03

    def to_json(self) -> dict:
        return {"warmup_rounds": self.warmup, "repeats": self.repeats, "sample_ms": self.sample_ms,
                "trim": {"drop_slowest_fraction": self.trim}, "lookup_repeats": self.lookup_repeats,
                "lookup_sample_ms": self.lookup_sample_ms, "cv_warn": self.cv_warn}


class ChainTimer:
    """Times each block *in context*: the blocks' VM functions run in sequence, each on the previous block's
    output, with ``perf_counter`` around every call, exactly as a block-by-block runtime calls them.

    A block timed back to back on its own (``time_evaluator``) finds its weights, its input and its workspace
    in the caches the previous run left; in the model it finds what the previous *blocks* left. On this CPU
    MobileNetV2's isolated block timings summed to 4-13% less than the whole model, a gap that swings with
    the other tenants' use of the shared L3. Only a local device can be timed this way: over RPC the host's clock
    would time the network.
    """

    def __init__(self, functions: Sequence[Any], x: Any, device: Any = None) -> None:
        self.functions, self.x, self.device = list(functions), x, device
        self.passes = 1

    def run(self) -> tuple[np.ndarray, float]:
        """One pass: per-block milliseconds and the pass's total (including the glue between calls)."""
        import time

        pc = time.perf_counter_ns
        out = np.empty(len(self.functions))
        cur = self.x
        start = pc()
        for j, f in enumerate(self.functions):
            t0 = pc()
            cur = f(cur)
            out[j] = pc() - t0
        total = pc() - start
        return out * 1e-6, total * 1e-6

    def calibrate(self, sample_ms: float, max_passes: int = 1000) -> int:
        """Pick how many passes one sample averages so that it lasts about ``sample_ms``."""
        est = sorted(self.run()[1] for _ in range(3))[1]
        self.passes = min(max_passes, max(1, math.ceil(sample_ms / max(est, 1e-6))))
        return self.passes

    def sample_ms(self) -> tuple[np.ndarray, float]:
        """Per-block and total milliseconds, each the mean of ``passes`` passes."""
        acc, tot = np.zeros(len(self.functions)), 0.0
        for _ in range(self.passes):
            b, t = self.run()
            acc += b
            tot += t
        return acc / self.passes, tot / self.passes


class CallTimer:
    """Times ``number`` back-to-back Python-level calls ``fn(x)`` (``perf_counter`` around the loop): with
    :class:`KernelTimer` on the same block and input, the difference is what calling a block from Python costs
    beyond its kernels: the call itself (under a microsecond here) and, with several threads, whatever starting
    TVM's thread pool from Python costs more than ``time_evaluator``'s C++ loop does (2-20 us per block here)."""

    def __init__(self, fn: Callable[[Any], Any], x: Any, number: int = 1) -> None:
        self.fn, self.x, self.number = fn, x, max(1, int(number))

    def sample_ms(self) -> float:
        import time

        fn, x = self.fn, self.x
        t0 = time.perf_counter_ns()
        for _ in range(self.number):
            fn(x)
        return (time.perf_counter_ns() - t0) * 1e-6 / self.number


def call_overhead_ms(differences: Sequence[float]) -> float:
    """A block's Python-level call overhead from side-by-side samples of (``CallTimer`` - ``KernelTimer``) on the
    same block and input: their median, clamped at 0. A profile's in-context block time is the block's
    in-sequence call less this; the runtime's ``dispatch_ms`` charges it back."""
    return max(0.0, float(np.median(np.asarray(differences, dtype=np.float64)))) if len(differences) else 0.0

