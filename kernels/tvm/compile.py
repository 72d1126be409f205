"""Compile a blockwise model for a target: one Relax VM executable holding every block as its own function,
and one for the whole model.

The blocks share one executable (and so, at run time, one VM and its memory pool) rather than one each: run in
sequence from Python, as the runtime runs them, the reference CNN's ten blocks with ten VMs and ten separate
workspaces took 17-27% longer than the whole model on this machine, and 7-17% longer with one shared VM.

Pipeline: ``torch.export`` (BatchNorm folded) -> Relax -> decompose, legalize, fuse (TVM's zero pipeline)
-> apply the tuning database's schedules to every fused kernel it has a record for -> ``tvm.compile`` (for a CPU,
with every planned storage one size: see :mod:`kernels.tvm.storage`).
Tasks are extracted from the same legalized modules, so tuning and compiling see identical workloads; the
per-block modules pick up the schedules tuned on the whole model whenever their fused kernels are the same
(every block's kernels are, except at most a few fused at a block boundary, and the tuner also tunes the
per-block modules' tasks: see :mod:`kernels.tvm.tune`). :attr:`CompiledBlock.scheduled` says how many
kernels of each module got a tuned schedule.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.blockwise import BlockwiseModel
from kernels.tvm.export import ExportedBlock, export_blocks
from kernels.tvm.records import RecordsInfo, load_database, model_key
from kernels.tvm.storage import cpu_pipeline
from kernels.tvm.targets import TargetSpec, resolve_target


def prepare(mod, target):  # noqa: ANN001, ANN201
    """Decompose, legalize and fuse a Relax module (the form tasks are extracted from)."""
    import tvm
    from tvm import relax

    with target:
        seq = tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.get_pipeline("zero"),
        ])
        return seq(mod)


def gpu_schedule(prepared, target):  # noqa: ANN001, ANN201
    """GPU kernels need thread bindings before codegen: TVM's default (dlight) schedules."""
    from tvm.s_tir import dlight as dl

    with target:
        return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
                                       dl.gpu.Fallback())(prepared)


def apply_database(prepared, target, database):  # noqa: ANN001, ANN201
    """Replace every fused kernel the database has a record for by its tuned schedule."""
    from tvm import relax

    if database is None:
        return prepared
    with target, database:
        return relax.transform.MetaScheduleApplyDatabase()(prepared)


def count_scheduled(mod) -> tuple[int, int]:  # noqa: ANN001
    """``(kernels with a tuned schedule, all kernels)`` of a prepared module."""
    from tvm import tirx

    total = scheduled = 0
    for _, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            total += 1
            attrs = func.attrs or {}
            if any(k in attrs for k in ("tirx.is_scheduled", "tir.is_scheduled")) and bool(
                    attrs.get("tirx.is_scheduled", attrs.get("tir.is_scheduled", False))):
                scheduled += 1
    return scheduled, total


@dataclass
class CompiledBlock:
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    executable: Any  # tvm.relax.VMExecutable (the blocks of a model share one)
    scheduled: int  # kernels with a tuned schedule
    kernels: int  # all fused kernels
    function: str = "main"  # this block's function in the executable

    def vm(self, device=None):  # noqa: ANN001, ANN201
        import tvm
        from tvm import relax

        return relax.VirtualMachine(self.executable, device or tvm.cpu())


def vms_by_unit(units, make) -> dict[str, Any]:  # noqa: ANN001
    """Unit name -> VM, one VM per executable (``make(unit)`` builds it): the blocks share theirs, as in the
    runtime, and the whole model has its own."""
    made: dict[int, Any] = {}
    out: dict[str, Any] = {}
    for u in units:
        key = id(u.executable)
        if key not in made:
            made[key] = make(u)
        out[u.name] = made[key]
    return out


def block_function(index: int, name: str) -> str:
    """The executable's function name for block ``index`` (block names may hold characters a symbol cannot)."""
    return f"block{index}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


@dataclass
class CompiledModel:
    model_name: str
    model_key: str
    target: TargetSpec
    blocks: list[CompiledBlock]
    whole: CompiledBlock | None
    records: RecordsInfo
    compile_seconds: float
    extras: dict = field(default_factory=dict)

    @property
    def tuned_fraction(self) -> float:
        mods = self.blocks + ([self.whole] if self.whole else [])
        k = sum(b.kernels for b in mods)
        return sum(b.scheduled for b in mods) / k if k else 0.0

    def run_local(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run the per-block executables in sequence on this CPU; outputs by block name (+ ``"model"``)."""
        import tvm

        dev = tvm.cpu()
        outs: dict[str, np.ndarray] = {}
        cur = x
        vms = vms_by_unit(self.blocks, lambda b: b.vm(dev))
        for b in self.blocks:
            vm = vms[b.name]
            cur = vm[b.function](tvm.runtime.tensor(np.ascontiguousarray(cur), dev)).numpy()
            outs[b.name] = cur
        if self.whole is not None:
            outs["model"] = self.whole.vm(dev)[self.whole.function](tvm.runtime.tensor(np.ascontiguousarray(x), dev)).numpy()
        return outs


def device_sources(executable) -> dict[str, str]:  # noqa: ANN001
    """Generated device code by module kind (e.g. ``{"opencl": ...}`` for an Adreno build)."""
    out: dict[str, str] = {}

    def walk(m) -> None:  # noqa: ANN001
        if m.kind not in ("relax.VMExecutable", "llvm", "c"):
            try:
                out[m.kind] = m.inspect_source()
            except Exception:  # noqa: BLE001 - not every module kind keeps its source
                pass
        for i in m.imports:
            walk(i)

    walk(executable.mod)
    return out


def export_executable(executable, name: str, directory, target: TargetSpec) -> list:  # noqa: ANN001
    """Write an executable as a library ``NAME.so`` (this CPU) or ``NAME.tar`` (a phone: no cross toolchain
    needed; the RPC server or the app links it) and, for GPU targets, its device source. Returns the paths."""
    from pathlib import Path

    from engram.fileio import atomic_path, write_text_atomic

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    ext = ".so" if target.runnable_locally else ".tar"
    path = d / f"{name}{ext}"
    with atomic_path(path) as tmp:
        lib = tmp.with_name(tmp.stem + ext)
        executable.export_library(str(lib))
        lib.replace(tmp)
    written.append(path)
    for kind, src in device_sources(executable).items():
        p = d / f"{name}.{ 'cl' if kind == 'opencl' else kind}"
        write_text_atomic(p, src)
        written.append(p)
    return written


def export_compiled(compiled: "CompiledModel", directory) -> list:  # noqa: ANN001
    """The blocks' executable as ``blocks`` and the whole model's as ``model`` (see :func:`export_executable`)."""
    written = []
    if compiled.blocks:
        written += export_executable(compiled.blocks[0].executable, "blocks", directory, compiled.target)
    if compiled.whole is not None:
        written += export_executable(compiled.whole.executable, "model", directory, compiled.target)
    return written


def _build(mod, target: TargetSpec, database):  # noqa: ANN001, ANN202
    import tvm

    prepared = prepare(mod, target.target)
    applied = apply_database(prepared, target.target, database)
    counts = count_scheduled(applied)  # tuned schedules only (not the GPU defaults below)
    if target.kind == "gpu":
        return tvm.compile(gpu_schedule(applied, target.target), target=target.target), counts
    return tvm.compile(applied, target=target.target, relax_pipeline=cpu_pipeline(target.target)), counts


def build_exported(blocks: list[ExportedBlock], target: TargetSpec, database) -> list[CompiledBlock]:  # noqa: ANN001
    """The blocks (every exported module but ``"model"``) as functions of one executable; the whole model in its
    own. Kernel counts are per block, from each block's own module (the tuned schedules are the same)."""
    import tvm

    out = []
    parts = [e for e in blocks if e.name != "model"]
    if parts:
        merged = tvm.IRModule()
        for i, e in enumerate(parts):
            fn = block_function(i, e.name)
            merged[fn] = e.mod["main"].with_attr("global_symbol", fn)
        exe, _ = _build(merged, target, database)
        for i, e in enumerate(parts):
            sched, total = count_scheduled(apply_database(prepare(e.mod, target.target), target.target, database))
            out.append(CompiledBlock(e.name, e.input_shape, e.output_shape, exe, sched, total, block_function(i, e.name)))
    for e in blocks:
        if e.name == "model":
            exe, (sched, total) = _build(e.mod, target, database)
            out.append(CompiledBlock(e.name, e.input_shape, e.output_shape, exe, sched, total))
    return out


def compile_model(
    model: BlockwiseModel,
    target: TargetSpec | str | None = None,
    *,
    records: str = "auto",
    batch: int = 1,
    whole: bool = True,
    records_root=None,  # noqa: ANN001
    key: str | None = None,
) -> CompiledModel:
    """Compile every block of ``model`` (and the whole model) for ``target`` (default: this CPU).

    ``records="auto"`` uses the shipped tuning records for this model and target (with a warning when there
    are none or they come from another CPU); ``"none"`` compiles untuned.
    """
    spec = target if isinstance(target, TargetSpec) else resolve_target(target)
    key = key or model_key(model.name, model.input_shape)
    t0 = time.perf_counter()
    database, info = (None, RecordsInfo(None, None, False))
    if records == "auto":
        database, info = load_database(key, spec.target, spec.name, records_root)
    exported = export_blocks(model, batch=batch, whole=whole)
    compiled = build_exported(exported, spec, database)
    blocks = [c for c in compiled if c.name != "model"]
    whole_c = next((c for c in compiled if c.name == "model"), None)
    return CompiledModel(model.name, key, spec, blocks, whole_c, info, time.perf_counter() - t0)
