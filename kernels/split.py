"""Cut an arbitrary torch module into blocks at user-named exit points (torch.fx).

An exit point names a submodule (``"layer2"``, ``"features.6"``): the cut goes right after the last
operation that runs inside it. A cut is only valid where a single tensor is live, the exit's output; a
skip connection across it would make early exit meaningless, so it is refused.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx as fx
from torch import nn

from engram.errors import EngramError
from kernels.blockwise import BlockwiseModel

HEAD = "head"


def _in_module(node: fx.Node, path: str) -> bool:
    if node.op == "call_module" and (node.target == path or str(node.target).startswith(path + ".")):
        return True
    stack = node.meta.get("nn_module_stack") or {}
    for qualname, _ in stack.values():
        if qualname == path or qualname.startswith(path + "."):
            return True
    return False


def split_module(
    module: nn.Module,
    exit_points: Sequence[str],
    input_shape: tuple[int, int, int],
    num_classes: int,
    name: str | None = None,
) -> BlockwiseModel:
    model_name = name or type(module).__name__
    if not exit_points:
        raise EngramError(f"{model_name}: give at least one exit point (a submodule name)")
    known = dict(module.named_modules())
    for e in exit_points:
        if e not in known or e == "":
            some = ", ".join(list(n for n in known if n and "." not in n)[:12])
            raise EngramError(f"{model_name}: exit point {e!r} is not a submodule (top-level ones: {some})")
    if HEAD in exit_points:
        raise EngramError(f"{model_name}: {HEAD!r} is reserved for the block after the last exit point")
    try:
        gm = fx.symbolic_trace(module.eval())
    except Exception as exc:  # fx raises many types for untraceable Python control flow
        raise EngramError(
            f"{model_name}: cannot trace the module with torch.fx ({type(exc).__name__}: {exc}); "
            "wrap its stages in an nn.Sequential or remove data-dependent control flow"
        ) from None

    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise EngramError(f"{model_name}: the module must take exactly one tensor input, it takes {len(placeholders)}")
    pos = {n: i for i, n in enumerate(nodes)}

    boundaries: list[fx.Node] = []
    for e in exit_points:
        inside = [n for n in nodes if n.op not in ("placeholder", "output", "get_attr") and _in_module(n, e)]
        if not inside:
            raise EngramError(f"{model_name}: exit point {e!r} is never called in forward()")
        boundaries.append(max(inside, key=pos.__getitem__))
    if [pos[b] for b in boundaries] != sorted(set(pos[b] for b in boundaries)):
        raise EngramError(f"{model_name}: exit points {list(exit_points)} are not in execution order")

    def part_of(n: fx.Node) -> int:
        return sum(1 for b in boundaries if pos[b] < pos[n])

    part = {n: part_of(n) for n in nodes if n.op not in ("get_attr",)}
    for n in nodes:
        if n.op == "get_attr":
            users = [part[u] for u in n.users if u in part]
            part[n] = min(users) if users else 0

    # Only the exit's own output may cross a cut, and only into the very next block.
    for n in nodes:
        for m in n.all_input_nodes:
            if m.op == "get_attr" or part[m] == part[n]:
                continue
            crosses_one_cut = part[m] == part[n] - 1
            is_exit_output = part[m] < len(boundaries) and m is boundaries[part[m]]
            if not (crosses_one_cut and is_exit_output):
                where = exit_points[min(part[m], len(exit_points) - 1)]
                raise EngramError(
                    f"{model_name}: the value {m.name!r} computed before exit point {where!r} is used after it; "
                    "cut where only one tensor is live (after a whole residual stage, not inside it)"
                )

    blocks: list[tuple[str, nn.Module]] = []
    names = list(exit_points) + [HEAD]
    for p, block_name in enumerate(names):
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        x = g.placeholder("x")
        if p == 0:
            env[placeholders[0]] = x
        else:
            env[boundaries[p - 1]] = x
        result = None
        for n in nodes:
            if n.op == "placeholder":
                continue
            if n.op == "output":
                if p == len(names) - 1:
                    result = g.output(fx.map_arg(n.args[0], lambda a: env[a]))
                continue
            if n.op == "get_attr":
                if any(u in part and part[u] == p for u in n.users):
                    env[n] = g.node_copy(n, lambda a: env[a])
                continue
            if part[n] == p:
                env[n] = g.node_copy(n, lambda a: env[a])
        if p < len(boundaries):
            g.output(env[boundaries[p]])
        elif result is None:  # pragma: no cover - fx graphs always end in an output node
            raise EngramError(f"{model_name}: traced graph has no output")
        blocks.append((block_name, fx.GraphModule(gm, g, class_name=f"Block_{block_name.replace('.', '_')}")))

    arch = {"kind": "user", "class": f"{type(module).__module__}.{type(module).__qualname__}", "exit_points": list(exit_points)}
    model = BlockwiseModel(model_name, blocks, exit_points, input_shape, num_classes, arch)
    return model.eval()


def check_split(model: BlockwiseModel, original: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> float:
    """Largest absolute difference between the split model and the original on ``x``."""
    with torch.no_grad():
        return float((model(x) - original(x)).abs().max())
