"""Turn what a user names (a zoo model, a .cfg/.param file, a built-in net) into a graph plus what the
execution check needs: weights, an input, and the independent result to compare with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engram.errors import EngramError
from kernels.memplan.graph import Graph
from kernels.memplan.weights import random_inputs, random_weights

BUNDLED = Path(__file__).resolve().parent / "graphs"
BUILTINS = ("dncnn", "resstack500")
DNCNN_SIZE = (512, 512)  # "high resolution" for the DnCNN-style net; the saving barely depends on it


@dataclass
class LoadedGraph:
    graph: Graph
    weights: dict[str, dict[str, np.ndarray]]
    inputs: dict[str, np.ndarray]
    reference: Callable[[], dict[str, np.ndarray]]  # the result every plan's execution must reproduce
    module: object | None = None  # the torch model, for TVM (zoo models only)
    kind: str = "file"  # zoo | darknet | ncnn | builtin


def bundled_graphs() -> list[Path]:
    return sorted(BUNDLED.glob("darknet/*.cfg")) + sorted(BUNDLED.glob("ncnn/*.param"))


def resolve_path(spec: str) -> Path | None:
    """A user's file, or a bundled example of that file name (``yolov3-tiny.cfg``, ``resnet18.param``)."""
    p = Path(spec)
    if p.exists():
        return p
    if p.suffix in (".cfg", ".param") and len(p.parts) == 1:
        for q in bundled_graphs():
            if q.name == p.name:
                return q
    return None


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        h, w = (int(v) for v in parts)
    except ValueError:
        raise EngramError(f"--input-size must look like HxW (e.g. 416x416), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise EngramError(f"--input-size must be positive, got {text!r}")
    return h, w


def load_graph(spec: str, input_size: tuple[int, int] | None = None, seed: int = 0) -> LoadedGraph:
    from kernels.zoo import list_models

    if spec in list_models():
        return _zoo(spec, input_size, seed)
    if spec in BUILTINS:
        from kernels.memplan.dncnn import dncnn_graph
        from kernels.memplan.synthetic import residual_stack

        if spec == "dncnn":
            h, w = input_size or DNCNN_SIZE
            graph = dncnn_graph(h, w)
        else:
            graph = residual_stack(500, size=input_size[0] if input_size else 64)
        return _random(graph, seed, "builtin")
    path = resolve_path(spec)
    if path is None:
        if Path(spec).suffix in (".cfg", ".param"):
            raise EngramError(f"file not found: {spec}")
        raise EngramError(f"unknown graph {spec!r}: give a zoo model ({', '.join(list_models())}), a built-in "
                          f"net ({', '.join(BUILTINS)}), or a Darknet .cfg / ncnn .param file")
    if path.suffix == ".cfg":
        from kernels.memplan.darknet import read_darknet

        return _random(read_darknet(path, input_size), seed, "darknet")
    if path.suffix == ".param":
        from kernels.memplan.ncnn import read_ncnn

        return _random(read_ncnn(path, input_size), seed, "ncnn")
    raise EngramError(f"{path}: unknown graph format {path.suffix or '(no suffix)'!r}; expected .cfg or .param")


def _random(graph: Graph, seed: int, kind: str) -> LoadedGraph:
    weights = random_weights(graph, seed)
    inputs = random_inputs(graph, seed + 1)

    def reference() -> dict[str, np.ndarray]:
        from kernels.memplan.reference import run_reference  # torch: only when a check runs

        return run_reference(graph, weights, inputs)

    return LoadedGraph(graph, weights, inputs, reference, None, kind)


def _zoo(name: str, input_size: tuple[int, int] | None, seed: int) -> LoadedGraph:
    import torch

    from kernels.memplan.torch_export import graph_from_blockwise
    from kernels.zoo import build_model

    torch.manual_seed(seed)
    model = build_model(name, **({"input_size": input_size[0]} if input_size else {}))
    graph, weights = graph_from_blockwise(model, input_size)
    inputs = random_inputs(graph, seed + 1)

    def reference() -> dict[str, np.ndarray]:
        with torch.no_grad():
            x = torch.from_numpy(inputs[graph.inputs[0]]).unsqueeze(0)
            out = model(x)
        return {graph.outputs[0]: out.numpy().reshape(graph.shapes[graph.outputs[0]])}

    return LoadedGraph(graph, weights, inputs, reference, model, "zoo")
