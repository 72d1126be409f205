"""TVM's own activation memory plan for a torch model: Relax ``StaticPlanBlockMemory``, measured.

The model goes through ``torch.export`` and TVM's Relax frontend, then through the passes of TVM's CPU
build pipeline up to and including ``StaticPlanBlockMemory`` (legalisation and operator fusion first, so
that a convolution with its batch norm and activation is one kernel, as in our graph). The planner's
result is read off the IR the way ``relax.analysis.estimate_memory_usage`` counts it: the sizes of all
``R.memory.alloc_storage`` (the planned, reused storages) plus any ``R.builtin.alloc_tensor`` left (the
network's output). TVM receives the input image as a function argument and does not plan it, so the input
bytes are added to make the figure comparable with arenas that hold the input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from engram.errors import EngramError


@dataclass(frozen=True)
class TvmMemory:
    planned_bytes: int  # storages after StaticPlanBlockMemory (+ unplanned output tensor)
    input_bytes: int
    storages: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        return self.planned_bytes + self.input_bytes


def tvm_activation_memory(module: nn.Module, input_shape: tuple[int, int, int]) -> TvmMemory:
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.backend import cpu_generic
    from tvm.relax.frontend.torch import from_exported_program

    x = torch.zeros(1, *input_shape)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation noise
            ep = torch.export.export(module.eval(), (x,))
            mod = from_exported_program(ep, unwrap_unit_return_tuple=True, keep_params_as_input=True)
    except Exception as exc:  # any failure here is the model's, not a bug of ours
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngramError(f"TVM could not import the model: {why}") from None
    target = tvm.target.Target({"kind": "llvm"})
    passes = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
    passes += cpu_generic.library_dispatch_passes(target) + cpu_generic.legalize_passes(target)
    passes += [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
               relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
               relax.transform.StaticPlanBlockMemory()]
    with target:
        planned = tvm.transform.Sequential(passes)(mod)
    storages = _allocations(planned["main"])
    elem = 4  # float32 input
    n_in = 1
    for d in input_shape:
        n_in *= d
    return TvmMemory(sum(storages), n_in * elem, tuple(storages))


def _allocations(func) -> list[int]:  # noqa: ANN001
    import tvm
    from tvm import relax
    from tvm.ir import Op

    storage_op = Op.get("relax.memory.alloc_storage")
    tensor_op = Op.get("relax.builtin.alloc_tensor")
    sizes: list[int] = []

    def visit(expr) -> None:  # noqa: ANN001
        if not isinstance(expr, relax.Call):
            return
        if expr.op.same_as(storage_op):
            sizes.append(int(expr.args[0].values[0].value))
        elif expr.op.same_as(tensor_op):
            n = 1
            for d in expr.args[0].values:
                if not isinstance(d, tvm.tirx.IntImm):
                    raise EngramError("TVM planned a tensor of dynamic size; cannot count it")
                n *= int(d.value)
            dt = tvm.DataType(expr.args[1].value)
            sizes.append(n * ((dt.bits + 7) // 8) * dt.lanes)

    relax.analysis.post_order_visit(func, visit)
    return sizes
