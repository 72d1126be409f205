"""Compilation targets: the local CPU with its real ``mcpu``, aarch64 phone CPUs, and Adreno OpenCL.

TVM 0.27 rejects target strings such as ``"llvm -mcpu=x"``: targets are built from dicts here, and the
:class:`tvm.target.Target` object (never the dict) is what gets passed on. ``"mcpu": "native"`` is silently
downgraded to a generic CPU, so the local target asks TVM for the CPU it runs on
(``Target.from_device``).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from typing import Any

import tvm

from engram.errors import EngramError

#: Named targets a user can ask for with ``--target``.
PHONE_CPUS = {
    # name: (mtriple, mcpu); Cortex-A76 is Pixel 4's big core (Snapdragon 855) and Pixel 6's middle cluster,
    # Cortex-A78 the big cores of Snapdragon 888 / Dimensity 1200 class phones.
    "aarch64-cortex-a76": ("aarch64-linux-android", "cortex-a76"),
    "aarch64-cortex-a78": ("aarch64-linux-android", "cortex-a78"),
    "aarch64-cortex-x1": ("aarch64-linux-android", "cortex-x1"),
}
ADRENO = "opencl-adreno"


@dataclass(frozen=True)
class TargetSpec:
    """A target plus the facts a profile records about it."""

    name: str  # stable name used for tuning-record folders and in profiles
    target: Any  # tvm.target.Target
    kind: str  # "cpu" or "gpu"
    runnable_locally: bool

    def to_json(self) -> dict:
        return {"name": self.name, "tvm_target": str(self.target), "kind": self.kind}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_cpu_name() -> str:
    """The ``mcpu`` LLVM detects for this machine (e.g. ``znver4``)."""
    host = tvm.target.Target.from_device(tvm.cpu())
    return str(host.attrs.get("mcpu", "") or "generic")


def local_target(num_cores: int | None = None) -> TargetSpec:
    """This machine's CPU, with its real ``mcpu`` (AVX-512 etc. stay enabled)."""
    host = tvm.target.Target.from_device(tvm.cpu())
    mcpu = str(host.attrs.get("mcpu", "") or "")
    machine = platform.machine()
    triple = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine, str(host.attrs.get("mtriple", "")))
    d: dict[str, Any] = {"kind": "llvm", "num-cores": int(num_cores or _cores())}
    if triple:
        d["mtriple"] = triple
    if mcpu:
        d["mcpu"] = mcpu
    name = f"llvm-{machine}-{mcpu or 'generic'}"
    return TargetSpec(name, tvm.target.Target(d), "cpu", True)


def phone_target(name: str = "aarch64-cortex-a76", num_cores: int = 4) -> TargetSpec:
    """An aarch64 phone CPU (code generation; runs on a phone through RPC)."""
    try:
        triple, mcpu = PHONE_CPUS[name]
    except KeyError:
        raise EngramError(f"unknown phone target {name!r}; known: {', '.join(PHONE_CPUS)}") from None
    t = tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": mcpu, "num-cores": num_cores})
    return TargetSpec(name, t, "cpu", platform.machine() == "aarch64")


def adreno_target(host: str = "aarch64-cortex-a76") -> TargetSpec:
    """Qualcomm Adreno GPU through OpenCL (code generation only: this TVM wheel cannot run OpenCL)."""
    triple, mcpu = PHONE_CPUS[host]
    host_t = tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": mcpu})
    t = tvm.target.Target("qcom/adreno-opencl", host=host_t)
    return TargetSpec(ADRENO, t, "gpu", False)


def resolve_target(name: str | None) -> TargetSpec:
    """``None``/``"local"`` -> this CPU; a phone CPU name; ``"opencl-adreno"``."""
    if name in (None, "", "local"):
        return local_target()
    if name in PHONE_CPUS:
        return phone_target(name)
    if name == ADRENO:
        return adreno_target()
    if re.fullmatch(r"llvm-[\w.-]+", name or ""):
        spec = local_target()
        if spec.name != name:
            raise EngramError(f"target {name!r} is not this machine's CPU ({spec.name}); use 'local' or a phone target")
        return spec
    raise EngramError(f"unknown target {name!r}; use local, {', '.join(PHONE_CPUS)} or {ADRENO}")


def known_targets() -> list[str]:
    return ["local", *PHONE_CPUS, ADRENO]
