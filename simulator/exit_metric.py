"""Exit metrics: how confident a cache match is, from the similarities of one frame to the cached classes.

Each metric is a named variant; a frame exits at an exit point when the metric reaches that exit point's
threshold.

- ``cosine``: the top-1 cosine similarity. One number for every layer is wrong in general: shallow
  layers give high similarities to everything.
- ``margin``: top-1 minus top-2 similarity (0 stands in for the top-2 when a single entry is searched),
  which removes part of a layer's overall level.
- ``calibrated`` (layer-aware): a per-exit logistic model of the probability that the top-1 match is the
  class the full model would answer, fitted on calibration data the replay never sees. Its features are
  the log cosine distance of the top-1 match, the log ratio of the top-2 and top-1 distances (a ratio test:
  how much better the best match is than the runner-up) and log(entries searched). Similarities of a good
  match crowd just below 1, so distances on a log scale separate right from wrong far better than raw
  similarities (on the shipped calibration trace: AUC 0.93-0.99 per exit against 0.86-0.95). Thresholds are
  then probabilities, comparable across layers.
- ``temporal``: ``calibrated`` plus the agreement of the top-1 match with the previous answer. A video's
  consecutive frames mostly show the same object, so a match that names the class the previous processed
  frame of the same video was answered with is far more often right than one that does not (on the shipped
  trace the full model's answer equals the previous one on 86% of frames). But agreement is also how a cache
  goes stale: when the object changes and its class is not cached yet, the old class is still the nearest
  entry and still agrees, and every later frame agrees with the stale answer before it. What tells the two
  apart is how far the frame has drifted from the last frame the full model confirmed in this video: the
  log cosine distance between their vectors at the first enabled exit (between consecutive frames, the
  same distance has a median of -6.7 where the model's answer stays and -1.1 where it changes on the
  shipped trace: AUC 0.83 at b1, 0.96 at b7). The model is the calibrated one with every coefficient
  allowed to differ when the top-1 class agrees, plus the drift under agreement: nine coefficients per
  exit, the four of ``calibrated``, four added under agreement and the weight of the drift. The first frame
  of a video has no previous answer and never agrees; a video without a confirmed frame yet has drifted as
  far as it gets (log distance 0). Fitted on the shipped calibration trace (the smtm preset's cache, every
  exit at 0.92 or 0.95), the agreement terms' bias is +1.3 (b7) to +5.4 (b1) and the drift's weight is
  small (-0.13 to +0.21): there the distance to the cached class already carries most of what the drift
  would tell.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("bias", "log_distance", "log_distance_ratio", "log_entries")
TEMPORAL_FEATURES = (*FEATURES, *(f"agree_{f}" for f in FEATURES), "agree_log_drift")
LOGISTIC_METRICS = ("calibrated", "temporal")
MIN_DISTANCE = 1e-4  # float16 vectors cannot resolve cosine distances below this


def n_coefficients(kind: str) -> int:
    """Coefficients per exit of a logistic exit metric."""
    return len(TEMPORAL_FEATURES) if kind == "temporal" else len(FEATURES)


def features(s1: np.ndarray, s2: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """(..., 4) design matrix [1, log d1, log(d2 / d1), log n] with d = 1 - cosine similarity; a missing
    top-2 counts as similarity 0 (an unrelated entry)."""
    s2 = np.where(np.isfinite(s2), s2, 0.0)
    d1 = np.maximum(1.0 - s1, MIN_DISTANCE)
    d2 = np.maximum(1.0 - s2, MIN_DISTANCE)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), np.shape(s1))
    with np.errstate(invalid="ignore"):
        return np.stack([np.ones_like(d1), np.log(d1), np.log(d2 / d1), np.log(np.maximum(n, 1.0))], axis=-1)


def bias_terms(coeffs: np.ndarray, ns, first: int = 0, minus: np.ndarray | None = None) -> np.ndarray:
    """(G, E) the terms of a logistic metric's logit that depend only on the entries searched, for each of the
    ``ns`` (G) and every exit: ``coeffs[:, first] + coeffs[:, first + 3] * log n`` (the bias and log-entries
    weights; ``first`` 4: the temporal metric's terms under agreement), less ``minus`` (E,) when given. The
    simulator and the runtime both take these from here, so that their arithmetic is the same."""
    n = np.maximum(np.array(ns, dtype=np.float64), 1.0)
    b = coeffs[None, :, first] + coeffs[None, :, first + 3] * np.log(n)[:, None]
    return b if minus is None else b - minus[None, :]


def drift(v: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Log cosine distance of unit vectors ``v`` (rows) from ``anchor`` (one row, broadcast), in float64: how
    far frames have drifted from the last confirmed frame, at the first enabled exit."""
    v = np.asarray(v, dtype=np.float64)
    a = np.asarray(anchor, dtype=np.float64)
    if a.shape != v.shape:  # the runtime asks for one row at a time: spare it the broadcast (microseconds there)
        a = np.broadcast_to(a, v.shape)
    c = np.einsum("ij,ij->i", v, a)
    return np.log(np.maximum(1.0 - c, MIN_DISTANCE))


def temporal_features(s1: np.ndarray, s2: np.ndarray, n: np.ndarray | float, agree: np.ndarray | bool,
                      log_drift: np.ndarray | float = 0.0) -> np.ndarray:
    """(..., 9) design matrix of the temporal metric: the calibrated features, the same times ``agree``
    (whether the top-1 class equals the previous answer), and ``agree`` times the frame's drift."""
    f = features(s1, s2, n)
    a = np.broadcast_to(np.asarray(agree, dtype=f.dtype), np.shape(s1))[..., None]
    lc = np.broadcast_to(np.asarray(log_drift, dtype=f.dtype), np.shape(s1))[..., None]
    return np.concatenate([f, f * a, a * lc], axis=-1)


def metric_values(kind: str, s1: np.ndarray, s2: np.ndarray, n: np.ndarray | float, coeffs: np.ndarray | None,
                  agree: np.ndarray | bool = False, log_drift: np.ndarray | float = 0.0) -> np.ndarray:
    """Metric per frame. ``coeffs``: (..., 4) logistic coefficients for ``calibrated``, (..., 9) for ``temporal``
    (broadcast over frames); ``agree``, ``log_drift``: temporal only, whether the top-1 class equals the
    previous answer and how far the frame drifted from the last confirmed one (:func:`drift`)."""
    if kind == "cosine":
        return s1
    if kind == "margin":
        return s1 - np.where(np.isfinite(s2), s2, 0.0)
    if kind == "calibrated":
        z = np.sum(features(s1, s2, n) * coeffs, axis=-1)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    if kind == "temporal":
        z = np.sum(temporal_features(s1, s2, n, agree, log_drift) * coeffs, axis=-1)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    raise ValueError(f"unknown exit metric {kind!r}")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """Weights of P(y=1 | x) = sigmoid(x @ w), L2-regularised (not the bias), by Newton's method."""
    from scipy.special import expit

    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(50):
        p = expit(x @ w)
        grad = x.T @ (p - y) / len(y) + reg * w
        h = (x * (p * (1 - p))[:, None]).T @ x / len(y) + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w
