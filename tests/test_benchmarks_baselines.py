"""benchmarks/baselines.py: its grids are valid, distinct policies, and a missing sweep is one clear line."""

from __future__ import annotations

import importlib.util

import pytest

from simulator.device import from_profile
from simulator.policy import check_policy
from profiles.format import read_profile
from simulator_helpers import PROFILE, ROOT


def _module():
    spec = importlib.util.spec_from_file_location("bench_baselines", ROOT / "benchmarks" / "baselines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_grid_point_is_a_valid_policy_of_its_kind_and_none_repeats():
    device = from_profile(read_profile(PROFILE))
    grids = _module().grids(device.exits, len(device.blocks))
    assert set(grids) == {"foggycache", "branchy", "deepcache"}
    for kind, points in grids.items():
        assert len(points) > 1
        configs = [p.model_dump_json() for _, p in points]
        assert len(set(configs)) == len(configs), kind
        assert len({label for label, _ in points}) == len(points), kind
        for _, p in points:
            assert p.kind == kind
            check_policy(p, device.exits, tuple(device.processors))


def test_a_missing_sweep_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="not a finished sweep.*run `python run_sim.py` first"):
        _module().main(["--sweep", str(tmp_path / "none.json")])
