"""Importers: nn-Meter tables (measured + predicted blocks), the latency predictor, the generic CSV importer,
and the power models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.errors import EngramError, FormatError
from profiles.csv_import import import_csv, read_csv_table
from profiles.format import read_profile, write_profile
from profiles.nnmeter import PHONES, import_nnmeter, read_lut
from profiles.power import get_power_model, power_models
from profiles.predictor import (ConvOp, HeadOp, LatencyPredictor, MBConvOp, block_ops, cross_validate, parse_key,
                                parse_lut)

DATA = Path(__file__).resolve().parents[1] / "profiles" / "data"


@pytest.fixture(scope="module")
def reference():
    from kernels.reference.store import load_reference

    return load_reference()


@pytest.fixture(scope="module")
def pixel4_table():
    return read_lut(DATA / "nn_meter" / PHONES["pixel4"].lut_file)


# ---------------------------------------------------------------------------------------------------------
# Predictor


def test_keys_round_trip():
    for key in ("conv_32_16_16_2_1_hard_swish_3_nose", "firstconv_128_3_16_2_3", "mbpool_2_160_1984_6_hard_swish"):
        assert parse_key(key).key == key
    assert parse_key("transds_16_16_48_2_4") is None


def test_reference_blocks_map_to_the_nnmeter_keys(reference):
    from kernels.summary import block_costs
    from kernels.zoo.refnet import RefNetConfig, block_input_sizes, nnmeter_key

    cfg = RefNetConfig()
    m = reference.model
    costs = {c.name: c for c in block_costs(m)}
    for i, (spec, hw) in enumerate(zip(cfg.blocks, block_input_sizes(cfg)), start=1):
        ops = block_ops(m.blocks[f"b{i}"], costs[f"b{i}"].input_shape)
        assert [o.key for o in ops] == [nnmeter_key(spec, hw)]
    assert block_ops(m.blocks["stem"], costs["stem"].input_shape) == [ConvOp(64, 3, 16, 3, 2)]
    assert block_ops(m.blocks["head"], costs["head"].input_shape) == [HeadOp(8, 48, 384, 240)]


@pytest.mark.slow
def test_predictor_held_out_error(pixel4_table):
    """Fit on 80% of the phone's MBConv entries; the other 20% are predicted within +-10% almost always."""
    rows = parse_lut(pixel4_table)
    rng = np.random.default_rng(1)
    mb = [i for i, r in enumerate(rows) if isinstance(r[1], MBConvOp)]
    held = set(rng.choice(mb, size=len(mb) // 5, replace=False).tolist())
    model = LatencyPredictor.fit([r for i, r in enumerate(rows) if i not in held], "pixel4")
    rel = np.array([model.predict(rows[i][1]) / rows[i][2] - 1 for i in sorted(held)])
    assert np.mean(np.abs(rel) <= 0.10) >= 0.97
    # the base alone (what extrapolates) is worse but sane; the boosted residual is what brings it in
    base_only = LatencyPredictor.fit([r for i, r in enumerate(rows) if i not in held], residual=False)
    rel_b = np.array([base_only.predict(rows[i][1]) / rows[i][2] - 1 for i in sorted(held)])
    assert np.mean(np.abs(rel_b) <= 0.10) < np.mean(np.abs(rel) <= 0.10)
    assert np.median(np.abs(rel_b)) < 0.1


def test_predictor_is_deterministic(pixel4_table):
    op = MBConvOp(8, 48, 48, 6, 1, 5, True)
    a = LatencyPredictor.fit(pixel4_table).predict(op)
    b = LatencyPredictor.fit(pixel4_table).predict(op)
    assert a == b and a > 0


def test_predictor_scales_with_work(pixel4_table):
    p = LatencyPredictor.fit(pixel4_table, residual=False)
    small, big = MBConvOp(8, 48, 48, 6, 1, 5, True), MBConvOp(16, 48, 48, 6, 1, 5, True)
    assert p.predict(big) > 2 * p.predict(small)
    coef = p.coefficients()
    assert all(v >= 0 for v in coef.values())


@pytest.mark.slow
def test_cross_validation_report(pixel4_table):
    cv = cross_validate(pixel4_table, folds=3)
    assert cv["mbconv"].n == sum(1 for k in pixel4_table if k.startswith("conv_"))
    assert cv["mbconv"].within_10 >= 0.97
    assert set(cv) >= {"mbconv", "mbconv_smallest_maps", "firstconv", "mbpool"}


def test_lut_reader_rejects_bad_tables(tmp_path):
    p = tmp_path / "lut.json"
    p.write_text('{"conv_32_16_16_2_1_hard_swish_3_nose": -1}')
    with pytest.raises(FormatError, match="not a positive latency") as e:
        read_lut(p)
    assert e.value.path == str(p)
    p.write_text('{"transds_16_16_48_2_4": 0.1}')
    with pytest.raises(FormatError, match="no MBConv"):
        read_lut(p)
    p.write_text('{"conv_32')
    with pytest.raises(FormatError, match="invalid JSON"):
        read_lut(p)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(min_size=0, max_size=40), st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5), st.none()),
                       max_size=8))
def test_property_lut_parser_never_crashes(d):
    try:
        rows = parse_lut(d)
    except EngramError:
        return
    for key, op, v in rows:
        assert op.key == key or isinstance(op, (ConvOp, HeadOp))
        assert v > 0 and math.isfinite(v)


# ---------------------------------------------------------------------------------------------------------
# nn-Meter import


@pytest.mark.slow
@pytest.mark.parametrize("phone", sorted(PHONES))
def test_import_nnmeter_flags_measured_and_predicted(tmp_path, reference, phone):
    table = read_lut(DATA / "nn_meter" / PHONES[phone].lut_file)
    prof = import_nnmeter(reference.model, phone, encoders=reference.encoders, with_cv=False)
    srcs = prof.block_sources()
    assert [b for b, s in srcs.items() if s == "imported"] == ["b1", "b2", "b3", "b4", "b5"]
    assert [b for b, s in srcs.items() if s == "predicted"] == ["stem", "b6", "b7", "b8", "head"]
    # measured blocks carry the table's own value
    from kernels.zoo.refnet import RefNetConfig, block_input_sizes, nnmeter_key

    cfg = RefNetConfig()
    for i, (spec, hw) in enumerate(zip(cfg.blocks[:5], block_input_sizes(cfg)), start=1):
        assert prof.latency_ms(f"b{i}") == pytest.approx(table[nnmeter_key(spec, hw)], abs=1e-6)
    assert prof.model_latency_ms() == pytest.approx(sum(prof.latency_ms(b) for b in prof.block_names), rel=1e-5)
    assert prof.whole_model["cpu"].source == "sum-of-blocks"
    assert prof.energy.models["cpu"].name == {"pixel4": "pixel4-a76-prime", "pixel6": "pixel6-tensor-x1",
                                              "xiaomi11": "xiaomi11-x1-proxy"}[phone]
    q = read_profile(write_profile(prof, tmp_path / "p.json"), model=reference.model)
    assert q == prof


def test_import_nnmeter_refuses_unknown_phone(reference):
    with pytest.raises(EngramError, match="unknown phone"):
        import_nnmeter(reference.model, "iphone", with_cv=False)


# ---------------------------------------------------------------------------------------------------------
# CSV import


def _toy_model():
    from kernels.zoo import build_model

    import torch

    torch.manual_seed(0)
    return build_model("reference")


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


BLOCKS = ["stem", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "head"]


def test_import_csv_sums_layers_per_block(tmp_path):
    model = _toy_model()
    rows = ["# measured with some profiler", "name,cpu_ms,gpu_us,cpu_energy_mj"]
    for i, b in enumerate(BLOCKS):
        rows.append(f"{b}.conv,{0.1 * (i + 1)},{50 * (i + 1)},0.2")
        rows.append(f"{b}.act,0.01,,0.01")
    rows.append("model,6.0,2000,")
    prof = import_csv(_csv(tmp_path, "\n".join(rows) + "\n"), model)
    assert prof.processors == ("cpu", "gpu")
    assert prof.latency_ms("b2") == pytest.approx(0.31)
    assert prof.latency_ms("b2", "gpu") == pytest.approx(0.15)
    assert prof.model_latency_ms() == 6.0 and prof.model_latency_ms("gpu") == 2.0
    # energy columns only for cpu: cpu energy measured? no - gpu has none, so energy is modelled for all
    assert prof.energy.method == "modelled"
    assert prof.energy.models["gpu"].processor_kind == "gpu"
    assert prof.lookup is None
    q = read_profile(write_profile(prof, tmp_path / "p.json"), model=model)
    assert q == prof


def test_import_csv_measured_energy(tmp_path):
    model = _toy_model()
    rows = ["block,latency_ms,cpu_energy_mj"] + [f"{b},0.5,1.5" for b in BLOCKS]
    prof = import_csv(_csv(tmp_path, "\n".join(rows)), model)
    assert prof.energy.method == "measured" and prof.energy_mj("b3") == 1.5
    assert prof.whole_model["cpu"].source == "sum-of-blocks" and prof.model_latency_ms() == pytest.approx(5.0)


@pytest.mark.parametrize("text,message,line,field", [
    ("name\nstem\n", "no latency column", 1, None),
    ("name,cpu_ms,foo\n", "unknown column", 1, "foo"),
    ("layer,cpu_ms\nstem,abc\n", "not a number", 2, "cpu_ms"),
    ("layer,cpu_ms\nstem,-1\n", "non-negative", 2, "cpu_ms"),
    ("layer,cpu_ms\nnot_a_block,1\n", "not a block", 2, "layer"),
    ("layer,cpu_ms\nstem,1,2\n", "3 cells for 2 columns", 2, None),
    ("layer,cpu_ms\nstem,1\n", "no row for block 'b1'", None, "layer"),
    ("layer,weird_ms\nstem,1\n", "kind of processor", 1, "weird_ms"),
    ("", "empty file", None, None),
])
def test_import_csv_errors_name_line_and_column(tmp_path, text, message, line, field):
    path = _csv(tmp_path, text)
    with pytest.raises(FormatError, match=message) as e:
        read_csv_table(path, BLOCKS)
    assert e.value.path == str(path)
    assert e.value.line == line
    assert e.value.field == field


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(st.lists(st.floats(min_value=0.001, max_value=100, allow_nan=False), min_size=1, max_size=4),
                       min_size=len(BLOCKS), max_size=len(BLOCKS)),
       unit=st.sampled_from(["ms", "us"]))
def test_property_csv_block_sums(tmp_path, layers, unit):
    lines = [f"name,cpu_{unit}"]
    for b, vals in zip(BLOCKS, layers):
        for j, v in enumerate(vals):
            lines.append(f"{b}.l{j},{v!r}")
    t = read_csv_table(_csv(tmp_path, "\n".join(lines)), BLOCKS)
    scale = 1e-3 if unit == "us" else 1.0
    for b, vals in zip(BLOCKS, layers):
        assert t.latency[b]["cpu"] == pytest.approx(sum(vals) * scale, rel=1e-9)
        assert t.rows[b] == len(vals)


# ---------------------------------------------------------------------------------------------------------
# Power models


def test_power_models_come_from_the_shipped_curves():
    models = power_models()
    assert {"pixel4-a76-prime", "pixel6-tensor-x1", "xiaomi11-x1-proxy", "sd8elite-prime", "pixel6-mali-g78"} <= set(models)
    x1 = models["pixel6-tensor-x1"]
    assert x1.active_power_mw == pytest.approx(1942.89) and x1.frequency_mhz == 2802.0  # Tensor cpu_1d, policy 6
    p4 = models["pixel4-a76-prime"]
    assert p4.active_power_mw == pytest.approx(223.89 * 3.85, rel=1e-6)  # flame cpu7 at 2841.6 MHz, mA x V
    for m in models.values():
        assert m.active_power_mw > m.idle_power_mw >= 0
        assert m.source


def test_energy_formula():
    m = get_power_model("pixel6-tensor-x1", dram_pj_per_byte=100.0)
    # 1942.89 mW for 2 ms = 3.88578 mJ; 1 MB at 100 pJ/B = 0.1 mJ
    assert m.energy_mj(2.0, 1_000_000) == pytest.approx(3.88578 + 0.1)
    assert m.idle_energy_mj(10.0) == pytest.approx(1.2143)
    with pytest.raises(EngramError, match="unknown power model"):
        get_power_model("nope")


def test_power_model_scales_per_active_core():
    m = get_power_model("x86-server-assumed")
    assert m.cores_active == 2 and m.for_cores(2) is m
    one = m.for_cores(1)
    assert (one.cores_active, one.active_power_mw, one.idle_power_mw) == (1, 3750.0, 937.5)  # 3.75 W per core
    assert one.energy_mj(1.0) == pytest.approx(m.energy_mj(1.0) / 2) and "scaled per core" in one.description
