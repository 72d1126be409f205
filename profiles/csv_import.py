"""Generic per-layer CSV importer: latencies users measured elsewhere (another runtime, a vendor profiler).

Format (UTF-8, comma-separated, one header row; lines starting with ``#`` are comments)::

    name,cpu_ms,gpu_ms,cpu_energy_mj
    stem,0.051,0.020,
    b1.body.0,0.070,0.031,
    b1.body.1,0.061,0.025,
    ...
    model,1.95,0.80,

- ``name`` (or ``op``, ``layer``, ``block``): a block of the model, or a layer inside one written as
  ``BLOCK.anything`` (rows of one block are summed). The name ``model`` (or ``total``) gives the measured
  whole-model latency; without it the whole model is the sum of the blocks.
- one latency column per processor: ``<processor>_ms`` or ``<processor>_us`` (``latency_ms`` means ``cpu``).
  The processor's kind comes from its name (``cpu``/``gpu``/``npu``/``dsp`` prefix). An empty cell means "not
  run on that processor"; every block needs a value on the first processor (the default).
- optional ``<processor>_p90_ms`` and ``<processor>_energy_mj`` columns. Energy columns filled for every block
  make the energy measured; otherwise it is modelled with the power model given per processor.

Every problem is reported with the file, line and column.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import engram
from engram.errors import EngramError, FormatError
from profiles.format import DeviceInfo, LatencyStats, Processor, Profile, now_iso
from profiles.power import DEVICE_DEFAULTS, PowerModel, get_power_model
from profiles.profiler import block_profile, energy_info, memory_info, model_info, modelled_energy, semantic_dims, static_blocks

NAME_COLUMNS = ("name", "op", "layer", "block")
WHOLE_NAMES = ("model", "total")
LAT = re.compile(r"^(?P<proc>[a-z][a-z0-9]*)_(?P<unit>ms|us)$")
P90 = re.compile(r"^(?P<proc>[a-z][a-z0-9]*)_p90_(?P<unit>ms|us)$")
ENERGY = re.compile(r"^(?P<proc>[a-z][a-z0-9]*)_energy_mj$")
KINDS = ("cpu", "gpu", "npu", "dsp")


@dataclass
class CsvTable:
    """Parsed CSV: per block and processor the summed latency (ms), optional p90 and energy."""

    processors: list[str]
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # block -> proc -> ms
    p90: dict[str, dict[str, float]] = field(default_factory=dict)
    energy: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # block -> number of rows summed
    whole: dict[str, float] = field(default_factory=dict)


def processor_kind(name: str) -> str:
    for k in KINDS:
        if name.startswith(k):
            return k
    raise EngramError(f"cannot tell the kind of processor {name!r}: name latency columns cpu*_ms, gpu*_ms, npu*_ms or dsp*_ms")


def _number(text: str, path: Path, line: int, col: str, unit: str = "ms") -> float | None:
    t = text.strip()
    if t == "":
        return None
    try:
        v = float(t)
    except ValueError:
        raise FormatError(f"not a number: {t!r}", path=path, line=line, field=col) from None
    if not math.isfinite(v) or v < 0:
        raise FormatError(f"must be a finite non-negative number, got {t!r}", path=path, line=line, field=col)
    return v / 1000.0 if unit == "us" else v


def read_csv_table(path: str | Path, block_names: list[str]) -> CsvTable:
    p = Path(path)
    if not p.is_file():
        raise FormatError("file not found", path=p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text", path=p) from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise FormatError("empty file (no header row)", path=p)
    header_line, header = lines[0]
    cols = [c.strip().lower() for c in next(csv.reader([header]))]
    if len(set(cols)) != len(cols):
        raise FormatError(f"duplicate column names in {cols}", path=p, line=header_line)
    name_col = next((c for c in NAME_COLUMNS if c in cols), None)
    if name_col is None:
        raise FormatError(f"no name column (one of {', '.join(NAME_COLUMNS)})", path=p, line=header_line)
    lat_cols: dict[str, tuple[str, str]] = {}
    p90_cols: dict[str, tuple[str, str]] = {}
    en_cols: dict[str, str] = {}
    for c in cols:
        if c == name_col:
            continue
        if c == "latency_ms":
            lat_cols["cpu"] = (c, "ms")
        elif (m := P90.match(c)):
            p90_cols[m["proc"]] = (c, m["unit"])
        elif (m := ENERGY.match(c)):
            en_cols[m["proc"]] = c
        elif (m := LAT.match(c)):
            if m["proc"] in lat_cols:
                raise FormatError(f"two latency columns for processor {m['proc']!r}", path=p, line=header_line, field=c)
            lat_cols[m["proc"]] = (c, m["unit"])
        else:
            raise FormatError("unknown column (expected <processor>_ms, <processor>_us, <processor>_p90_ms or "
                              "<processor>_energy_mj)", path=p, line=header_line, field=c)
    if not lat_cols:
        raise FormatError("no latency column (e.g. cpu_ms)", path=p, line=header_line)
    for proc in list(p90_cols) + list(en_cols):
        if proc not in lat_cols:
            raise FormatError(f"column for processor {proc!r}, which has no latency column", path=p, line=header_line)
    for proc in lat_cols:
        try:
            processor_kind(proc)
        except EngramError as exc:
            raise FormatError(exc.message, path=p, line=header_line, field=lat_cols[proc][0]) from None

    table = CsvTable(list(lat_cols))
    known = set(block_names)
    for line, raw in lines[1:]:
        cells = next(csv.reader([raw]))
        if len(cells) != len(cols):
            raise FormatError(f"{len(cells)} cells for {len(cols)} columns", path=p, line=line)
        row = dict(zip(cols, cells))
        name = row[name_col].strip()
        if not name:
            raise FormatError("empty name", path=p, line=line, field=name_col)
        if name.lower() in WHOLE_NAMES:
            for proc, (c, unit) in lat_cols.items():
                v = _number(row[c], p, line, c, unit)
                if v is not None:
                    table.whole[proc] = v
            continue
        block = name if name in known else name.split(".", 1)[0]
        if block not in known:
            raise FormatError(f"{name!r} is not a block of the model (or BLOCK.layer); blocks: {', '.join(block_names)}",
                              path=p, line=line, field=name_col)
        table.rows[block] = table.rows.get(block, 0) + 1
        for proc, (c, unit) in lat_cols.items():
            v = _number(row[c], p, line, c, unit)
            if v is not None:
                table.latency.setdefault(block, {})
                table.latency[block][proc] = table.latency[block].get(proc, 0.0) + v
        for proc, (c, unit) in p90_cols.items():
            v = _number(row[c], p, line, c, unit)
            if v is not None:
                table.p90.setdefault(block, {})
                table.p90[block][proc] = table.p90[block].get(proc, 0.0) + v
        for proc, c in en_cols.items():
            v = _number(row[c], p, line, c)
            if v is not None:
                table.energy.setdefault(block, {})
                table.energy[block][proc] = table.energy[block].get(proc, 0.0) + v

    default = table.processors[0]
    for b in block_names:
        if b not in table.rows:
            raise FormatError(f"no row for block {b!r}", path=p, field=name_col)
        if default not in table.latency.get(b, {}):
            raise FormatError(f"block {b!r} has no latency on the default processor {default!r}", path=p,
                              field=lat_cols[default][0])
        for proc, ms in table.latency[b].items():
            if ms <= 0:
                raise FormatError(f"block {b!r} sums to zero latency on {proc!r}", path=p, field=lat_cols[proc][0])
    return table


def import_csv(
    path: str | Path,
    model: Any,
    *,
    encoders: Mapping[str, Any] | None = None,
    device_name: str | None = None,
    power_models: Mapping[str, str] | None = None,
    dram_pj_per_byte: float | None = None,
    command: str | None = None,
) -> Profile:
    """Profile of ``model`` from a per-layer CSV (see the module docstring for the format)."""
    blocks = static_blocks(model)
    names = [b.name for b in blocks]
    t = read_csv_table(path, names)
    procs = t.processors
    measured_energy = bool(t.energy) and all(set(t.energy.get(b, {})) >= set(t.latency[b]) for b in names)
    models: dict[str, PowerModel] = {}
    for proc in procs:
        pms = power_models or {}
        name = pms.get(proc) or (pms.get("*") if proc == procs[0] else None)
        if name is None:
            name = "pixel6-mali-g78" if processor_kind(proc) == "gpu" else DEVICE_DEFAULTS["pixel6"]
        models[proc] = get_power_model(name, dram_pj_per_byte)
    prof_blocks = []
    for b in blocks:
        lat, en = {}, {}
        for proc, ms in t.latency[b.name].items():
            p90 = t.p90.get(b.name, {}).get(proc)
            if p90 is not None and p90 < ms:
                raise FormatError(f"p90 {p90} below the latency {ms} of block {b.name!r}", path=path, field=f"{proc}_p90_ms")
            note = f"{t.rows[b.name]} CSV row(s) summed" if t.rows[b.name] > 1 else "1 CSV row"
            lat[proc] = LatencyStats("imported", round(ms, 9), p90_ms=None if p90 is None else round(p90, 9), note=note)
            en[proc] = round(t.energy[b.name][proc], 9) if measured_energy else modelled_energy(b, ms, models[proc])
        prof_blocks.append(block_profile(b, lat, en))
    whole = {}
    for proc in procs:
        if proc in t.whole:
            whole[proc] = LatencyStats("imported", round(t.whole[proc], 9), note="the CSV's model row")
        elif all(proc in t.latency[b] for b in names):
            whole[proc] = LatencyStats("sum-of-blocks", round(sum(t.latency[b][proc] for b in names), 9))
    if procs[0] not in whole:  # pragma: no cover - default processor is required for every block
        raise FormatError("no whole-model latency on the default processor", path=path)
    counter = f"user-supplied energy columns ({Path(path).name})" if measured_energy else None
    en_info = energy_info(models, counter, "energy as measured by the user (CSV energy columns); idle power from "
                          "the power model" if measured_energy else None)
    device = DeviceInfo(
        name=device_name or Path(path).stem, kind="imported", runtime=f"imported from {Path(path).name}",
        processors=tuple(Processor(p, processor_kind(p)) for p in procs), default_processor=procs[0])
    measurement = {"method": "imported: per-layer CSV", "file": Path(path).name,
                   "rows": {b: t.rows[b] for b in names}}
    return Profile(
        created=now_iso(), generator={"engram": engram.__version__, "command": command or "profiles.csv_import.import_csv"},
        device=device, model=model_info(model, semantic_dims(model, encoders)), measurement=measurement,
        blocks=tuple(prof_blocks), whole_model=whole, lookup=None, energy=en_info, memory=memory_info(model, blocks))


def parse_power_model_options(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--power-model NAME`` (default processor) or ``--power-model PROC=NAME``."""
    out: dict[str, str] = {}
    for v in values:
        if "=" in v:
            proc, name = v.split("=", 1)
            out[proc.strip()] = name.strip()
        else:
            out["*"] = v.strip()
    return out
