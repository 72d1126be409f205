"""Power models: energy of a block = active power x time + off-chip bytes x energy per byte; idle power
between frames.

No energy counter exists on the machines this project runs on (no RAPL, no perf energy events), and nobody
here has a phone attached, so energy is modelled unless :mod:`profiles.energy` finds a counter. Every
profile says which model (with all its parameters) or which counter it used.

The phone models are built at import time from the real curves shipped in ``profiles/data/mobile_power``
(Perfetto's Wattson curves and Android ``power_profile.xml`` values, see its PROVENANCE.txt):

===========================  ==================================================================================
name                         built from
===========================  ==================================================================================
``pixel4-a76-prime``         Pixel 4 (flame) cpu7, cluster 2 (Cortex-A76 prime core) at its top frequency,
                             2841.6 MHz: power_profile core power in mA x 3.85 V nominal battery voltage
``pixel6-tensor-x1``         Google Tensor (Pixel 6) Wattson policy 6 (Cortex-X1) at 2802 MHz: static + active;
                             idle = idle0 (WFI) at that frequency
``pixel6-tensor-a76``        Google Tensor Wattson policy 4 (Cortex-A76) at 2253 MHz
``pixel6-mali-g78``          Google Tensor Wattson GPU curve at 848 MHz (active; idle = idle1)
``xiaomi11-x1-proxy``        Xiaomi 11 (Snapdragon 888) has no curve in the data: its prime core is the same
                             Cortex-X1 on the same Samsung 5LPE process as Tensor's, so Tensor's X1 curve is
                             used at the closest frequency (2802 MHz; the SD888 X1 runs at up to 2841.6 MHz)
``sd8elite-prime``           Snapdragon 8 Elite (SM8750) Wattson policy 6 (Oryon prime) at 4377.6 MHz
``x86-server-assumed``       not from a curve (none is shipped for server CPUs): 2 cores of an AMD EPYC 9004
                             at the TDP share 360 W / 96 cores = 3.75 W each, idle 25% of that (assumption);
                             a local profile scales it to the threads it ran with
===========================  ==================================================================================

Phone models assume the kernels run single-threaded on the fastest core at its top frequency (the way
TFLite benchmarks like nn-Meter's are usually run). The idle power of a ``power_profile`` model is the core
power at its cluster's lowest frequency (an upper bound on the idle state, which these files do not list).

Off-chip traffic per block is counted as its weights plus its input and output activations (no reuse
across blocks in the caches: an upper bound), at 160 pJ per byte: 640 pJ per 32-bit DRAM access, Horowitz,
"Computing's energy problem", ISSCC 2014 (45 nm), as tabulated by Han et al., EIE, ISCA 2016. Override with
``dram_pj_per_byte``.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from engram.errors import EngramError, FormatError

DATA = Path(__file__).resolve().parent / "data" / "mobile_power"
DRAM_PJ_PER_BYTE = 160.0
BATTERY_VOLTS = 3.85
OFFCHIP_RULE = "param_bytes + input_bytes + output_bytes of the block (no cache reuse across blocks: upper bound)"


@dataclass(frozen=True)
class PowerModel:
    name: str
    description: str
    source: str
    processor_kind: str  # cpu | gpu | npu | dsp
    core: str
    frequency_mhz: float
    cores_active: int
    active_power_mw: float  # all active cores together, while a kernel runs
    idle_power_mw: float  # the same cores idle between frames
    dram_pj_per_byte: float = DRAM_PJ_PER_BYTE
    offchip_bytes: str = OFFCHIP_RULE

    def energy_mj(self, latency_ms: float, offchip_bytes: int | float = 0) -> float:
        """Energy of running for ``latency_ms`` and moving ``offchip_bytes`` to or from DRAM (mW x ms = uJ)."""
        return self.active_power_mw * latency_ms * 1e-3 + offchip_bytes * self.dram_pj_per_byte * 1e-9

    def for_cores(self, n: int) -> "PowerModel":
        """The same cores, ``n`` of them active (and idle) instead of ``cores_active``: power scaled per core (an
        approximation: shared uncore power does not scale so)."""
        if n == self.cores_active:
            return self
        k = n / self.cores_active
        return replace(self, cores_active=n, active_power_mw=round(self.active_power_mw * k, 6),
                       idle_power_mw=round(self.idle_power_mw * k, 6),
                       description=f"{self.description}; scaled per core from {self.cores_active} to {n} active")

    def idle_energy_mj(self, idle_ms: float) -> float:
        return self.idle_power_mw * idle_ms * 1e-3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PowerModel":
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


def offchip_bytes(param_bytes: int, input_bytes: int, output_bytes: int) -> int:
    return int(param_bytes) + int(input_bytes) + int(output_bytes)


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise FormatError(f"cannot read power curve ({exc.strerror})", path=path) from None


def _wattson_cpu(soc: str, policy: int, freq_khz: int | None = None) -> tuple[dict[str, float], Path]:
    path = DATA / "wattson_curves" / soc / "cpu_1d.csv"
    rows = [r for r in _rows(path) if int(r["policy"]) == policy]
    if not rows:
        raise FormatError(f"no rows for policy {policy}", path=path)
    rows.sort(key=lambda r: int(r["freq_khz"]))
    if freq_khz is None:
        row = rows[-1]
    else:  # the closest frequency listed
        row = min(rows, key=lambda r: abs(int(r["freq_khz"]) - freq_khz))
    return {k: float(v) for k, v in row.items() if k != "device"}, path


def _power_profile(device: str, cpu: int) -> tuple[list[tuple[int, float]], Path]:
    path = DATA / "android_power_profile_flame_oriole.csv"
    pts = sorted((int(r["freq_khz"]), float(r["core_power_mA"])) for r in _rows(path)
                 if r["device_codename"] == device and int(r["cpu"]) == cpu)
    if not pts:
        raise FormatError(f"no rows for {device} cpu {cpu}", path=path)
    return pts, path


def _rel(path: Path) -> str:
    return str(path.relative_to(DATA.parent.parent.parent)) if path.is_relative_to(DATA.parent.parent.parent) else str(path)


@lru_cache(maxsize=1)
def _builtin() -> dict[str, PowerModel]:
    models: list[PowerModel] = []

    pts, path = _power_profile("flame", 7)
    f_hi, ma_hi = pts[-1]
    f_lo, ma_lo = pts[0]
    models.append(PowerModel(
        "pixel4-a76-prime", "Pixel 4 (Snapdragon 855) prime Cortex-A76 core at its top frequency, one thread",
        f"{_rel(path)}: flame cpu 7 cluster 2, {ma_hi} mA at {f_hi} kHz (active), {ma_lo} mA at {f_lo} kHz (idle bound); "
        f"x {BATTERY_VOLTS} V nominal battery voltage", "cpu", "Cortex-A76 (prime)", f_hi / 1000, 1,
        round(ma_hi * BATTERY_VOLTS, 3), round(ma_lo * BATTERY_VOLTS, 3)))

    for name, soc, policy, core, desc in (
        ("pixel6-tensor-x1", "Tensor", 6, "Cortex-X1", "Pixel 6 (Google Tensor) Cortex-X1 core at its top frequency, one thread"),
        ("pixel6-tensor-a76", "Tensor", 4, "Cortex-A76", "Pixel 6 (Google Tensor) Cortex-A76 core at its top frequency, one thread"),
        ("sd8elite-prime", "SM8750", 6, "Oryon (prime)", "Snapdragon 8 Elite prime core at its top frequency, one thread"),
    ):
        row, path = _wattson_cpu(soc, policy)
        models.append(PowerModel(
            name, desc, f"{_rel(path)}: policy {policy} at {int(row['freq_khz'])} kHz, static {row['static']} + active "
            f"{row['active']} mW; idle = idle0 {row['idle0']} mW", "cpu", core, row["freq_khz"] / 1000, 1,
            round(row["static"] + row["active"], 3), round(row["idle0"], 3)))

    row, path = _wattson_cpu("Tensor", 6, 2841600)
    models.append(PowerModel(
        "xiaomi11-x1-proxy", "Xiaomi 11 (Snapdragon 888) Cortex-X1 core, one thread: proxy from Google Tensor's X1 curve "
        "(same core, same Samsung 5LPE process; no Snapdragon 888 curve in the data)",
        f"{_rel(path)}: policy 6 at {int(row['freq_khz'])} kHz (closest to SD888's 2841.6 MHz), static {row['static']} + "
        f"active {row['active']} mW; idle = idle0 {row['idle0']} mW", "cpu", "Cortex-X1", row["freq_khz"] / 1000, 1,
        round(row["static"] + row["active"], 3), round(row["idle0"], 3)))

    gpath = DATA / "wattson_curves" / "Tensor" / "gpu.csv"
    g = max(_rows(gpath), key=lambda r: int(r["freq_khz"]))
    models.append(PowerModel(
        "pixel6-mali-g78", "Pixel 6 (Google Tensor) Mali-G78 GPU at its top frequency",
        f"{_rel(gpath)}: {int(g['freq_khz'])} kHz, active {g['active']} mW; idle = idle1 {g['idle1']} mW", "gpu",
        "Mali-G78 MP20", int(g["freq_khz"]) / 1000, 1, float(g["active"]), float(g["idle1"])))

    models.append(PowerModel(
        "x86-server-assumed", "2 cores of an AMD EPYC 9004-class server CPU (ASSUMED, not from a measured curve)",
        "assumption: TDP share 360 W / 96 cores = 3750 mW per active core (AMD EPYC 9654 data sheet), idle 25% of "
        "active; no power curve for server CPUs is shipped", "cpu", "x86-64 server core", 2400.0, 2, 7500.0, 1875.0))
    return {m.name: m for m in models}


def power_models() -> dict[str, PowerModel]:
    """Every shipped power model by name."""
    return dict(_builtin())


def get_power_model(name: str, dram_pj_per_byte: float | None = None) -> PowerModel:
    models = _builtin()
    if name not in models:
        raise EngramError(f"unknown power model {name!r}; known: {', '.join(sorted(models))}")
    m = models[name]
    return replace(m, dram_pj_per_byte=float(dram_pj_per_byte)) if dram_pj_per_byte is not None else m


#: The power model each shipped phone profile uses, and the one a local profile uses by default.
DEVICE_DEFAULTS = {"pixel4": "pixel4-a76-prime", "pixel6": "pixel6-tensor-x1", "xiaomi11": "xiaomi11-x1-proxy",
                   "local": "x86-server-assumed"}
