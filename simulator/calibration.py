"""Fitting the layer-aware exit metric on calibration data (never on the trace being replayed).

Two rounds. First the calibration trace is replayed with the policy's cache and adaptation but every frame
runs the whole model, so that at every exit point we see what a lookup would see and whether its top-1
class is the full model's answer; a logistic model per exit point is fitted on that. Then the policy itself
runs on the calibration trace with those coefficients, and the model is refitted on what its lookups saw
there: with early exits the cache is refreshed less often than when every frame confirms, and the
similarities a deployed policy meets are lower; fitting on its own dynamics keeps the probabilities honest.
Behind an input level (``input_reuse``) both rounds see only the frames that reach the cache, as deployed.

The ``temporal`` metric's model also sees whether each lookup's top-1 class equals the previous answer: in the
first round that is the full model's previous answer, in the second whatever the policy answered; and how far
the frame drifted from the last confirmed one.
"""

from __future__ import annotations

import numpy as np

from simulator.exit_metric import features, fit_logistic, n_coefficients, temporal_features
from simulator.policy import Policy
from simulator.smtm import SmtmEngine


def collect(workload, device, policy: Policy, enabled: tuple[str, ...],
            calibration: dict[str, list[float]] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per exit: the design matrix and the 0/1 outcome of every lookup seen on ``workload``, with every frame
    confirmed (``calibration=None``) or under the policy with these coefficients."""
    if calibration is None:
        engine = SmtmEngine(workload, device, policy, enabled, collect=True)
    else:
        engine = SmtmEngine(workload, device, policy, enabled, calibration=calibration, log_samples=True)
    for i in range(len(workload)):
        engine.decide(i)
    temporal = policy.metric.kind == "temporal"
    width = n_coefficients(policy.metric.kind)
    samples = engine.samples
    E = len(enabled)
    if not samples:
        return {e: (np.zeros((0, width)), np.zeros(0)) for e in enabled}
    # Every lookup of every sample at once, as (samples, 2 stages, exits): the hot level's search, then both levels'
    # where the cold level was searched. Rows keep the order of one sample after another, hot before cold, so the
    # fit sees the same matrix, row for row, as when it was built sample by sample.
    col = lambda name: np.array([getattr(s, name) for s in samples])  # noqa: E731
    s1 = np.stack([col("s1_hot"), col("s1_all")], axis=1)
    s2 = np.stack([col("s2_hot"), col("s2_all")], axis=1)
    top1 = np.stack([col("top1_hot"), col("top1_all")], axis=1)
    n = np.stack([col("n_hot"), col("n_all")], axis=1).astype(np.float64)[:, :, None]
    used = np.stack([np.broadcast_to((col("n_hot") > 0)[:, None], (len(samples), E)), col("cold_searched")], axis=1)
    agree = top1 == col("prev")[:, None, None] if temporal else None
    drift = col("log_drift")[:, None, None] if temporal else None
    # The engine hands over float32 similarities, but float64 ones where a stage searched a single entry (no
    # runner-up) or none; each (sample, stage) is computed in the precision it came in, as it was one at a time.
    wide = np.array([[[a.dtype == np.float64 for a in (s.s1_hot, s.s2_hot)], [a.dtype == np.float64 for a in
                                                                               (s.s1_all, s.s2_all)]] for s in samples])
    x = np.empty((*s1.shape, width))
    for w1 in (False, True):
        for w2 in (False, True):
            at = (wide[:, :, 0] == w1) & (wide[:, :, 1] == w2)
            if not at.any():
                continue
            a1 = s1[at].astype(np.float64 if w1 else np.float32)
            a2 = s2[at].astype(np.float64 if w2 else np.float32)
            nn = np.broadcast_to(n, s1.shape)[at]
            x[at] = (temporal_features(a1, a2, nn, agree[at], np.broadcast_to(drift, s1.shape)[at]) if temporal
                     else features(a1, a2, nn))
    y = (top1 == workload.prediction[col("frame")][:, None, None]).astype(np.float64)
    return {e: (x[:, :, k][used[:, :, k]].reshape(-1, width), y[:, :, k][used[:, :, k]]) for k, e in enumerate(enabled)}


def _fit(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    table = {}
    for e, (x, y) in data.items():
        if len(y) < 20 or y.min() == y.max():
            # Too little or one-sided data: a flat model that never claims confidence.
            table[e] = [-10.0] + [0.0] * (x.shape[1] - 1)
            continue
        table[e] = [round(float(v), 6) for v in fit_logistic(x, y)]
    return table


def fit_calibration(workload, device, policy: Policy, enabled: tuple[str, ...], rounds: int = 2) -> dict[str, list[float]]:
    table = _fit(collect(workload, device, policy, enabled))
    for _ in range(rounds - 1):
        table = _fit(collect(workload, device, policy, enabled, calibration=table))
    return table
