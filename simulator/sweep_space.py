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
from simulator.policy import AdaptationConfig, CacheConfig, InputReuseConfig, MetricConfig, Policy

SPACE_VERSION = 3  # 2: the temporal exit metric; 3: the input level
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
    p["input_level"] = trial.suggest_categorical("input_level", [True, False])
    p["input_u"] = trial.suggest_float("input_u", 0.0, 1.0)
    p["input_max_run"] = trial.suggest_int("input_max_run", 1, 32, log=True)
    return p


def input_similarity(u: float) -> float:
    """Map a level u in [0, 1] to the input level's similarity 0.8..0.995 (log-spaced in 1 - similarity)."""
    return 1.0 - 0.2 * 10.0 ** (-1.6 * u)


def input_level_of(similarity: float) -> float:
    """The level u of an input similarity (the inverse of input_similarity())."""
    import math

    return -math.log10((1.0 - similarity) / 0.2) / 1.6


def param_names(exits: tuple[str, ...]) -> list[str]:
    return [*(f"{k}_{e}" for e in exits for k in ("use", "level")), "metric", "hot_size", "cold_size", "cold_from",
            "replacement", "working_set", "ema", "ema_alpha", "scene_reset", "on_scene_change", "miss_streak", "window_s",
            "input_level", "input_u", "input_max_run"]


def decode(params: dict[str, Any], exits: tuple[str, ...], name: str = "tuned") -> Policy:
    """The policy of a point of the space. At least one exit is always enabled (the deepest one if the
    point enables none), so every point is a valid policy. A point stored before the input level existed (space
    version 2) decodes without one."""
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
        input_reuse=InputReuseConfig(similarity=input_similarity(float(params["input_u"])),
                                     max_run=int(params["input_max_run"])) if params.get("input_level", False) else None,
    )


def level_of(probability: float) -> float:
    """The level u whose calibrated (or temporal) threshold is ``probability`` (the inverse of threshold())."""
    import math

    return (-math.log10(1.0 - probability) - 1.0) / 2.0


TEMPORAL_STARTS = (0.95, 0.92)  # the temporal metric's thresholds the search also starts from
INPUT_START = (0.95, 8)  # the input level's similarity and longest run the search also starts from


def start_params(exits: tuple[str, ...]) -> list[dict[str, Any]]:
    """The search's first trials: the `smtm` preset, then the same cache with the temporal metric at each of
    TEMPORAL_STARTS on every exit, then the first of those with the input level at INPUT_START. Starting from
    known-good points matters in a short search: the space has a few dozen parameters, and random points rarely
    enable the right exits at sensible thresholds."""
    base = preset_params(exits)
    starts = [base]
    for prob in TEMPORAL_STARTS:
        p = dict(base, metric="temporal")
        p.update({f"level_{e}": level_of(prob) for e in exits})
        starts.append(p)
    sim, run = INPUT_START
    starts.append(dict(starts[1], input_level=True, input_u=input_level_of(sim), input_max_run=run))
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
             miss_streak=ad.miss_streak, window_s=ad.window_s, input_level=False, input_u=0.5, input_max_run=8)
    return p
