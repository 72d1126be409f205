"""The ``memplan`` command: activation memory of a network under every planner, checked by execution."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from engram.fileio import write_json_atomic

_HELP = """Plan the activation memory of GRAPH and check every plan by running it.

GRAPH is a zoo model (mobilenetv2, reference, resnet18), a built-in net (dncnn: a DnCNN-style denoiser,
512x512 unless --input-size; resstack500: a 500-layer residual stack), a Darknet .cfg or an ncnn .param
file. The bundled examples can be named by file name alone (yolov3-tiny.cfg, resnet18.param, ...).

Prints, per planner, the bytes of one activation arena, the saving against ping-pong buffering, the
distance to the lower bound, and whether running the network row by row inside that arena reproduced
the reference result. --json prints one object with pingpong_bytes, greedy_bytes, wraparound_bytes,
overlap_bytes, lower_bound_bytes, tvm_bytes (zoo models; includes the input image, which TVM does not
plan), verified (the overlap plan passed the execution check) and the details of every check.
"""


def _mb(b: int) -> str:
    return f"{b / 1e6:,.3f} MB"


@click.command("memplan", help=_HELP)
@click.argument("graph")
@click.option("--input-size", "input_size", metavar="HxW", default=None,
              help="Input height x width (default: the network's own; 512x512 for dncnn).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--no-verify", is_flag=True, help="Skip the execution check (planning only).")
@click.option("--no-tvm", is_flag=True, help="Skip TVM's planner for zoo models (it takes seconds).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON report to this file.")
def memplan(graph: str, input_size: str | None, as_json: bool, no_verify: bool, no_tvm: bool,
            out_path: str | None) -> None:
    from kernels.memplan.evaluate import LABELS, PLANNERS, evaluate
    from kernels.memplan.graph import fmt_shape
    from kernels.memplan.load import load_graph, parse_size

    loaded = load_graph(graph, parse_size(input_size))
    report = evaluate(loaded, run_checks=not no_verify, with_tvm=not no_tvm)
    data = report.to_json()
    if out_path:
        write_json_atomic(out_path, data)
    if as_json:
        click.echo(json.dumps(data))
        return
    g = loaded.graph
    r = report.result
    click.echo(f"{g.name}: {len(g.ops)} layers, input {fmt_shape(g.shapes[g.inputs[0]])} (float32); largest tensor "
               f"{_mb(r.largest_tensor_bytes)}, lower bound {_mb(r.lower_bound_bytes)}")
    table = Table(box=None, pad_edge=False)
    for col in ("planner", "bytes", "vs ping-pong", "vs bound", "check"):
        table.add_column(col, justify="left" if col in ("planner", "check") else "right")
    rows = [(p, r.plans[p].arena_bytes) for p in PLANNERS]
    if report.tvm is not None:
        rows.insert(2, ("tvm", report.tvm.total_bytes))
    notes = []
    for name, b in rows:
        v = report.verification.get(name)
        if name == "tvm":
            check = "-"
        elif v is None:
            check = "skipped"
        elif v.verified:
            check = "passed"
        else:
            check = f"FAILED ({len(notes) + 1})"
            why = v.violation or f"outputs differ by {v.max_rel_error:.2g} of their scale"
            notes.append(f"{LABELS[name]}: {why}")
        table.add_row(LABELS[name], f"{b:,}", f"{b / r.pingpong_bytes - 1:+.1%}", f"{b / r.lower_bound_bytes - 1:+.2%}",
                      check)
    Console(highlight=False, soft_wrap=True, width=100).print(table)
    for k, note in enumerate(notes, start=1):
        click.echo(f"({k}) {note}")
    if report.tvm is not None:
        click.echo("TVM Relax: its StaticPlanBlockMemory storages plus the input image (TVM checks its own plan).")
    click.echo(f"planning time (all planners and the bound): {r.planning_seconds * 1000:.1f} ms")
