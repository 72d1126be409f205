"""TVM compilation per block: outputs equal torch's, the shipped tuning records are used without tuning,
fallbacks when the CPU differs, and code generation for phones (aarch64) and Adreno (OpenCL)."""

from __future__ import annotations

import shutil
import time
import warnings

import numpy as np
import pytest
import torch

from kernels.tvm.compile import compile_model, device_sources, export_compiled
from kernels.tvm.records import TuningRecordsWarning, available, load_database, model_key, records_dir
from kernels.tvm.targets import local_target, resolve_target

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference():
    from kernels.reference.store import load_reference

    return load_reference()


@pytest.fixture(scope="module")
def compiled(reference):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        cm = compile_model(reference.model)
        cm.extras["seconds"] = time.perf_counter() - t0
    cm.extras["warnings"] = [str(w.message) for w in caught if issubclass(w.category, TuningRecordsWarning)]
    return cm


def test_local_target_is_the_real_cpu():
    spec = local_target()
    mcpu = str(spec.target.attrs.get("mcpu", ""))
    assert mcpu and mcpu not in ("generic", "native")
    assert spec.name.endswith(mcpu)
    assert int(spec.target.attrs["num-cores"]) >= 1


def test_per_block_outputs_equal_torch(reference, compiled):
    model = reference.model
    # The blocks are functions of one executable (one VM, one memory pool at run time); the whole model has its own.
    assert len({id(b.executable) for b in compiled.blocks}) == 1
    assert len({b.function for b in compiled.blocks}) == len(compiled.blocks) and compiled.whole.function == "main"
    assert compiled.whole.executable is not compiled.blocks[0].executable
    x = torch.from_numpy(np.random.default_rng(3).random((1, *model.input_shape), dtype=np.float32))
    outs = compiled.run_local(x.numpy())
    with torch.no_grad():
        for name, y in model.iter_blocks(x):
            got, want = outs[name], y.numpy()
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), err_msg=name)
        final = model(x).numpy()
    np.testing.assert_allclose(outs["model"], final, rtol=1e-4, atol=1e-4 * float(np.abs(final).max()))
    assert outs["model"].argmax() == final.argmax()


def test_shipped_records_are_picked_up_without_tuning(reference, compiled, monkeypatch):
    key = model_key(reference.model.name, reference.model.input_shape)
    assert available(key), "no tuning records shipped for the reference CNN"
    info = compiled.records
    assert info.directory is not None and info.records > 0
    assert info.meta.get("trials", 0) > 0 and info.meta.get("tuning_seconds", 0) > 0
    # every kernel of every per-block module and of the whole model got a tuned schedule
    for b in [*compiled.blocks, compiled.whole]:
        assert b.scheduled == b.kernels, f"{b.name}: {b.scheduled}/{b.kernels} kernels tuned"
    if not info.retargeted:
        assert not compiled.extras["warnings"]
    # compiling again never starts MetaSchedule's tuner
    from tvm.s_tir import meta_schedule as ms

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("tuning started")

    monkeypatch.setattr(ms.tune, "tune_tasks", boom)
    monkeypatch.setattr(ms.relax_integration, "tune_relax", boom)
    from kernels.tvm.export import export_blocks
    from kernels.tvm.compile import build_exported

    db, _ = load_database(key, compiled.target.target, compiled.target.name)
    stem = export_blocks(reference.model, whole=False)[:1]
    t0 = time.perf_counter()
    (c,) = build_exported(stem, compiled.target, db)
    assert c.scheduled == c.kernels and time.perf_counter() - t0 < 30


def test_tuned_kernels_beat_untuned(reference, compiled):
    """The records make a difference: the tuned b3 module is faster than TVM's default schedules."""
    import tvm

    from kernels.tvm.compile import build_exported
    from kernels.tvm.export import export_blocks

    exported = [e for e in export_blocks(reference.model, whole=False) if e.name == "b3"]
    (untuned,) = build_exported(exported, compiled.target, None)
    tuned = next(b for b in compiled.blocks if b.name == "b3")
    dev = tvm.cpu()
    x = tvm.runtime.tensor(np.zeros(untuned.input_shape, np.float32), dev)

    def t(block):  # noqa: ANN001, ANN202
        f = block.vm(dev).time_evaluator(block.function, dev, number=5, repeat=5)
        return f(x).median

    assert untuned.scheduled == 0
    assert t(tuned) < t(untuned) * 0.8


def test_records_from_another_cpu_are_retargeted_with_a_warning(tmp_path, reference, compiled):
    key = model_key(reference.model.name, reference.model.input_shape)
    src = records_dir(key, available(key)[0])
    fake = f"llvm-{compiled.target.name.split('-')[1]}-someothercpu"
    shutil.copytree(src, records_dir(key, fake, tmp_path))
    with pytest.warns(TuningRecordsWarning, match="re-targeted"):
        db, info = load_database(key, compiled.target.target, compiled.target.name, tmp_path)
    assert db is not None and info.retargeted and info.tuned_for == fake
    with pytest.warns(TuningRecordsWarning, match="untuned"):
        db, info = load_database("nomodel-1x1", compiled.target.target, compiled.target.name, tmp_path)
    assert db is None and info.directory is None


def test_records_never_written_by_compiling(reference, compiled):
    key = model_key(reference.model.name, reference.model.input_shape)
    d = records_dir(key, available(key)[0])
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    load_database(key, compiled.target.target, compiled.target.name, warn=False)
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before


@pytest.mark.parametrize("target", ["aarch64-cortex-a76", "opencl-adreno"])
def test_phone_and_adreno_code_generation(tmp_path, target):
    from kernels.zoo import build_model

    model = build_model("reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TuningRecordsWarning)
        cm = compile_model(model, resolve_target(target), whole=False)
    b1 = next(b for b in cm.blocks if b.name == "b1")
    written = export_compiled(cm, tmp_path)
    lib = tmp_path / "blocks.tar"
    assert lib in written and lib.stat().st_size > 1000
    if target == "opencl-adreno":
        src = device_sources(b1.executable)["opencl"]
        assert "__kernel" in src
        assert (tmp_path / "blocks.cl").read_text() == src


def test_one_vm_per_executable_shared_by_its_units():
    from types import SimpleNamespace

    from kernels.tvm.compile import vms_by_unit

    blocks_exe, whole_exe = object(), object()
    units = [SimpleNamespace(name=n, executable=blocks_exe) for n in ("stem", "b1", "head")]
    units.append(SimpleNamespace(name="model", executable=whole_exe))
    made = []
    vms = vms_by_unit(units, lambda u: made.append(u.name) or f"vm-of-{u.name}")
    assert made == ["stem", "model"]  # built once per executable, by its first unit
    assert vms == {"stem": "vm-of-stem", "b1": "vm-of-stem", "head": "vm-of-stem", "model": "vm-of-model"}
