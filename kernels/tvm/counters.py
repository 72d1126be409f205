"""Energy counters (Linux powercap / RAPL), where the machine exposes one.

None exists on the machines this project was built on (no ``/sys/class/powercap``), so profiles made here
model energy instead (:mod:`profiles.power`); on a machine with RAPL the profiler reads the package counter
around each block's timing and records energy as measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass
class EnergyCounter:
    name: str
    path: Path  # the zone directory
    max_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())

    def delta_uj(self, before: int, after: int) -> int:
        return after - before if after >= before else after + self.max_uj - before


def find_energy_counter(root: Path = POWERCAP) -> EnergyCounter | None:
    """The first readable package-level RAPL zone (``intel-rapl:0``; AMD exposes the same interface)."""
    if not root.is_dir():
        return None
    for zone in sorted(root.glob("*rapl:[0-9]")):
        try:
            name = (zone / "name").read_text().strip()
            max_uj = int((zone / "max_energy_range_uj").read_text().strip())
            int((zone / "energy_uj").read_text().strip())
        except (OSError, ValueError):
            continue
        return EnergyCounter(f"powercap {zone.name} ({name})", zone, max_uj)
    return None
