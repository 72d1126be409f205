"""Named policies: the baselines, the default SMTM policy and its oracle.

Thresholds are per exit point, so presets are made for a model's exit points. The defaults are the variants
that measured best on the shipped EPIC-KITCHENS recorded trace and this machine's profile (see the README's
simulator section for the numbers); they are a starting point for tuning, not a tuned policy.
"""

from __future__ import annotations

from simulator.policy import (
    AdaptationConfig, BranchyConfig, CacheConfig, DeepCacheConfig, FoggyCacheConfig, MetricConfig, Policy,
)

PRESETS = ("no-cache", "deepcache", "foggycache", "branchy", "smtm", "oracle")

# SMTM defaults: probability that the top-1 match is the full model's answer, per exit point.
SMTM_CONFIDENCE = 0.97
BRANCHY_ENTROPY = 1.5  # nats


def default_cache() -> CacheConfig:
    return CacheConfig(hot_size=4, cold_size=28, cold_from=None, replacement="lru")


def default_adaptation() -> AdaptationConfig:
    return AdaptationConfig(strategies=["ema", "scene-reset"], ema_alpha=0.5)


def preset(name: str, exits: tuple[str, ...]) -> Policy:
    if name == "no-cache":
        return Policy(name=name, kind="no-cache", description="Plain inference: every block on every frame.")
    if name == "deepcache":
        return Policy(name=name, kind="deepcache", deepcache=DeepCacheConfig(),
                      description="DeepCache-style reuse of the previous frame's unchanged regions.")
    if name == "foggycache":
        return Policy(name=name, kind="foggycache", foggycache=FoggyCacheConfig(),
                      description="FoggyCache-style input-level reuse: LSH + homogeneity-checked kNN vote.")
    if name == "branchy":
        return Policy(name=name, kind="branchy", branchy=BranchyConfig(thresholds={e: BRANCHY_ENTROPY for e in exits}),
                      description="BranchyNet-style exit heads with an entropy threshold.")
    if name == "smtm":
        return Policy(name=name, kind="smtm", cache=default_cache(), adaptation=default_adaptation(),
                      metric=MetricConfig(kind="calibrated", thresholds={e: SMTM_CONFIDENCE for e in exits}),
                      description="Semantic memory: hot/cold cache, layer-aware calibrated exit metric.")
    if name == "oracle":
        return Policy(name=name, kind="oracle", cache=default_cache(), adaptation=default_adaptation(),
                      description="Exit at the earliest exit whose cached answer is the full model's.")
    raise KeyError(name)
