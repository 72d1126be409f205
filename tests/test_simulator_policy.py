"""The policy file format: round trips, its JSON Schema, and a clear error (file and field) for every bad input;
policies, traces and profiles that do not belong together are refused."""

from __future__ import annotations

import dataclasses
import json
import math

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.errors import EngramError, FormatError, MismatchError
from simulator.policy import (
    KINDS, SCHEMA_PATH, AdaptationConfig, BranchyConfig, CacheConfig, DeepCacheConfig, FoggyCacheConfig, MetricConfig,
    Policy, QueueConfig, check_policy, load_policy, parse_policy, policy_json_schema,
)
from simulator.presets import PRESETS, preset
from simulator.workload import check_fit
from simulator_helpers import SMALL_VIDEOS, shipped_device, shipped_workload

EXITS = ("b1", "b3", "b4", "b5", "b6", "b7")  # the reference model's exit points
PROCESSORS = ("cpu",)


def full_policy() -> Policy:
    """Every section filled in, no field at its default."""
    return Policy(
        name="everything", kind="smtm", description="all fields", processor="cpu", exits=["b7", "b1", "b4"],
        cache=CacheConfig(hot_size=3, cold_size=9, cold_from="b4", replacement="lfu-decay", half_life_s=12.5,
                          element_bytes=4),
        metric=MetricConfig(kind="calibrated", thresholds={"b1": 0.9, "b4": 0.95, "b7": 0.5},
                            calibration={"b1": [1.0, -2.0, 0.5, 0.1], "b4": [0.0, -1.0, 0.0, 0.0], "b7": [2, -1, 1, 0]}),
        adaptation=AdaptationConfig(strategies=["working-set", "ema", "scene-reset"], ema_alpha=0.7, window_s=5.0,
                                    min_hot=2, max_hot=6, reset_on_new_video=False, miss_streak=4,
                                    on_scene_change="reset", keep=1),
        deepcache=DeepCacheConfig(growth=1.0, max_blocks=2, overhead_fraction=0.1),
        foggycache=FoggyCacheConfig(capacity=8, tables=2, bits=4, k=3, homogeneity=0.6, min_similarity=0.5, seed=7),
        branchy=BranchyConfig(thresholds={"b1": 0.2}),
        queue=QueueConfig(capacity=0, drop="oldest"),
    )


def all_policies() -> list[Policy]:
    return [preset(name, EXITS) for name in PRESETS] + [full_policy()]


# ------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("policy", all_policies(), ids=lambda p: p.name)
def test_json_round_trip(policy, tmp_path):
    assert parse_policy(policy.model_dump()) == policy
    assert parse_policy(json.loads(json.dumps(policy.to_json()))) == policy
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy.to_json(), indent=2))
    assert load_policy(path) == policy
    assert policy.to_json()["format"] == "engram.policy" and policy.to_json()["version"] == 1


def test_a_minimal_file_gets_the_defaults(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"name": "mine", "kind": "smtm", "cache": {}, "metric": {"kind": "margin"}}')
    p = load_policy(path)
    assert p.cache == CacheConfig() and p.metric.kind == "margin" and p.queue == QueueConfig()
    assert p.exits is None and p.processor is None


# ---------------------------------------------------------------------------------------- bad policies


GOOD = {"name": "x", "kind": "smtm", "cache": {}, "metric": {"kind": "cosine", "thresholds": {"b1": 0.9}}}


def _with(path: str, value) -> dict:
    obj = json.loads(json.dumps(GOOD))
    keys = path.split(".")
    d = obj
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value
    return obj


@pytest.mark.parametrize("obj,field,needle", [
    (_with("colour", "red"), "colour", "Extra inputs"),
    (_with("cache.size", 3), "cache.size", "Extra inputs"),
    (_with("metric.thresholds.b1", "high"), "metric.thresholds.b1", "valid number"),
    (_with("metric.thresholds", [0.9]), "metric.thresholds", "dictionary"),
    (_with("cache.hot_size", -1), "cache.hot_size", "greater than or equal to 1"),
    (_with("cache.cold_size", -4), "cache.cold_size", "greater than or equal to 0"),
    (_with("queue.capacity", -1), "queue.capacity", "greater than or equal to 0"),
    (_with("cache.half_life_s", 0), "cache.half_life_s", "greater than 0"),
    (_with("cache.replacement", "random"), "cache.replacement", "lru"),
    (_with("kind", "teleport"), "kind", "smtm"),
    (_with("name", ""), "name", "at least 1"),
    (_with("exits", ["b1", "b1"]), "(top level)", "twice"),
    (_with("adaptation.min_hot", 20), "adaptation", "min_hot (20) exceeds max_hot (16)"),
    ({"name": "x", "kind": "smtm", "cache": {}}, "(top level)", "needs a 'metric' section"),
    ({"name": "x", "kind": "branchy"}, "(top level)", "needs a 'branchy' section"),
    (_with("format", "engram.profile"), "format", "expected format 'engram.policy'"),
    (_with("version", 2), "version", "unsupported version 2"),
])
def test_invalid_policy_names_the_file_and_the_field(tmp_path, obj, field, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(FormatError) as exc:
        load_policy(path)
    assert exc.value.path == str(path) and exc.value.field == field
    assert needle in exc.value.message
    msg = str(exc.value)
    assert msg.startswith(f"{path}: {field}: ") and "\n" not in msg


@pytest.mark.parametrize("obj,field", [
    (_with("metric.thresholds.b1", math.nan), "metric.thresholds.b1"),
    (_with("cache.half_life_s", math.inf), "cache.half_life_s"),
    (_with("adaptation.window_s", math.inf), "adaptation.window_s"),
])
def test_non_finite_numbers_are_refused(tmp_path, obj, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))  # writes NaN / Infinity, which Python's JSON reader accepts
    with pytest.raises(FormatError) as exc:
        load_policy(path)
    assert exc.value.field == field


@pytest.mark.parametrize("text,needle,line", [
    ('{"name": "x",\n "kind": }', "not valid JSON", 2),
    ("", "not valid JSON", 1),
])
def test_a_file_that_is_not_json_is_one_line_with_its_line(tmp_path, text, needle, line):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FormatError) as exc:
        load_policy(path)
    assert needle in str(exc.value) and exc.value.line == line and str(exc.value).startswith(f"{path}:{line}: ")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FormatError, match="file not found") as exc:
        load_policy(tmp_path / "none.json")
    assert exc.value.path == str(tmp_path / "none.json")


# ---------------------------------------------------------------------------- policy vs model, profile


def _smtm(**kw) -> Policy:
    fields = {"name": "x", "kind": "smtm", "cache": CacheConfig(),
              "metric": MetricConfig(kind="cosine", thresholds={e: 0.9 for e in EXITS})}
    fields.update(kw)
    return Policy(**fields)


def test_check_policy_returns_the_enabled_exits_in_model_order():
    assert check_policy(_smtm(exits=["b7", "b1"]), EXITS, PROCESSORS) == ("b1", "b7")
    assert check_policy(_smtm(), EXITS, PROCESSORS) == EXITS
    assert check_policy(preset("no-cache", EXITS), EXITS, PROCESSORS) == EXITS


@pytest.mark.parametrize("policy,error,field,needle", [
    (_smtm(exits=["b1", "b2"]), MismatchError, "exits", "exit point 'b2' is not one of the model's"),
    (_smtm(processor="npu"), MismatchError, "processor", "processor 'npu' is not in the profile (cpu)"),
    (_smtm(metric=MetricConfig(kind="cosine", thresholds={"b1": 0.9, "b2": 0.9})), MismatchError,
     "metric.thresholds", "'b2' is not an exit point"),
    (_smtm(metric=MetricConfig(kind="cosine", thresholds={"b1": 0.9})), MismatchError, "metric.thresholds",
     "no threshold for enabled exit point 'b3'"),
    (_smtm(metric=MetricConfig(thresholds={e: 0.9 for e in EXITS}, calibration={"b9": [0, 0, 0, 0]})),
     MismatchError, "metric.calibration", "'b9' is not an exit point"),
    (_smtm(metric=MetricConfig(thresholds={e: 0.9 for e in EXITS}, calibration={"b1": [0, 0, 0]})),
     FormatError, "metric.calibration", "needs 4 coefficients"),
    (_smtm(metric=MetricConfig(kind="temporal", thresholds={e: 0.9 for e in EXITS}, calibration={"b1": [0, 0, 0, 0]})),
     FormatError, "metric.calibration", "needs 9 coefficients"),
    (_smtm(metric=MetricConfig(kind="margin", thresholds={e: 0.9 for e in EXITS}, calibration={"b1": [0, 0, 0, 0]})),
     FormatError, "metric.calibration", "only the calibrated and temporal exit metrics take coefficients"),
    (_smtm(cache=CacheConfig(cold_from="b2")), MismatchError, "cache.cold_from", "'b2' is not an exit point"),
    (Policy(name="x", kind="branchy", branchy=BranchyConfig(thresholds={"b0": 1.0})), MismatchError,
     "branchy.thresholds", "'b0' is not an exit point"),
    (_smtm(exits=[]), EngramError, "exits", "at least one enabled exit point"),
    (Policy(name="x", kind="oracle", cache=CacheConfig(), exits=[]), EngramError, "exits", "at least one"),
])
def test_policy_for_other_exits_or_processors_is_refused(policy, error, field, needle):
    with pytest.raises(error) as exc:
        check_policy(policy, EXITS, PROCESSORS, where="mine.json")
    assert exc.value.field == field and exc.value.path == "mine.json"
    assert needle in exc.value.message


def test_presets_fit_the_shipped_profile():
    dev = shipped_device()
    for name in PRESETS:
        assert check_policy(preset(name, dev.exits), dev.exits, tuple(dev.processors)) == dev.exits


@pytest.fixture(scope="module")
def small_workload():
    return shipped_workload().select_videos(SMALL_VIDEOS)


def test_trace_and_profile_of_the_same_model_fit(small_workload):
    check_fit(small_workload, shipped_device(), "t.parquet", "p.json")


@pytest.mark.parametrize("key", ["architecture", "weights"])
def test_profile_of_another_model_is_refused(small_workload, key):
    dev = shipped_device()
    other = dataclasses.replace(dev, fingerprint={**dev.fingerprint, key: "0" * 64})
    with pytest.raises(MismatchError) as exc:
        check_fit(small_workload, other, "t.parquet", "p.json")
    assert exc.value.field == f"model.fingerprint.{key}" and exc.value.path == "t.parquet"
    assert "another model" in exc.value.message


def test_exit_points_must_agree(small_workload):
    dev = shipped_device()
    fewer = dataclasses.replace(dev, exits=dev.exits[:-1])
    with pytest.raises(MismatchError, match="the trace has exit point 'b7'") as exc:
        check_fit(small_workload, fewer, "t.parquet", "p.json")
    assert exc.value.path == "t.parquet" and exc.value.field == "model.exit_points"
    trace_fewer = dataclasses.replace(small_workload, exits=small_workload.exits[1:])
    with pytest.raises(MismatchError, match="the profile has exit point 'b1'") as exc:
        check_fit(trace_fewer, dev, "t.parquet", "p.json")
    assert exc.value.path == "p.json"


# ------------------------------------------------------------------------------------------ JSON Schema


@pytest.fixture(scope="module")
def schema_validator():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_file_is_the_generated_schema():
    """The shipped file cannot drift from the pydantic models (regenerate it with policy_json_schema())."""
    assert SCHEMA_PATH.exists(), SCHEMA_PATH
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == policy_json_schema()


@pytest.mark.parametrize("policy", all_policies(), ids=lambda p: p.name)
def test_every_preset_validates_against_the_schema(schema_validator, policy):
    schema_validator.validate(policy.to_json())


@pytest.mark.parametrize("path,value", [
    ("colour", "red"), ("cache.hot_size", -1), ("queue.capacity", -1), ("kind", "teleport"),
    ("metric.thresholds.b1", "high"), ("version", 2),
])
def test_schema_refuses_what_the_reader_refuses(schema_validator, path, value):
    obj = _with(path, value)
    assert not schema_validator.is_valid(obj)
    with pytest.raises(FormatError):
        parse_policy(obj)


# ------------------------------------------------------------------------------------------- properties


FIELD_NAMES = sorted({f for m in (Policy, CacheConfig, MetricConfig, AdaptationConfig, DeepCacheConfig,
                                  FoggyCacheConfig, BranchyConfig, QueueConfig) for f in m.model_fields})
WORDS = FIELD_NAMES + list(KINDS) + list(EXITS) + ["b2", "lru", "lfu", "cosine", "margin", "calibrated", "ema",
                                                  "working-set", "scene-reset", "newest", "oldest", "engram.policy"]


def _json(finite: bool):
    leaves = (st.none() | st.booleans() | st.integers(-3, 2000)
              | st.floats(allow_nan=not finite, allow_infinity=not finite) | st.sampled_from(WORDS) | st.text(max_size=4))
    keys = st.sampled_from(WORDS) | st.text(max_size=4)
    return st.recursive(leaves, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(keys, ch, max_size=5),
                        max_leaves=12)


def _mostly(good, bad):
    """``good`` nine times out of ten."""
    return st.integers(0, 9).flatmap(lambda k: bad if k == 0 else good)


def _policy_like(finite: bool):
    """Mostly well-shaped policies with plausible (sometimes junk) values, so that parsing often gets deep or
    succeeds."""
    junk = _json(finite)
    plausible = (st.integers(0, 40) | st.floats(0, 2) | st.booleans() | st.sampled_from(WORDS) | st.none()
                 | st.lists(st.sampled_from(["ema", "working-set", "scene-reset"]), max_size=3, unique=True))
    value = _mostly(plausible, junk)

    def section(model):
        return st.dictionaries(st.sampled_from(sorted(model.model_fields)), value, max_size=4)

    thresholds = st.dictionaries(st.sampled_from(EXITS + ("b2",)), _mostly(st.floats(-1, 2), value), max_size=6)
    exits = st.lists(st.sampled_from(EXITS + ("b2",)), max_size=4, unique=True)
    return st.fixed_dictionaries(
        {"name": _mostly(st.sampled_from(["p", "mine"]), value), "kind": st.sampled_from(KINDS)},
        optional={
            "cache": section(CacheConfig), "adaptation": section(AdaptationConfig), "queue": section(QueueConfig),
            "deepcache": section(DeepCacheConfig), "foggycache": section(FoggyCacheConfig),
            "metric": st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["cosine", "margin", "calibrated", "temporal"]),
                                                          "thresholds": thresholds}),
            "branchy": st.fixed_dictionaries({"thresholds": thresholds}),
            "exits": _mostly(exits, value),
            "processor": _mostly(st.sampled_from(["cpu", "npu"]), value),
            "version": _mostly(st.just(1), value), "format": _mostly(st.just("engram.policy"), value),
            "description": _mostly(st.text(max_size=5), value),
        })


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_json(finite=False) | _policy_like(finite=False))
def test_parse_policy_raises_only_engram_errors(obj):
    try:
        p = parse_policy(obj, "random.json")
    except EngramError as exc:
        assert exc.path == "random.json" and "\n" not in str(exc)
        return
    assert isinstance(p, Policy)
    try:
        check_policy(p, EXITS, PROCESSORS, "random.json")
    except EngramError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_policy_like(finite=True))
def test_whatever_parses_round_trips_and_fits_the_schema(schema_validator, obj):
    try:
        p = parse_policy(obj)
    except EngramError:
        return
    doc = p.to_json()
    assert parse_policy(doc) == p
    assert parse_policy(json.loads(json.dumps(doc))) == p
    schema_validator.validate(doc)
