"""The profile format: round trip, schema, the reader's refusals (naming file and field), interpolation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.errors import FormatError, MismatchError
from profiles.format import (FORMAT_VERSION, SCHEMA_PATH, interpolate, profile_from_json, read_profile, validate,
                             write_profile)
from profiles.power import get_power_model

DATA = Path(__file__).resolve().parents[1] / "profiles" / "data"
SHIPPED = sorted(DATA.glob("*.json"))

FP = {"architecture": "a" * 64, "weights": "b" * 64}


def make_profile(n_blocks: int = 3, latencies: list[float] | None = None, exits: int = 1, lookup: bool = True,
                 procs: tuple[str, ...] = ("cpu",)) -> dict:
    """A small valid profile (no TVM needed): blocks b0..bN, 4 channels at 8x8, exits after the first ones."""
    latencies = latencies or [0.5 + i for i in range(n_blocks)]
    names = [f"b{i}" for i in range(n_blocks)]
    exit_names = names[:min(exits, n_blocks - 1)]
    pm = get_power_model("pixel6-tensor-x1")
    blocks = []
    for i, n in enumerate(names):
        ms = latencies[i]
        blocks.append({
            "name": n, "input_shape": [4, 8, 8], "output_shape": [4, 8, 8], "macs": 1000 * (i + 1), "params": 10,
            "param_bytes": 40, "input_bytes": 4 * 64 * 4, "output_bytes": 4 * 64 * 4, "is_exit": n in exit_names,
            "latency": {p: {"source": "measured", "median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.1,
                            "min_ms": ms * 0.8, "max_ms": ms * 1.2, "mean_ms": ms, "cv": 0.01, "samples": 20}
                        for p in procs},
            "energy_mj": {p: ms * 2.0 for p in procs},
        })
    entries = [1, 2, 4, 1024]
    return {
        "format": "engram.profile", "version": FORMAT_VERSION, "created": "2026-01-01T00:00:00+00:00",
        "generator": {"engram": "test"},
        "device": {"name": "test device", "kind": "local", "address": None, "cpu_model": "x", "cores": 2,
                   "frequency_mhz": 2000.0, "os": "Linux", "runtime": "test", "tvm_version": None, "target": None,
                   "threads": 2, "processors": [{"name": p, "kind": "cpu" if p.startswith("cpu") else "gpu"} for p in procs],
                   "default_processor": procs[0]},
        "model": {"name": "toy", "input_shape": [4, 8, 8], "batch": 1, "elem_bytes": 4, "fingerprint": dict(FP),
                  "blocks": names, "exit_points": exit_names, "semantic_dims": {e: 4 for e in exit_names}, "tuning": None},
        "measurement": {"method": "synthetic"},
        "blocks": blocks,
        "whole_model": {p: {"source": "measured", "median_ms": sum(latencies)} for p in procs},
        "lookup": None if not lookup else {
            "entries": entries, "interpolation": "linear", "source": "measured", "method": "test", "processor": procs[0],
            "exits": {e: {"dims": 4, "feature_shape": [4, 8, 8], "median_ms": [0.01, 0.011, 0.012, 0.05],
                          "p90_ms": None, "cv": None, "energy_mj": [0.001, 0.001, 0.001, 0.002]} for e in exit_names}},
        "energy": {"method": "modelled", "counter": None, "models": {p: pm.to_json() for p in procs},
                   "idle_power_mw": {p: pm.idle_power_mw for p in procs}, "note": "test"},
        "memory": {"weights_bytes": 40 * n_blocks, "activations": {"planned_bytes": 512, "planner": "test",
                                                                     "pingpong_bytes": 1024, "greedy_bytes": 1024,
                                                                     "lower_bound_bytes": 512}},
    }


def _write(tmp_path: Path, obj, name: str = "p.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return p


def _field_of(exc: pytest.ExceptionInfo) -> str | None:
    return exc.value.field


# ---------------------------------------------------------------------------------------------------------
# Schema and round trip


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_round_trip(tmp_path):
    obj = make_profile(4, exits=2)
    p = profile_from_json(obj)
    out = write_profile(p, tmp_path / "p.json")
    q = read_profile(out)
    assert q == p
    assert q.to_json() == p.to_json()
    # the file itself validates against the published schema
    jsonschema.validate(json.loads(out.read_text()), json.loads(SCHEMA_PATH.read_text()))


def test_typed_api(tmp_path):
    p = read_profile(write_profile(profile_from_json(make_profile(3, [1.0, 2.0, 4.0], exits=2)), tmp_path / "p.json"))
    assert p.latency_ms("b1") == 2.0
    assert p.latency_ms("b1", stat="p90_ms") == pytest.approx(2.2)
    assert p.segment_latency_ms("b0", "b1") == 3.0
    assert p.model_latency_ms() == 7.0
    assert p.energy_mj("b2") == 8.0
    assert p.idle_power_mw() == get_power_model("pixel6-tensor-x1").idle_power_mw
    assert p.lookup_ms("b0", 3) == pytest.approx(0.0115)
    assert p.lookup_ms("b0", 0) == 0.0
    assert p.lookup_ms("b0", 2048) > p.lookup_ms("b0", 1024)
    assert p.memory.total_bytes() == 120 + 512 and p.memory.total_bytes("pingpong") == 120 + 1024
    assert p.block_sources() == {"b0": "measured", "b1": "measured", "b2": "measured"}
    p.check_model(FP)
    with pytest.raises(MismatchError, match="another model") as e:
        p.check_model({"architecture": "a" * 64, "weights": "c" * 64})
    assert e.value.field == "model.fingerprint.weights"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_profiles_validate(path):
    p = read_profile(path)
    assert p.version == FORMAT_VERSION
    srcs = set(p.block_sources().values())
    assert srcs <= {"measured", "imported", "predicted"}
    assert p.energy.method in ("measured", "modelled")
    if p.device.kind == "imported":
        # phone profiles say which blocks are measured and which predicted
        assert {"imported", "predicted"} <= srcs
        assert p.measurement["predicted_blocks"]


def test_shipped_reference_profiles_match_the_shipped_model():
    from kernels.reference.store import load_reference

    model = load_reference().model
    refs = [p for p in SHIPPED if p.name.startswith("reference_")]
    assert len(refs) >= 4  # local + three phones
    for path in refs:
        read_profile(path, model=model)


# ---------------------------------------------------------------------------------------------------------
# Refusals


def test_truncated_file_names_file_and_line(tmp_path):
    text = json.dumps(make_profile(), indent=1)
    path = _write(tmp_path, text[: len(text) // 2])
    with pytest.raises(FormatError, match="truncated JSON") as e:
        read_profile(path)
    assert e.value.path == str(path) and e.value.line is not None
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text,message", [
    ("", "empty file"),
    ("[]", "expected a JSON object"),
    ('{"format": "engram.trace", "version": 1}', "not an Engram profile"),
    ('{"a": NaN}', "NaN is not allowed"),
])
def test_not_a_profile(tmp_path, text, message):
    with pytest.raises(FormatError, match=message):
        read_profile(_write(tmp_path, text))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FormatError, match="file not found"):
        read_profile(tmp_path / "nope.json")
    with pytest.raises(FormatError, match="directory"):
        read_profile(tmp_path)


def test_newer_version_is_refused(tmp_path):
    obj = make_profile()
    obj["version"] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="newer than this reader") as e:
        read_profile(_write(tmp_path, obj))
    assert e.value.field == "version"


def _mut(path: str, value):  # noqa: ANN001, ANN202
    def f(o: dict) -> None:
        keys = path.split("/")
        cur = o
        for k in keys[:-1]:
            cur = cur[int(k)] if isinstance(cur, list) else cur[k]
        last = keys[-1]
        if value is _DELETE:
            del cur[last]
        else:
            cur[int(last) if isinstance(cur, list) else last] = value
    return f


_DELETE = object()

BAD = [
    ("blocks/1/latency/cpu/median_ms", -1.0, "blocks[1].latency.cpu.median_ms"),
    ("blocks/1/latency/cpu/median_ms", "fast", "blocks[1].latency.cpu.median_ms"),
    ("blocks/0/macs", _DELETE, "blocks[0]"),
    ("blocks/0/latency/cpu/source", "guessed", "blocks[0].latency.cpu.source"),
    ("model/fingerprint/weights", "xyz", "model.fingerprint.weights"),
    ("device/kind", "phone", "device.kind"),
    ("blocks/0/extra", 1, "blocks[0]"),
    ("energy/method", "estimated", "energy.method"),
    ("lookup/entries", [1], "lookup.entries"),
    # semantic checks (what the schema cannot say)
    ("blocks/1/input_bytes", 999, "blocks[1].input_bytes"),
    ("blocks/1/output_shape", [5, 8, 8], "blocks[1].output_shape"),
    ("blocks/0/is_exit", False, "blocks[0].is_exit"),
    ("blocks/2/latency/cpu/p90_ms", 0.1, "blocks[2].latency.cpu.median_ms"),
    ("model/blocks", ["b0", "b1", "bX"], "model.blocks"),
    ("model/exit_points", ["b2"], "model.exit_points"),
    ("device/default_processor", "gpu", "device.default_processor"),
    ("lookup/entries", [2, 4, 8, 16], "lookup.entries"),
    ("lookup/exits/b0/median_ms", [0.1, 0.2], "lookup.exits.b0.median_ms"),
    ("lookup/exits/b0/feature_shape", [4, 4, 4], "lookup.exits.b0.feature_shape"),
    ("memory/weights_bytes", 7, "memory.weights_bytes"),
    ("energy/models", {}, "energy.models"),
    ("whole_model", {"gpu": {"source": "measured", "median_ms": 1.0}}, "whole_model.gpu"),
]


@pytest.mark.parametrize("where,value,field", BAD, ids=[f"{w}={v!r}"[:60] for w, v, _ in BAD])
def test_malformed_profile_names_file_and_field(tmp_path, where, value, field):
    obj = make_profile(3, exits=1)
    _mut(where, value)(obj)
    path = _write(tmp_path, obj)
    with pytest.raises(FormatError) as e:
        read_profile(path)
    assert e.value.path == str(path)
    assert e.value.field is not None and e.value.field.startswith(field), (e.value.field, str(e.value))
    assert "\n" not in str(e.value)


def test_mismatched_model_is_refused(tmp_path):
    from kernels.zoo import build_model

    path = _write(tmp_path, make_profile())
    with pytest.raises(MismatchError, match="another model") as e:
        read_profile(path, model=build_model("reference"))
    assert e.value.path == str(path) and e.value.field == "model.fingerprint.architecture"


def test_write_refuses_invalid_and_leaves_old_file(tmp_path):
    good = make_profile()
    path = tmp_path / "p.json"
    write_profile(good, path)
    before = path.read_bytes()
    bad = copy.deepcopy(good)
    bad["blocks"][0]["latency"]["cpu"]["median_ms"] = 0
    with pytest.raises(FormatError):
        write_profile(bad, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------------------------------------------------
# Properties


finite = st.floats(min_value=1e-4, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lat=st.lists(finite, min_size=2, max_size=8), exits=st.integers(0, 7), procs=st.sampled_from([("cpu",), ("cpu", "gpu")]))
def test_property_round_trip(tmp_path, lat, exits, procs):
    obj = make_profile(len(lat), lat, exits=exits, lookup=exits > 0, procs=procs)
    p = profile_from_json(obj)
    q = read_profile(write_profile(p, tmp_path / "p.json"))
    assert q == p
    for i, v in enumerate(lat):
        assert q.latency_ms(f"b{i}", procs[-1]) == v


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_property_any_deleted_key_is_refused_with_a_field(data):
    obj = make_profile(3, exits=1)
    # walk down to a random dict and delete one of its keys
    cur, path = obj, []
    while True:
        if isinstance(cur, dict) and cur:
            k = data.draw(st.sampled_from(sorted(cur)))
        elif isinstance(cur, list) and cur:
            k = data.draw(st.integers(0, len(cur) - 1))
        else:
            break
        nxt = cur[k]
        stop = not isinstance(nxt, (dict, list)) or not nxt or data.draw(st.booleans())
        if stop and isinstance(cur, dict):
            del cur[k]
            break
        if stop:
            cur[k] = {"unexpected": True}
            break
        cur, path = nxt, path + [k]
    try:
        validate(obj)
    except FormatError as e:
        assert "\n" not in str(e)
        return
    # deleting an optional key (or one that may be null/absent) is fine; the result must still be readable
    profile_from_json(obj)


@settings(max_examples=100, deadline=None)
@given(ys=st.lists(finite, min_size=2, max_size=11), x=st.floats(min_value=1, max_value=5000))
def test_property_interpolation_within_table_bounds(ys, x):
    xs = [2 ** i for i in range(len(ys))]
    v = interpolate(xs, ys, x)
    if x <= xs[-1]:
        assert min(ys) - 1e-9 <= v <= max(ys) + 1e-9
    for xi, yi in zip(xs, ys):
        assert interpolate(xs, ys, xi) == pytest.approx(yi)
