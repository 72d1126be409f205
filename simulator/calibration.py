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
    pred = workload.prediction
    temporal = policy.metric.kind == "temporal"
    width = n_coefficients(policy.metric.kind)

    def design(s1, s2, n, top1, s):
        return temporal_features(s1, s2, n, top1 == s.prev, s.log_drift) if temporal else features(s1, s2, n)

    out = {}
    for k, e in enumerate(enabled):
        xs, ys = [], []
        for s in engine.samples:
            if s.n_hot > 0:
                xs.append(design(s.s1_hot[k], s.s2_hot[k], s.n_hot, s.top1_hot[k], s))
                ys.append(float(s.top1_hot[k] == pred[s.frame]))
            if s.cold_searched[k]:
                xs.append(design(s.s1_all[k], s.s2_all[k], s.n_all, s.top1_all[k], s))
                ys.append(float(s.top1_all[k] == pred[s.frame]))
        out[e] = (np.array(xs).reshape(-1, width), np.array(ys))
    return out


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
