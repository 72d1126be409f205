"""One storage size for a CPU executable: the pass makes every planned storage the largest, leaves the
results alone, and is what the blocks' CPU build runs."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402
from tvm.script import relax as R  # noqa: E402

from kernels.tvm.compile import _build  # noqa: E402
from kernels.tvm.storage import cpu_passes, cpu_pipeline, storage_sizes, uniform_storage  # noqa: E402
from kernels.tvm.targets import TargetSpec  # noqa: E402


@tvm.script.ir_module
class TwoSizes:
    # A matmul and a reduction do not fuse, so each function plans an intermediate storage and an output one,
    # all four of different sizes: (64, 64) f32 = 16384 B, (1, 64) = 256 B, (1, 8) = 32 B, (1, 1) = 4 B.
    @R.function
    def small(x: R.Tensor((1, 8), "float32"), w: R.Tensor((8, 8), "float32")) -> R.Tensor((1, 1), "float32"):
        with R.dataflow():
            a = R.matmul(x, w)
            b = R.sum(a, axis=[1], keepdims=True)
            R.output(b)
        return b

    @R.function
    def big(x: R.Tensor((64, 8), "float32"), w: R.Tensor((8, 64), "float32")) -> R.Tensor((1, 64), "float32"):
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.sum(y, axis=[0], keepdims=True)
            R.output(z)
        return z


TARGET = tvm.target.Target("llvm")


def _planned(mod):  # noqa: ANN001, ANN202
    """The default CPU pipeline up to the point where every storage is an explicit ``alloc_storage``."""
    with TARGET:
        return tvm.transform.Sequential(cpu_passes(TARGET)[0])(mod)


def _inputs(rng):  # noqa: ANN001, ANN202
    return {"small": [rng.standard_normal((1, 8)), rng.standard_normal((8, 8))],
            "big": [rng.standard_normal((64, 8)), rng.standard_normal((8, 64))]}


def _run(exe, inputs):  # noqa: ANN001, ANN202
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return {fn: vm[fn](*[tvm.runtime.tensor(a.astype("float32")) for a in args]).numpy() for fn, args in inputs.items()}


def test_every_storage_becomes_the_largest_and_the_input_module_is_untouched():
    planned = _planned(TwoSizes)
    assert sorted(storage_sizes(planned)) == [4, 32, 256, 16384]
    uniform = uniform_storage()(planned)
    assert storage_sizes(uniform) == [16384] * 4
    assert sorted(storage_sizes(planned)) == [4, 32, 256, 16384]


def test_a_module_without_storages_passes_through():
    @tvm.script.ir_module
    class Identity:
        @R.function
        def main(x: R.Tensor((2,), "float32")) -> R.Tensor((2,), "float32"):
            return x

    planned = _planned(Identity)
    assert storage_sizes(planned) == []
    assert uniform_storage()(planned).same_as(planned)


def test_results_equal_the_default_pipeline():
    inputs = _inputs(np.random.default_rng(0))
    default = _run(tvm.compile(TwoSizes, target=TARGET), inputs)
    uniform = _run(tvm.compile(TwoSizes, target=TARGET, relax_pipeline=cpu_pipeline(TARGET)), inputs)
    for fn in inputs:
        np.testing.assert_allclose(uniform[fn], default[fn], rtol=1e-6)
    np.testing.assert_allclose(default["small"], inputs["small"][0].astype("float32") @ inputs["small"][1].astype("float32")
                               @ np.ones((8, 1), "float32"), rtol=1e-4)


@tvm.instrument.pass_instrument
class _Sizes:
    """Record the storage sizes each time UniformStorage has run, and the order passes ran in."""

    def __init__(self) -> None:
        self.after: list[list[int]] = []
        self.names: list[str] = []

    def run_after_pass(self, mod, info) -> None:  # noqa: ANN001
        self.names.append(info.name)
        if info.name == "UniformStorage":
            self.after.append(storage_sizes(mod))


def test_the_cpu_build_runs_it_after_the_storages_are_explicit():
    seen = _Sizes()
    spec = TargetSpec("test-llvm", TARGET, "cpu", True)
    with tvm.transform.PassContext(instruments=[seen]):
        exe, _ = _build(TwoSizes, spec, None)
    assert seen.after and all(len(set(s)) == 1 and len(s) >= 2 for s in seen.after), seen.after
    assert seen.names.index("LowerAllocTensor") < seen.names.index("UniformStorage") < seen.names.index("VMShapeLower")
    out = _run(exe, _inputs(np.random.default_rng(1)))
    assert out["big"].shape == (1, 64)
