"""Give every planned storage of a CPU executable the same size, so the VM's memory pool hands each block a
buffer that is still in cache.

Why: TVM's pooled allocator keeps freed buffers in one free list per (page-rounded) size and hands back the
last one freed of exactly that size. Run block by block, each block asks for storages of its own sizes, which
no other block frees, so what it gets is the buffer it used itself a whole pass ago -- long evicted. The whole
model, planned as one function, allocates 7 storages per pass where MobileNetV2's blocks allocate 30, and its
early, large kernels run on warm memory. Measured on a Zen 5 host (MobileNetV2 224x224, tuned, one thread):
the same kernels with the same schedules ran 6% slower as a chain of blocks than as the whole model (the first
blocks' large kernels up to 30% slower), 2.5-3.1% with every storage one size (the largest), 3.9% with sizes
rounded to powers of two; the reference CNN 1.7% and 1.3% (noise level). With one size, the buffer a block
gets is the one the previous block (or the previous function's output) just freed.

The cost is memory: every pooled buffer is as large as the largest planned storage. For MobileNetV2 the pool
after a pass grew by 3.8 MiB (9.7 -> 13.5 MiB resident); the profile's activation sizes, and the simulator's
memory model, are not affected (they come from the tensors, not from the pool).

Only CPU (``llvm``) targets get this pipeline; GPU targets keep TVM's default one.
"""

from __future__ import annotations

from typing import Any

_ALLOC = "relax.memory.alloc_storage"


def storage_sizes(mod) -> list[int]:  # noqa: ANN001
    """Byte sizes of every constant-size ``alloc_storage`` in the module's Relax functions (after memory
    planning)."""
    import tvm
    from tvm import relax

    alloc = tvm.ir.Op.get(_ALLOC)
    out: list[int] = []

    @relax.expr_functor.visitor
    class _Sizes(relax.PyExprVisitor):
        def visit_call_(self, call) -> None:  # noqa: ANN001
            super().visit_call_(call)
            size = _constant_size(call, alloc)
            if size is not None:
                out.append(size)

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _Sizes().visit_expr(func)
    return out


def _constant_size(call, alloc) -> int | None:  # noqa: ANN001
    from tvm import relax, tirx

    if call.op != alloc or not isinstance(call.args[0], relax.ShapeExpr):
        return None
    values = call.args[0].values
    if len(values) != 1 or not isinstance(values[0], tirx.IntImm):
        return None
    return int(values[0].value)


def uniform_storage():  # noqa: ANN201
    """A module pass that sets every constant-size ``alloc_storage`` to the largest such size in the module."""
    import tvm
    from tvm import relax, tirx

    alloc = tvm.ir.Op.get(_ALLOC)

    @tvm.transform.module_pass(opt_level=0, name="UniformStorage")
    def _pass(mod, _ctx):  # noqa: ANN001, ANN202
        sizes = storage_sizes(mod)
        if not sizes:
            return mod
        size = relax.ShapeExpr([tirx.IntImm("int64", max(sizes))])

        @relax.expr_functor.mutator
        class _Uniform(relax.PyExprMutator):
            def visit_call_(self, call):  # noqa: ANN001, ANN202
                call = super().visit_call_(call)
                if _constant_size(call, alloc) is None:
                    return call
                return relax.Call(call.op, [size, *call.args[1:]], call.attrs, call.ty_args)

        out = mod.clone()  # a pass must not change the module it was given
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                out[gv] = _Uniform().visit_expr(func)
        return out

    return _pass


def cpu_passes(target) -> tuple[list, list]:  # noqa: ANN001
    """TVM's default CPU Relax passes split where every storage has become an explicit ``alloc_storage`` (after
    static memory planning and the lowering of the functions' output allocations): ``(up to there, the rest)``."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    finalize = list(cpu.finalize_passes(target))
    names = [p.info.name for p in finalize]
    if "LowerAllocTensor" not in names:
        raise RuntimeError(f"TVM's CPU finalize passes changed ({names}); cannot place UniformStorage")
    at = names.index("LowerAllocTensor") + 1
    before = cpu.library_dispatch_passes(target) + cpu.legalize_passes(target) + cpu.dataflow_lower_passes(target)
    return before + finalize[:at], finalize[at:]


def cpu_pipeline(target) -> Any:  # noqa: ANN001
    """TVM's default CPU Relax pipeline with :func:`uniform_storage` run once every storage is explicit."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="EngramCPUPipeline")
    def _pipeline(mod, _ctx):  # noqa: ANN001, ANN202
        with target:
            planned, rest = cpu_passes(target)
            return tvm.transform.Sequential(planned + [uniform_storage()] + rest)(mod)

    return _pipeline
