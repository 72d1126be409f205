"""The policy search space of `run_sim.py sweep`, and how one point of it becomes a policy.

The space has a fixed set of parameters (every trial suggests all of them, whatever it enables), so that
NSGA-II's crossover sees one search space: per exit point whether it is enabled and a threshold *level*
u in [0, 1] that the exit metric maps to its own scale; cache sizes, the cold level's first exit and the
replacement rule; the exit metric; the adaptation strategies and their parameters. Decoding is a pure
function of the parameter dict, so a stored trial always rebuilds the same policy.
"""

from __future__ import annotations

from typing import Any

from simulator.exit_metric import LOGISTIC_METRICS
from simulator.policy import AdaptationConfig, CacheConfig, MetricConfig, Policy

SPACE_VERSION = 2  # 2: the temporal exit metric
METRICS = ("calibrated", "cosine", "margin", "temporal")
REPLACEMENTS = ("lru", "lfu", "lfu-decay")
SCENE_ACTIONS = ("shrink", "reset")


def threshold(kind: str, u: float) -> float:
    """Map a level u in [0, 1] to the metric's threshold: calibrated or temporal probability 0.9..0.999
    (log-spaced in the error rate), cosine similarity 0.5..0.999, margin 0..0.5."""
    if kind in LOGISTIC_METRICS:
        return 1.0 - 10.0 ** (-(1.0 + 2.0 * u))
    if kind == "cosine":
        return 0.5 + 0.499 * u
    return 0.5 * u


def suggest(trial, exits: tuple[str, ...]) -> dict[str, Any]:  # noqa: ANN001
    """Ask an Optuna trial for every parameter of the space (the names are the stored record)."""
    p: dict[str, Any] = {}
    for e in exits:
        p[f"use_{e}"] = trial.suggest_categorical(f"use_{e}", [True, False])
        p[f"level_{e}"] = trial.suggest_float(f"level_{e}", 0.0, 1.0)
    p["metric"] = trial.suggest_categorical("metric", list(METRICS))
    p["hot_size"] = trial.suggest_int("hot_size", 1, 16, log=True)
    p["cold_size"] = trial.suggest_int("cold_size", 0, 64)
    p["cold_from"] = trial.suggest_categorical("cold_from", ["all", *exits])
    p["replacement"] = trial.suggest_categorical("replacement", list(REPLACEMENTS))
    p["working_set"] = trial.suggest_categorical("working_set", [True, False])
    p["ema"] = trial.suggest_categorical("ema", [True, False])
    p["ema_alpha"] = trial.suggest_float("ema_alpha", 0.05, 1.0, log=True)
    p["scene_reset"] = trial.suggest_categorical("scene_reset", [True, False])
    p["on_scene_change"] = trial.suggest_categorical("on_scene_change", list(SCENE_ACTIONS))
    p["miss_streak"] = trial.suggest_int("miss_streak", 1, 8)
    p["window_s"] = trial.suggest_float("window_s", 5.0, 120.0, log=True)
    return p


def param_names(exits: tuple[str, ...]) -> list[str]:
    return [*(f"{k}_{e}" for e in exits for k in ("use", "level")), "metric", "hot_size", "cold_size", "cold_from",
            "replacement", "working_set", "ema", "ema_alpha", "scene_reset", "on_scene_change", "miss_streak", "window_s"]


def decode(params: dict[str, Any], exits: tuple[str, ...], name: str = "tuned") -> Policy:
    """The policy of a point of the space. At least one exit is always enabled (the deepest one if the
    point enables none), so every point is a valid policy."""
    enabled = [e for e in exits if params[f"use_{e}"]] or [exits[-1]]
    kind = params["metric"]
    strategies = [s for s, key in (("working-set", "working_set"), ("ema", "ema"), ("scene-reset", "scene_reset"))
                  if params[key]]
    hot = int(params["hot_size"])
    return Policy(
        name=name,
        kind="smtm",
        description="Found by run_sim.py sweep.",
        exits=enabled,
        cache=CacheConfig(hot_size=hot, cold_size=int(params["cold_size"]),
                          cold_from=None if params["cold_from"] == "all" else params["cold_from"],
                          replacement=params["replacement"]),
        metric=MetricConfig(kind=kind, thresholds={e: threshold(kind, float(params[f"level_{e}"])) for e in enabled}),
        adaptation=AdaptationConfig(strategies=strategies, ema_alpha=float(params["ema_alpha"]),
                                    window_s=float(params["window_s"]), min_hot=1, max_hot=max(16, hot),
                                    miss_streak=int(params["miss_streak"]), on_scene_change=params["on_scene_change"]),
    )


def level_of(probability: float) -> float:
    """The level u whose calibrated (or temporal) threshold is ``probability`` (the inverse of threshold())."""
    import math

    return (-math.log10(1.0 - probability) - 1.0) / 2.0


TEMPORAL_STARTS = (0.95, 0.92)  # the temporal metric's thresholds the search also starts from


def start_params(exits: tuple[str, ...]) -> list[dict[str, Any]]:
    """The search's first trials: the `smtm` preset, then the same cache with the temporal metric at each of
    TEMPORAL_STARTS on every exit. Starting from known-good points matters in a short search: the space has
    a few dozen parameters, and random points rarely enable the right exits at sensible thresholds."""
    base = preset_params(exits)
    starts = [base]
    for prob in TEMPORAL_STARTS:
        p = dict(base, metric="temporal")
        p.update({f"level_{e}": level_of(prob) for e in exits})
        starts.append(p)
    return starts


def preset_params(exits: tuple[str, ...]) -> dict[str, Any]:
    """The default `smtm` preset as a point of the space (checked by the tests to decode to the preset)."""
    from simulator.presets import SMTM_CONFIDENCE, default_adaptation, default_cache

    cache, ad = default_cache(), default_adaptation()
    level = level_of(SMTM_CONFIDENCE)
    p: dict[str, Any] = {}
    for e in exits:
        p[f"use_{e}"] = True
        p[f"level_{e}"] = level
    p.update(metric="calibrated", hot_size=cache.hot_size, cold_size=cache.cold_size,
             cold_from="all" if cache.cold_from is None else cache.cold_from, replacement=cache.replacement,
             working_set="working-set" in ad.strategies, ema="ema" in ad.strategies, ema_alpha=ad.ema_alpha,
             scene_reset="scene-reset" in ad.strategies, on_scene_change=ad.on_scene_change,
             miss_streak=ad.miss_streak, window_s=ad.window_s)
    return p
