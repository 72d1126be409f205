"""Training the reference CNN on freshly rendered procedural images.

Every step renders a new batch (the generator is an endless data set), so there is no over-fitting to a
fixed image set and no data to ship. The image stream depends only on (seed, step), so a run that is
interrupted and resumed from its checkpoint follows exactly the same path.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engram.errors import EngramError
from engram.fileio import atomic_path
from kernels.blockwise import BlockwiseModel
from kernels.procedural import DEFAULT_STRENGTH, render_images
from kernels.zoo.refnet import RefNetConfig, refnet

TRAIN_SEED_BASE = 2**40  # image seed of the training stream: TRAIN_SEED_BASE + run seed (far from user seeds)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1700
    batch: int = 128
    lr: float = 4e-3
    weight_decay: float = 0.02
    warmup: int = 100
    label_smoothing: float = 0.05
    strength: float = DEFAULT_STRENGTH
    seed: int = 0
    threads: int = 2


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig, arch: RefNetConfig) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state = opt.state_dict()
    for pid, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().clone().contiguous().reshape(v.shape)
    meta = {"step": step, "train": asdict(cfg), "arch": arch.to_json()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"engram": json.dumps(meta)})


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, arch: RefNetConfig) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["engram"])
    if meta["train"] != asdict(cfg) or meta["arch"] != arch.to_json():
        raise EngramError("checkpoint was made with other training settings; delete it or use the same options", path=path)
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = opt.state_dict()
    for pid in state["param_groups"][0]["params"] + state["param_groups"][1]["params"]:
        st = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            name = f"opt.{pid}.{key}"
            if name in tensors:
                st[key] = tensors[name]
        if st:
            state["state"][pid] = st
    opt.load_state_dict(state)
    return int(meta["step"])


def train(
    cfg: TrainConfig = TrainConfig(),
    arch: RefNetConfig = RefNetConfig(),
    checkpoint: Path | None = None,
    checkpoint_every: int = 200,
    progress: Callable[[int, int, dict], None] | None = None,
) -> tuple[BlockwiseModel, dict]:
    """Train from scratch (or resume ``checkpoint``); returns the model in eval mode and a log."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = refnet(arch)
    # channels_last makes the depthwise convolutions ~1.6x faster to train on CPU.
    model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(model, cfg)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = _load_checkpoint(checkpoint, model, opt, cfg, arch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t0 = time.perf_counter()
    ema_loss, ema_acc = None, None
    data_seed = TRAIN_SEED_BASE + cfg.seed
    for step in range(start, cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        x, y = render_images(data_seed, cfg.batch, arch.input_size, start=step * cfg.batch, strength=cfg.strength)
        y = torch.from_numpy(y)
        logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((logits.detach().argmax(1) == y).float().mean())
        lv = loss.item()
        ema_loss = lv if ema_loss is None else 0.98 * ema_loss + 0.02 * lv
        ema_acc = acc if ema_acc is None else 0.98 * ema_acc + 0.02 * acc
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_checkpoint(checkpoint, model, opt, step + 1, cfg, arch)
        if progress is not None:
            progress(step + 1, cfg.steps, {"loss": ema_loss, "acc": ema_acc, "lr": lr_at(cfg, step)})
    model = model.to(memory_format=torch.contiguous_format).eval()
    log = {"steps": cfg.steps, "resumed_at": start, "seconds": time.perf_counter() - t0, "final_train_loss": ema_loss, "final_train_acc": ema_acc}
    return model, log


@torch.no_grad()
def evaluate_top1(model: BlockwiseModel, seed: int, n: int, strength: float = DEFAULT_STRENGTH, batch: int = 250) -> float:
    correct = 0
    for i in range(0, n, batch):
        k = min(batch, n - i)
        x, y = render_images(seed, k, model.input_shape[1], start=i, strength=strength)
        correct += int((model(x).argmax(1).numpy() == y).sum())
    return correct / n
