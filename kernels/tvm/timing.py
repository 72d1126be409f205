"""Timing compiled kernels: one sample = ``number`` back-to-back runs, each timed by TVM's ``time_evaluator``
on the device itself (locally or through RPC) after one warm-up run, less the slowest ``run_trim`` of them,
averaged.

Interference from other processes only ever makes a run slower, and it comes in two sizes here: single runs
that a timer interrupt or another tenant hits (dropped inside the sample), and slow phases of the shared
machine lasting seconds (the statistics drop the slowest ``trim`` fraction of the samples before the median,
percentiles and coefficient of variation are taken; the profile records how many were taken and kept).

Inside a sample whole runs are dropped and the rest averaged, rather than taking each block's median: the
simulator adds block costs, and medians do not add up. On 20,000 in-context passes of the reference CNN
(2026-11-22) the per-block medians of 20-pass samples summed to 2.8% less than the median pass, while means
over the fastest 75% (or 50%) of the passes summed to within 0.4% of the same statistic of the pass totals,
and varied about as little as the medians from sample to sample (worst per-block CV 7.4% (6.5%) against 7.7%,
in a noisy phase; plain means: 8.5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_TRIM = 0.2
DEFAULT_RUN_TRIM = 0.25


def kept_count(n: int, trim: float) -> int:
    """How many of ``n`` values are kept when the slowest ``trim`` fraction is dropped (at least one)."""
    return max(1, int(math.ceil(n * (1.0 - trim))))


def kept_mean(values: Any, run_trim: float = DEFAULT_RUN_TRIM) -> float:
    """The mean of the fastest ``1 - run_trim`` of ``values``."""
    return float(trimmed(values, run_trim).mean())


class KernelTimer:
    """Times ``vm[func](*args)`` with the inputs set once on the device (no host copies in the loop): a sample is
    the :func:`kept_mean` of ``number`` runs, each timed on its own (``time_evaluator``'s repeats, timed in C++ on
    the device: timed one by one, the runs of a 0.05 ms block averaged at most about 1% more than timed together)."""

    def __init__(self, vm: Any, device: Any, args: Sequence[Any], number: int = 1, func: str = "main",
                 run_trim: float = DEFAULT_RUN_TRIM) -> None:
        self.vm, self.device, self.func, self.run_trim = vm, device, func, run_trim
        vm.set_input(func, *args)
        self.number = 1
        self._make(number)

    def _make(self, number: int) -> None:
        self.number = max(1, int(number))
        self._f = self.vm.time_evaluator("invoke_stateful", self.device, number=1, repeat=self.number)

    def sample_ms(self) -> float:
        return kept_mean(self._f(self.func).results, self.run_trim) * 1e3

    def calibrate(self, sample_ms: float, max_number: int = 10_000, min_number: int = 1) -> int:
        """Pick ``number`` so that one sample lasts about ``sample_ms``, and has at least ``min_number`` runs."""
        self._make(1)
        est = sorted(self.sample_ms() for _ in range(3))[1]
        self._make(min(max_number, max(min_number, 1, math.ceil(sample_ms / max(est, 1e-6)))))
        return self.number


def trimmed(samples: Sequence[float], trim: float = DEFAULT_TRIM) -> np.ndarray:
    a = np.sort(np.asarray(samples, dtype=np.float64))
    return a[:kept_count(len(a), trim)]


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
    context_sample_ms: float = 16.0  # target duration of one in-context sample
    run_trim: float = DEFAULT_RUN_TRIM  # slowest fraction of the runs (passes) inside a sample dropped
    min_runs: int = 8  # runs (passes) per sample at least, so that there is something to drop
    trim: float = DEFAULT_TRIM
    lookup_repeats: int = 15
    lookup_sample_ms: float = 1.0
    cv_warn: float = 0.03
    attempts: int = 3  # times the rounds are taken at most while some block's trimmed CV is above cv_warn

    def to_json(self) -> dict:
        return {"warmup_rounds": self.warmup, "repeats": self.repeats, "sample_ms": self.sample_ms,
                "context_sample_ms": self.context_sample_ms, "min_runs_per_sample": self.min_runs,
                "trim": {"drop_slowest_fraction": self.trim, "drop_slowest_runs_in_sample": self.run_trim}, "lookup_repeats": self.lookup_repeats,
                "lookup_sample_ms": self.lookup_sample_ms, "cv_warn": self.cv_warn, "max_attempts": self.attempts}


class ChainTimer:
    """Times each block *in context*: the blocks' VM functions run in sequence, each on the previous block's
    output, with ``perf_counter`` around every call, exactly as a block-by-block runtime calls them.

    A block timed back to back on its own (``time_evaluator``) finds its weights, its input and its workspace
    in the caches the previous run left; in the model it finds what the previous *blocks* left. On this CPU
    MobileNetV2's isolated block timings summed to 4-13% less than the whole model, a gap that swings with
    the other tenants' use of the shared L3. Only a local device can be timed this way: over RPC the host's clock
    would time the network.
    """

    def __init__(self, functions: Sequence[Any], x: Any, device: Any = None, run_trim: float = DEFAULT_RUN_TRIM) -> None:
        self.functions, self.x, self.device, self.run_trim = list(functions), x, device, run_trim
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

    def calibrate(self, sample_ms: float, max_passes: int = 1000, min_passes: int = 1) -> int:
        """Pick how many passes one sample takes so that it lasts about ``sample_ms``, and has at least
        ``min_passes``."""
        est = sorted(self.run()[1] for _ in range(3))[1]
        self.passes = min(max_passes, max(min_passes, 1, math.ceil(sample_ms / max(est, 1e-6))))
        return self.passes

    def sample_ms(self) -> tuple[np.ndarray, float]:
        """Per-block and total milliseconds over ``passes`` passes, less the slowest ``run_trim`` of the passes
        (by their totals, so that every block keeps the same passes and the blocks' means add up to the total's)."""
        per_block = np.empty((self.passes, len(self.functions)))
        totals = np.empty(self.passes)
        for i in range(self.passes):
            per_block[i], totals[i] = self.run()
        keep = np.argsort(totals, kind="stable")[:kept_count(self.passes, self.run_trim)]
        return per_block[keep].mean(axis=0), float(totals[keep].mean())


class CallTimer:
    """Times ``number`` back-to-back Python-level calls ``fn(x)``, each with ``perf_counter`` around it, and takes
    their :func:`kept_mean` (as :class:`KernelTimer` does with its runs): with
    :class:`KernelTimer` on the same block and input, the difference is what calling a block from Python costs
    beyond its kernels: the call itself (under a microsecond here) and, with several threads, whatever starting
    TVM's thread pool from Python costs more than ``time_evaluator``'s C++ loop does (2-20 us per block here)."""

    def __init__(self, fn: Callable[[Any], Any], x: Any, number: int = 1, run_trim: float = DEFAULT_RUN_TRIM) -> None:
        self.fn, self.x, self.number, self.run_trim = fn, x, max(1, int(number)), run_trim

    def sample_ms(self) -> float:
        import time

        fn, x, pc = self.fn, self.x, time.perf_counter_ns
        out = np.empty(self.number)
        for i in range(self.number):
            t0 = pc()
            fn(x)
            out[i] = pc() - t0
        return kept_mean(out, self.run_trim) * 1e-6


def call_overhead_ms(differences: Sequence[float]) -> float:
    """A block's Python-level call overhead from side-by-side samples of (``CallTimer`` - ``KernelTimer``) on the
    same block and input: their median, clamped at 0. A profile's in-context block time is the block's
    in-sequence call less this; the runtime's ``dispatch_ms`` charges it back."""
    return max(0.0, float(np.median(np.asarray(differences, dtype=np.float64)))) if len(differences) else 0.0

