"""Activation memory of CNN inference with overlapping buffers (Jokic, Emery, Benini, IEEE ESL 2021).

Read a network (zoo model via ``torch.export``, Darknet ``.cfg``, ncnn ``.param``, DnCNN-style builtin) into
one graph form, plan its activations in one arena with several planners (ping-pong, greedy by size,
N2D2-style wrap-around, ours with overlapping input/output buffers), bound them from below, and prove
each plan by running the network row by row inside it.

For the cost model::

    from kernels.memplan import graph_from_blockwise, plan_activation_memory
    graph, _ = graph_from_blockwise(model)
    plan_activation_memory(graph).overlap_bytes
"""

from __future__ import annotations

import importlib

# Imported on first use, so that registering the ``memplan`` command does not pull in torch.
_HOMES = {
    "MemoryPlanResult": "evaluate", "activation_bytes": "evaluate", "evaluate": "evaluate",
    "plan_activation_memory": "evaluate", "Graph": "graph", "Op": "graph", "load_graph": "load",
    "lower_bound": "lower_bound", "Placement": "plan", "Plan": "plan", "graph_from_blockwise": "torch_export",
    "graph_from_module": "torch_export",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):  # noqa: ANN202
    if name not in _HOMES:
        raise AttributeError(f"module 'kernels.memplan' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kernels.memplan.{_HOMES[name]}"), name)
