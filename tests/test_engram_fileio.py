"""Shared output helpers (engram.fileio)."""

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engram.fileio import json_safe


def test_json_safe_turns_numpy_and_non_finite_values_into_strict_json():
    obj = {"a": np.float32(1.5), "b": np.int64(3), "c": (1, np.nan), 4: [np.inf, -np.inf, "x"], "d": {"e": np.bool_(True)}}
    out = json_safe(obj)
    assert out == {"a": 1.5, "b": 3, "c": [1, None], "4": [None, None, "x"], "d": {"e": True}}
    assert type(out["b"]) is int and type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # strict JSON: would raise on NaN or infinity


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=3), c, max_size=4), max_leaves=20))
def test_json_safe_output_is_strict_json_and_keeps_finite_values(obj):
    out = json_safe(obj)
    text = json.dumps(out, allow_nan=False)
    if not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(obj)):
        assert json.loads(text) == json.loads(json.dumps(obj))


def _leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj
