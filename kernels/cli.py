"""Command-line commands of the kernels room: the model zoo and the reference workload."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


DEFAULT_EVAL_IMAGES = 2000
DEFAULT_EVAL_SEED = 2026


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@click.command("models")
@click.argument("name", required=False)
@click.option("--input-size", type=click.IntRange(min=16), default=None, help="Input height = width (default: the model's own).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def models(name: str | None, input_size: int | None, as_json: bool) -> None:
    """List the model zoo, or show one model's blocks, exit points and per-block costs."""
    from kernels.summary import block_costs
    from kernels.zoo import build_model, list_models

    if name is None:
        names = list_models()
        if as_json:
            click.echo(json.dumps({"models": names}))
        else:
            for n in names:
                m = build_model(n)
                click.echo(f"{n:12s} {len(m.blocks)} blocks, exit points after {', '.join(m.exit_points)}")
        return
    kwargs = {"input_size": input_size} if input_size else {}
    model = build_model(name, **kwargs)
    costs = block_costs(model)
    if as_json:
        click.echo(json.dumps({**model.describe(), "costs": [c.to_json() for c in costs]}))
        return
    total = sum(c.macs for c in costs)
    table = Table(title=f"{name}: {sum(c.params for c in costs):,} parameters, {total / 1e6:.1f} M MACs")
    for col in ("block", "input", "output", "params", "MACs (M)", "cum. MACs", "exit"):
        table.add_column(col, justify="right" if col not in ("block", "exit") else "left")
    cum = 0
    for c in costs:
        cum += c.macs
        table.add_row(c.name, "x".join(map(str, c.input_shape)), "x".join(map(str, c.output_shape)), f"{c.params:,}",
                      f"{c.macs / 1e6:.2f}", f"{cum / total:.0%}", "exit" if c.is_exit else "")
    _console().print(table)


@click.group("reference")
def reference() -> None:
    """The reference workload: procedural images and the trained reference CNN."""


def _print_eval(result: dict) -> None:
    table = Table(title=(f"reference CNN on {result['images']} fresh images (seed {result['seed']}): "
                         f"top-1 {result['top1']:.1%}"))
    for col in ("exit point", "features", "dims", "cum. MACs", "nearest-centre acc.", "share of final"):
        table.add_column(col, justify="left" if col == "exit point" else "right")
    for i, e in enumerate(result["exits"]):
        acc = result["exit_accuracy"][i]
        table.add_row(e, "x".join(map(str, result["exit_feature_shapes"][i])), str(result["semantic_dims"][i]),
                      f"{result['exit_macs_share'][i]:.0%}", f"{acc:.1%}", f"{acc / result['top1']:.0%}")
    table.add_row("final", "", "", "100%", f"{result['top1']:.1%}", "100%")
    _console().print(table)
    click.echo(f"{result['classes']} classes, {result['params']:,} parameters, {result['macs'] / 1e6:.1f} M MACs per image")


@reference.command("evaluate")
@click.option("--images", type=click.IntRange(min=1), default=DEFAULT_EVAL_IMAGES, show_default=True, help="Fresh images to render.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_EVAL_SEED, show_default=True, help="Image seed.")
@click.option("--strength", type=click.FloatRange(0.0, 1.5), default=None, help="Nuisance strength (default: the one the model was trained at).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Directory with refnet.safetensors and encoders.safetensors (default: the shipped model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate_cmd(images: int, seed: int, strength: float | None, model_dir: Path | None, as_json: bool) -> None:
    """Render fresh images and measure top-1 and per-exit nearest-centre accuracy."""
    import torch

    from kernels.reference.evaluate import evaluate
    from kernels.reference.store import load_reference

    torch.set_num_threads(2)
    ref = load_reference(model_dir)
    if strength is None:
        strength = float(ref.meta.get("train", {}).get("strength", 0.5))
    result = evaluate(ref, images, seed, strength)
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print_eval(result)


@reference.command("train")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimiser steps (default: the shipped model's).")
@click.option("--batch", type=click.IntRange(min=2), default=None, help="Images per step.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training seed (weights and image stream).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--dims", type=click.IntRange(min=2), default=None, help="Semantic vector size per exit point (capped at its channels).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: replace the shipped model).")
@click.option("--fresh", is_flag=True, help="Ignore a checkpoint left by an interrupted run in --out.")
def train_cmd(steps, batch, seed, threads, dims, out, fresh) -> None:
    """Train the reference CNN on rendered images, fit its semantic encoders and save both.

    An interrupted run resumes from the checkpoint it left in the output directory.
    """
    from tqdm import tqdm

    from kernels.reference.build import BuildConfig, build_reference
    from kernels.reference.store import DATA_DIR

    cfg = BuildConfig()
    overrides = {k: v for k, v in {"steps": steps, "batch": batch, "seed": seed, "threads": threads}.items() if v is not None}
    cfg = cfg.with_train(**overrides)
    if dims is not None:
        cfg = cfg.with_(dims=dims)
    out = out or DATA_DIR
    ckpt = out / ".train-checkpoint.safetensors"
    if fresh and ckpt.exists():
        ckpt.unlink()
    bar = tqdm(total=cfg.train.steps, desc="training", unit="step", dynamic_ncols=True, file=sys.stderr)

    def progress(step: int, total: int, m: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['acc']:.1%}", refresh=False)
        bar.refresh()

    try:
        ref, result = build_reference(cfg, out, ckpt, progress=progress, say=lambda s: tqdm.write(s, file=sys.stderr))
    finally:
        bar.close()
    _print_eval(result)
    click.echo(f"saved to {out}")

