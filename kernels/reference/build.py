"""From nothing to the shipped reference model: train, fit the semantic encoders, evaluate, save."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from kernels.procedural import render_images
from kernels.reference.encoders import fit_encoder, pooled_exit_features
from kernels.reference.heads import fit_heads
from kernels.reference.evaluate import evaluate
from kernels.reference.store import ReferenceModel, save_reference
from kernels.reference.train import TrainConfig, train
from kernels.zoo.refnet import RefNetConfig

# Seeds of the image streams used while building; far away from the small seeds users evaluate with.
CALIBRATION_SEED = 2**41
BUILD_EVAL_SEED = 2**41 + 1


@dataclass(frozen=True)
class BuildConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: RefNetConfig = field(default_factory=RefNetConfig)
    dims: int = 32
    calibration_images: int = 9600  # 40 per class on average
    eval_images: int = 4000

    def with_train(self, **kw) -> "BuildConfig":
        return replace(self, train=replace(self.train, **kw))

    def with_(self, **kw) -> "BuildConfig":
        return replace(self, **kw)


def build_reference(
    cfg: BuildConfig,
    out_dir: Path,
    checkpoint: Path | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    say: Callable[[str], None] = print,
) -> tuple[ReferenceModel, dict]:
    model, log = train(cfg.train, cfg.arch, checkpoint=checkpoint, progress=progress)
    say(f"trained {cfg.train.steps} steps in {log['seconds']:.0f} s")
    torch.set_num_threads(cfg.train.threads)
    images, labels = render_images(CALIBRATION_SEED, cfg.calibration_images, cfg.arch.input_size, strength=cfg.train.strength)
    _, pooled = pooled_exit_features(model, images)
    encoders = {e: fit_encoder(e, pooled[e], labels, cfg.dims, model.num_classes) for e in model.exit_points}
    heads = fit_heads(pooled, labels, model.num_classes)
    meta = {"train": asdict(cfg.train), "train_log": log}
    enc_meta = {"calibration": {"seed": CALIBRATION_SEED, "images": cfg.calibration_images, "strength": cfg.train.strength},
                "projection": "global average pooling, centred PCA, L2 normalisation"}
    ref = ReferenceModel(model, encoders, heads, meta, enc_meta)
    result = evaluate(ref, cfg.eval_images, BUILD_EVAL_SEED, cfg.train.strength)
    ref.meta["evaluation"] = {k: result[k] for k in ("images", "seed", "strength", "top1", "exit_accuracy")}
    save_reference(ref, out_dir)
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
    return ref, result
