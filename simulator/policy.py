"""The policy file (version 1): what runs on the device, as a validated pydantic model.

A policy says which processor runs the model, which exit points are enabled and, by ``kind``:

- ``no-cache``: plain inference, every block on every frame;
- ``smtm``: the semantic cache (hot and cold levels, replacement, exit metric with per-exit thresholds,
  adaptation strategies);
- ``oracle``: the same cache, but a frame exits at the earliest exit whose cached answer equals the full
  model's answer (the upper bound on speed-up at zero loss);
- ``deepcache``: reuse of the previous frame's computation in proportion to the unchanged part of the frame;
- ``foggycache``: input-level reuse (LSH on a cheap input descriptor, homogeneity-checked kNN vote);
- ``branchy``: classifier heads at the exit points with an entropy threshold each.

The JSON Schema (``simulator/schema/policy.schema.json``) is generated from these models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engram.errors import EngramError, FormatError, MismatchError, from_validation_error
from simulator.exit_metric import LOGISTIC_METRICS, n_coefficients

FORMAT_NAME = "engram.policy"
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "policy.schema.json"

Kind = Literal["no-cache", "smtm", "oracle", "deepcache", "foggycache", "branchy"]
KINDS: tuple[str, ...] = ("no-cache", "smtm", "oracle", "deepcache", "foggycache", "branchy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class CacheConfig(_Strict):
    """The semantic cache: per class, one reference vector per exit point, in two levels."""

    hot_size: int = Field(4, ge=1, le=1024, description="Classes in the hot level, searched at every enabled exit.")
    cold_size: int = Field(32, ge=0, le=1024, description="Classes in the cold level, searched on a hot miss.")
    cold_from: str | None = Field(None, description="First exit point at which the cold level is searched (None: all).")
    replacement: Literal["lru", "lfu", "lfu-decay"] = Field("lru", description="Which class leaves a full level.")
    half_life_s: float = Field(30.0, gt=0, description="Half-life of a use's weight for lfu-decay.")
    element_bytes: Literal[2, 4] = Field(2, description="Bytes per stored vector element (float16 or float32).")


class MetricConfig(_Strict):
    """When a match is confident enough to stop: metric value >= threshold of that exit point."""

    kind: Literal["cosine", "margin", "calibrated", "temporal"] = "calibrated"
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per enabled exit point.")
    calibration: dict[str, list[float]] | None = Field(
        None,
        description="calibrated and temporal only: per exit [bias, w_log_distance, w_log_distance_ratio, "
        "w_log_entries] of a logistic model of the probability that the top-1 match equals the full model's answer; "
        "temporal: 9 coefficients, those four, four more added when the top-1 class equals the previous answer and "
        "the weight of the frame's drift from the last confirmed one under agreement (see simulator/exit_metric.py); fitted on calibration "
        "data if absent.",
    )


class AdaptationConfig(_Strict):
    strategies: list[Literal["working-set", "ema", "scene-reset"]] = Field(
        default_factory=list,
        description="Empty: static (fixed sizes; a class keeps the reference vectors it entered with). "
        "Named strategies may be combined.",
    )
    ema_alpha: float = Field(0.25, gt=0, le=1, description="ema: weight of a confirmed frame in the moving average "
                             "of its class's reference vectors (1: the latest confirmed frame replaces them).")
    window_s: float = Field(30.0, gt=0, description="working-set: window over which classes count as in the scene.")
    min_hot: int = Field(1, ge=1, description="working-set: smallest hot level.")
    max_hot: int = Field(16, ge=1, le=1024, description="working-set: largest hot level.")
    reset_on_new_video: bool = Field(True, description="scene-reset: a new video is a new scene.")
    miss_streak: int = Field(3, ge=1, description="scene-reset: this many consecutive misses on new classes is a scene change.")
    on_scene_change: Literal["reset", "shrink"] = "shrink"
    keep: int = Field(2, ge=0, description="scene-reset with shrink: most recently used classes kept.")

    @model_validator(mode="after")
    def _sizes(self) -> "AdaptationConfig":
        if self.min_hot > self.max_hot:
            raise ValueError(f"min_hot ({self.min_hot}) exceeds max_hot ({self.max_hot})")
        return self


class DeepCacheConfig(_Strict):
    """DeepCache-style reuse (MobiCom'18), modelled from the recorded frame difference.

    A block reuses the cached results of its unchanged region; the changed region widens with each block (the
    receptive field grows), so reuse fades with depth and stops after ``max_blocks`` blocks.
    """

    growth: float = Field(0.5, ge=0, description="Relative widening of the changed region per block.")
    max_blocks: int = Field(4, ge=1, description="Blocks (from the first) that may reuse.")
    overhead_fraction: float = Field(0.02, ge=0, le=1, description="Block matching on the frame, as a share of full-model latency.")


class FoggyCacheConfig(_Strict):
    """FoggyCache-style input-level reuse (MobiCom'18): LSH on the input descriptor, homogeneity-checked kNN."""

    capacity: int = Field(256, ge=1, description="Cached (descriptor, answer) records; LRU beyond.")
    tables: int = Field(4, ge=1, le=32, description="LSH hash tables.")
    bits: int = Field(8, ge=1, le=30, description="Random-hyperplane bits per table.")
    k: int = Field(5, ge=1, description="Neighbours that vote.")
    homogeneity: float = Field(0.8, gt=0, le=1, description="Share of the k votes the majority answer needs.")
    min_similarity: float = Field(0.9, ge=-1, le=1, description="Mean cosine similarity the voters need.")
    seed: int = Field(0, ge=0, description="Seed of the random hyperplanes.")


class InputReuseConfig(_Strict):
    """An input level in front of the semantic cache (an Engram variant, not in the SMTM paper).

    Every frame's cheap input descriptor (the frame averaged to a 4x4 RGB thumbnail, centred, L2-normalised: the
    recorded ``input_desc``) is compared with that of the last frame of the same video that ran the model. While
    the cosine similarity stays at least ``similarity``, the frame reuses that frame's answer and runs no block, at
    most ``max_run`` frames in a row. The oracle, given this level, reuses whenever the answer is the full model's
    (within ``max_run``, which is part of the level, not of its metric).
    """

    similarity: float = Field(0.95, ge=-1, le=1, description="Cosine similarity to the last frame that ran the "
                              "model at which a frame reuses its answer.")
    max_run: int = Field(8, ge=1, le=1024, description="Frames in a row that may reuse one answer.")


class BranchyConfig(_Strict):
    """BranchyNet-style exits: stop at the first enabled exit whose head's softmax entropy is low enough."""

    thresholds: dict[str, float] = Field(default_factory=dict, description="Entropy (nats) per enabled exit point.")


class QueueConfig(_Strict):
    capacity: int = Field(2, ge=0, description="Frames that may wait while the processor is busy.")
    drop: Literal["newest", "oldest"] = Field("newest", description="Which frame is dropped when the queue is full.")


class Policy(_Strict):
    format: Literal["engram.policy"] = FORMAT_NAME
    version: Literal[1] = FORMAT_VERSION
    name: str = Field(..., min_length=1)
    kind: Kind
    description: str = ""
    processor: str | None = Field(None, description="Processor that runs the model (None: the profile's default).")
    exits: list[str] | None = Field(None, description="Enabled exit points (None: all of the model's).")
    cache: CacheConfig | None = None
    metric: MetricConfig | None = None
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    deepcache: DeepCacheConfig | None = None
    foggycache: FoggyCacheConfig | None = None
    input_reuse: InputReuseConfig | None = Field(None, description="smtm and oracle only: the input level in front "
                                                 "of the semantic cache (None: none).")
    branchy: BranchyConfig | None = None
    queue: QueueConfig = Field(default_factory=QueueConfig)

    @model_validator(mode="after")
    def _sections(self) -> "Policy":
        needs = {"smtm": ("cache", "metric"), "oracle": ("cache",), "deepcache": ("deepcache",),
                 "foggycache": ("foggycache",), "branchy": ("branchy",)}
        for section in needs.get(self.kind, ()):
            if getattr(self, section) is None:
                raise ValueError(f"a {self.kind!r} policy needs a {section!r} section")
        if self.input_reuse is not None and self.kind not in ("smtm", "oracle"):
            raise ValueError(f"input_reuse is a level of the semantic cache; a {self.kind!r} policy cannot have one")
        if self.exits is not None and len(set(self.exits)) != len(self.exits):
            raise ValueError("exits lists an exit point twice")
        return self

    def to_json(self) -> dict:
        return json.loads(self.model_dump_json())


def policy_json_schema() -> dict:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://engram.invalid/schema/policy-1.json"
    return schema


def parse_policy(obj: object, path: str | Path | None = None) -> Policy:
    if isinstance(obj, dict):
        if obj.get("format", FORMAT_NAME) != FORMAT_NAME:
            raise FormatError(f"expected format {FORMAT_NAME!r}, found {obj.get('format')!r}", path=path, field="format")
        version = obj.get("version", FORMAT_VERSION)
        if type(version) is not int or version != FORMAT_VERSION:  # noqa: E721 (true == 1 must not pass)
            raise FormatError(f"unsupported version {obj.get('version')!r} (this Engram reads {FORMAT_VERSION})",
                              path=path, field="version")
    try:
        return Policy.model_validate(obj)
    except ValidationError as exc:
        raise from_validation_error(exc, path) from None


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError("file not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    except UnicodeDecodeError:
        raise FormatError("not a UTF-8 text file", path=path) from None
    return parse_policy(raw, path)


def check_policy(policy: Policy, exit_points: tuple[str, ...], processors: tuple[str, ...], where: str | None = None) -> tuple[str, ...]:
    """Check the policy against the model's exit points and the profile's processors; return the enabled exits."""
    enabled = tuple(policy.exits) if policy.exits is not None else exit_points
    unknown = [e for e in enabled if e not in exit_points]
    if unknown:
        raise MismatchError(f"exit point {unknown[0]!r} is not one of the model's ({', '.join(exit_points)})",
                            path=where, field="exits")
    enabled = tuple(e for e in exit_points if e in enabled)  # model order, whatever the file's order
    if policy.processor is not None and policy.processor not in processors:
        raise MismatchError(f"processor {policy.processor!r} is not in the profile ({', '.join(processors)})",
                            path=where, field="processor")
    if policy.cache is not None and policy.cache.cold_from is not None and policy.cache.cold_from not in exit_points:
        raise MismatchError(f"cold_from {policy.cache.cold_from!r} is not an exit point", path=where, field="cache.cold_from")
    sections = []
    if policy.kind == "smtm":
        sections.append(("metric.thresholds", policy.metric.thresholds))
        if policy.metric.calibration is not None:
            sections.append(("metric.calibration", policy.metric.calibration))
    if policy.kind == "branchy":
        sections.append(("branchy.thresholds", policy.branchy.thresholds))
    for name, table in sections:
        extra = [e for e in table if e not in exit_points]
        if extra:
            raise MismatchError(f"{extra[0]!r} is not an exit point of the model", path=where, field=name)
        missing = [e for e in enabled if e not in table]
        if missing and name.endswith("thresholds"):
            raise MismatchError(f"no threshold for enabled exit point {missing[0]!r}", path=where, field=name)
        if name == "metric.calibration":
            need = n_coefficients(policy.metric.kind)
            if policy.metric.kind not in LOGISTIC_METRICS:
                raise FormatError(f"only the calibrated and temporal exit metrics take coefficients, not "
                                  f"{policy.metric.kind!r}", path=where, field=name)
            bad = [e for e, w in table.items() if len(w) != need]
            if bad:
                what = "[bias, log distance, log distance ratio, log entries]"
                if need == 9:
                    what += (", the same four added when the top-1 class agrees with the previous answer, and the "
                             "weight of the frame's drift under agreement")
                raise FormatError(f"exit {bad[0]!r} needs {need} coefficients {what}, found {len(table[bad[0]])}",
                                  path=where, field=name)
    if not enabled and policy.kind not in ("no-cache", "deepcache", "foggycache"):
        raise EngramError(f"a {policy.kind!r} policy needs at least one enabled exit point", path=where, field="exits")
    return enabled
