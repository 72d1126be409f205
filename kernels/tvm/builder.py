"""MetaSchedule's candidate builder without the 30-second trap.

TVM's default build function imports ``tvm.s_tir.tensor_intrin`` inside every build job, and that import
parses the TVMScript of every tensor intrinsic TVM knows (CUDA, ROCm, Hexagon, Arm...): 25-120 s on a 2-core
machine, longer than the builder's 30 s timeout, so on such machines nearly every candidate "times out"
before it is even compiled. Float32 CPU schedules use no tensor intrinsics, so :func:`build` does the same
work as the default minus that import. It lives in this small module so that the builder's worker
processes can import it cheaply (they get ``PYTHONPATH`` pointing at the checkout).
"""

from __future__ import annotations


def build(mod, target, _params=None):  # noqa: ANN001, ANN201
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def warm_up() -> None:
    """Builder worker initializer: import TVM before the first (timed) job."""
    import tvm  # noqa: F401
    import tvm.driver  # noqa: F401
