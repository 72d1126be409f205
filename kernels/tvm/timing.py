"""Timing compiled kernels: one sample = the mean of ``number`` back-to-back runs, timed by TVM's
``time_evaluator`` on the device itself (locally or through RPC), after one warm-up run.

Statistics use trimming: interference from other processes only ever makes a run slower, so the slowest
``trim`` fraction of the samples is dropped before the median, percentiles and coefficient of variation
are taken (the profile records how many samples were taken and kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

DEFAULT_TRIM = 0.2


class KernelTimer:
    """Times ``vm["main"](*args)`` with the inputs set once on the device (no host copies in the loop)."""

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
