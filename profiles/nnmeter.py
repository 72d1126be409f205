"""Import real phone measurements: nn-Meter's per-block look-up tables (Pixel 4, Pixel 6, Xiaomi 11).

The tables (``profiles/data/nn_meter/*_lut_ln_v3_mbconv.json``: the MBConv, first-convolution and
final-pooling entries of nn-Meter's ``*_lut_ln_v3.json``, values unchanged, MIT licence) hold latencies
measured with TFLite on each phone's CPU. A block of the model whose configuration is in the table is
imported as measured (``source: imported``, the table key in ``note``); every other block is predicted by
:class:`profiles.predictor.LatencyPredictor` fitted on that phone's table (``source: predicted``).

The lookup-cost table of a phone profile is modelled, not measured: this machine's measured lookup table
for the same model (a local profile) scaled by the ratio of the phone's whole-model latency to this
machine's. Energy comes from the phone's power model (:mod:`profiles.power`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import engram
from engram.fingerprint import sha256_file
from engram.errors import EngramError, FormatError
from profiles.format import DeviceInfo, ExitLookup, LatencyStats, LookupTable, Processor, Profile, now_iso
from profiles.power import DEVICE_DEFAULTS, get_power_model
from profiles.predictor import LatencyPredictor, block_ops, cross_validate, parse_lut
from profiles.profiler import (block_profile, energy_info, lookup_offchip_bytes, memory_info, model_info,
                               modelled_energy, semantic_dims, static_blocks)

DATA = Path(__file__).resolve().parent / "data" / "nn_meter"


@dataclass(frozen=True)
class Phone:
    key: str
    name: str
    cpu_model: str
    cores: int
    frequency_mhz: float
    lut_file: str


PHONES = {
    "pixel4": Phone("pixel4", "Google Pixel 4", "Qualcomm Snapdragon 855 (1x Cortex-A76 2.84 GHz + 3x A76 2.42 GHz + 4x A55)",
                    8, 2841.6, "pixel4_lut_ln_v3_mbconv.json"),
    "pixel6": Phone("pixel6", "Google Pixel 6", "Google Tensor (2x Cortex-X1 2.80 GHz + 2x A76 2.25 GHz + 4x A55)",
                    8, 2802.0, "pixel6_lut_ln_v3_mbconv.json"),
    "xiaomi11": Phone("xiaomi11", "Xiaomi Mi 11", "Qualcomm Snapdragon 888 (1x Cortex-X1 2.84 GHz + 3x A78 2.42 GHz + 4x A55)",
                      8, 2841.6, "xiaomi11_lut_ln_v3_mbconv.json"),
}


def read_lut(path: str | Path) -> dict[str, float]:
    """A look-up table: a JSON object of key -> latency (ms). Raises FormatError naming file and key."""
    p = Path(path)
    if not p.is_file():
        raise FormatError("file not found", path=p)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text", path=p) from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"invalid JSON: {exc.msg}", path=p, line=exc.lineno) from None
    if not isinstance(obj, dict):
        raise FormatError(f"expected a JSON object of key -> latency, got {type(obj).__name__}", path=p)
    try:
        rows = parse_lut(obj)
    except EngramError as exc:
        raise FormatError(exc.message, path=p) from None
    if not rows:
        raise FormatError("no MBConv/firstconv/mbpool entries (keys like conv_32_16_16_2_1_hard_swish_3_nose)", path=p)
    return {k: float(obj[k]) for k, _, _ in rows}


def graph_ops(path: str | Path) -> list:
    """The operations of a network in nn-Meter's IR graph format (nodes with type, shapes, attributes, in/out
    bounds; NHWC), for predicting a whole network's latency from the tables.

    Each depthwise convolution anchors an MBConv block: the 1x1 convolution feeding it (if any) is its
    expansion, the next 1x1 convolution its projection, an average pool in between its squeeze-excite; ReLU vs
    hard-swish from the block's node names. The first dense convolution is the stem; what follows the last
    block (1x1 convolutions on the final map, pooling, fully-connected layers) is the head.
    """
    from profiles.predictor import ConvOp, HeadOp, MBConvOp

    p = Path(path)
    try:
        g = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read nn-Meter graph ({exc})", path=p) from None
    try:
        nodes = [(name, v["attr"]) for name, v in g.items()]
    except (AttributeError, KeyError, TypeError):
        raise FormatError("not an nn-Meter IR graph (expected name -> {attr: {type, ...}})", path=p) from None

    def shape(a: dict) -> list[int]:
        return list(a["output_shape"][0])

    def wshape(a: dict) -> list[int]:
        return list(a["attr"]["weight_shape"])

    def in_shape(name: str) -> list[int]:
        src = g[name]["inbounds"][0]
        return shape(g[src]["attr"])

    convs = [(i, n, a) for i, (n, a) in enumerate(nodes) if a["type"] == "Conv2D" and not n.startswith("SE")]
    dws = [(i, n, a) for i, (n, a) in enumerate(nodes) if a["type"] == "DepthwiseConv2dNative"]
    used: set[int] = set()
    ops: list[tuple[int, Any]] = []
    for i, name, a in dws:
        k, _, hid, _ = wshape(a)
        stride = int(a["attr"]["strides"][0])
        before = [c for c in convs if c[0] < i and c[0] not in used]
        exp = before[-1] if before and wshape(before[-1][2])[:2] == [1, 1] and wshape(before[-1][2])[3] == hid else None
        after = [c for c in convs if c[0] > i and c[0] not in used and wshape(c[2])[:2] == [1, 1]]
        if not after:
            raise FormatError(f"depthwise convolution {name!r} has no projection after it", path=p)
        proj = after[0]
        se = any(nodes[j][1]["type"] in ("AvgPool", "Mean") for j in range(i, proj[0]))
        start = exp[0] if exp else i
        act = "hard_swish" if any("hswish" in nodes[j][0] for j in range(start, proj[0])) else "relu"
        hw_in = (in_shape(exp[1]) if exp else in_shape(name))[1]
        cin = wshape(exp[2])[2] if exp else hid
        cout = wshape(proj[2])[3]
        used.update({proj[0]} | ({exp[0]} if exp else set()))
        ops.append((start, MBConvOp(hw_in, cin, cout, hid / cin, stride, k, se, act, exp is not None)))
    last = max((o[0] for o in ops), default=-1)
    for i, name, a in convs:
        if i in used:
            continue
        kh, kw, cin, cout = wshape(a)
        hw = in_shape(name)[1]
        if kh > 1:
            ops.append((i, ConvOp(hw, cin, cout, kh, int(a["attr"]["strides"][0]))))
        elif i > last:
            ops.append((i, HeadOp(1, cin, 0, cout) if hw == 1 else HeadOp(hw, cin, cout, 0)))
        used.add(i)
    for i, (name, a) in enumerate(nodes):
        if a["type"] == "MatMul":
            w = a["attr"].get("weight_shape") or [in_shape(name)[-1], shape(a)[-1]]
            ops.append((i, HeadOp(1, int(w[0]), 0, int(w[1]))))
    return [op for _, op in sorted(ops, key=lambda t: t[0])]


def phone_block_latencies(model: Any, predictor: LatencyPredictor) -> dict[str, tuple[float, str, str]]:
    """Block -> ``(latency_ms, source, note)`` from the table where it has the block, else the predictor."""
    out = {}
    for b in static_blocks(model):
        ops = block_ops(model.blocks[b.name], b.input_shape)
        total, measured, keys = 0.0, True, []
        for op in ops:
            v, hit = predictor.lookup(op)
            total += v
            measured &= hit
            keys.append(op.key)
        if measured:
            out[b.name] = (total, "imported", "nn-Meter look-up table: " + " + ".join(keys))
        else:
            out[b.name] = (total, "predicted", "predicted (profiles.predictor, fitted on this phone's table): " + " + ".join(keys))
    return out


def scaled_lookup(local: Profile, factor: float, dims: Mapping[str, int], model: Any, pm: Any, processor: str) -> LookupTable:
    if local.lookup is None:
        raise EngramError("the local profile given for lookup costs has no lookup table")
    shapes = {b.name: b.output_shape for b in static_blocks(model)}
    exits = {}
    for e, t in local.lookup.exits.items():
        med = tuple(round(v * factor, 6) for v in t.median_ms)
        p90 = None if t.p90_ms is None else tuple(round(v * factor, 6) for v in t.p90_ms)
        en = tuple(round(pm.energy_mj(v, lookup_offchip_bytes(shapes[e], dims[e], n)), 9)
                   for v, n in zip(med, local.lookup.entries))
        exits[e] = ExitLookup(t.dims, tuple(shapes[e]), med, en, p90, None)
    method = (f"modelled: the measured lookup table of {local.device.name} ({Path(local.path).name if local.path else 'a local profile'}) "
              f"x {factor:.4f}, the ratio of this device's whole-model latency to that profile's")
    return LookupTable(local.lookup.entries, "modelled", method, processor, exits)


def import_nnmeter(
    model: Any,
    phone: str,
    *,
    encoders: Mapping[str, Any] | None = None,
    lut: str | Path | None = None,
    power_model: str | None = None,
    dram_pj_per_byte: float | None = None,
    lookup_from: Profile | None = None,
    with_cv: bool = True,
    command: str | None = None,
) -> Profile:
    """Profile of ``model`` on ``phone`` (pixel4 | pixel6 | xiaomi11) from nn-Meter's table + predictions."""
    if phone not in PHONES:
        raise EngramError(f"unknown phone {phone!r}; nn-Meter tables ship for {', '.join(PHONES)}")
    ph = PHONES[phone]
    lut_path = Path(lut) if lut is not None else DATA / ph.lut_file
    table = read_lut(lut_path)
    predictor = LatencyPredictor.fit(table, phone)
    cv = {k: v.to_json() for k, v in cross_validate(table).items()} if with_cv else None
    pm = get_power_model(power_model or DEVICE_DEFAULTS[phone], dram_pj_per_byte)

    proc = "cpu"
    blocks = static_blocks(model)
    lat = phone_block_latencies(model, predictor)
    prof_blocks = []
    for b in blocks:
        ms, source, note = lat[b.name]
        ms = round(ms, 6)
        prof_blocks.append(block_profile(b, {proc: LatencyStats(source, ms, note=note)}, {proc: modelled_energy(b, ms, pm)}))
    total = round(sum(lat[b.name][0] for b in blocks), 6)
    whole = {proc: LatencyStats("sum-of-blocks", total, note="sum of the per-block latencies (no whole-model measurement "
                                                             "of this model on this phone exists)")}
    dims = semantic_dims(model, encoders)
    lookup = None
    if lookup_from is not None:
        lookup_from.check_model(model, what="model (the local profile for lookup costs)")
        factor = total / lookup_from.model_latency_ms()
        lookup = scaled_lookup(lookup_from, factor, dims, model, pm, proc)

    try:
        rel = str(lut_path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        rel = str(lut_path)
    measurement = {
        "method": "imported: nn-Meter per-block look-up table (TFLite, phone CPU) for the blocks it covers; the other "
                  "blocks predicted by a model fitted on the same table",
        "table": rel, "table_sha256": sha256_file(lut_path), "table_entries": len(table),
        "source": "Microsoft nn-Meter, nn_meter/predictor/transformer_predictor/lut/ (MIT licence); see "
                  "profiles/data/nn_meter/PROVENANCE.txt",
        "predictor": {"kind": "non-negative per-operation regression + boosted residual (profiles.predictor)",
                      "fitted_on": predictor.rows, "held_out_error": cv},
        "measured_blocks": [b.name for b in blocks if lat[b.name][1] == "imported"],
        "predicted_blocks": [b.name for b in blocks if lat[b.name][1] == "predicted"],
    }
    device = DeviceInfo(
        name=ph.name, kind="imported", runtime="TFLite on the phone CPU (nn-Meter measurements)",
        processors=(Processor(proc, "cpu", ph.cpu_model),), default_processor=proc, cpu_model=ph.cpu_model,
        cores=ph.cores, frequency_mhz=ph.frequency_mhz, os="Android", threads=1)
    return Profile(
        created=now_iso(), generator={"engram": engram.__version__, "command": command or "profiles.nnmeter.import_nnmeter"},
        device=device, model=model_info(model, dims), measurement=measurement, blocks=tuple(prof_blocks),
        whole_model=whole, lookup=lookup, energy=energy_info({proc: pm}, None), memory=memory_info(model, blocks))
