"""Kernels room: the model zoo cut into blocks with exit points, the reference workload (procedural images
and the trained reference CNN), per-block compilation and profiling, and the activation-memory planner.

Public API used by the other rooms: :class:`BlockwiseModel`, :func:`build_model`, :func:`list_models`,
``kernels.procedural`` (rendering) and ``kernels.reference.store.load_reference``. Imported lazily, so
that the command line starts without loading torch.
"""

from typing import Any

__all__ = ["BlockwiseModel", "build_model", "list_models"]


def __getattr__(name: str) -> Any:
    if name == "BlockwiseModel":
        from kernels.blockwise import BlockwiseModel

        return BlockwiseModel
    if name in ("build_model", "list_models"):
        import kernels.zoo as zoo

        return getattr(zoo, name)
    raise AttributeError(name)
