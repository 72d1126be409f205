"""Procedural rendering speed (images per second) by resolution and nuisance strength.

Target (issue 2): at least 1,000 images/s at 64x64 on 2 cores. Also prints the reference CNN's training
throughput (rendering + forward + backward), which bounds how long `reference train` takes.

    python benchmarks/render.py [--images N] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kernels.procedural import render_images  # noqa: E402


def images_per_second(n: int, size: int, strength: float, repeats: int) -> float:
    rates = []
    for r in range(repeats):
        t = time.perf_counter()
        render_images(100 + r, n, size, strength=strength)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def training_images_per_second(steps: int = 6, batch: int = 128) -> float:
    from kernels.reference.train import TrainConfig, train

    times: list[float] = []
    last = [time.perf_counter()]

    def tick(step, total, m):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    train(TrainConfig(steps=steps, batch=batch, warmup=1), progress=tick)
    return batch / statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    render_images(0, 64, 64)  # warm-up (noise bank, allocator)
    print(f"procedural rendering, {args.threads} threads, median of {args.repeats} runs of {args.images} images")
    print(f"{'size':>8} {'strength':>9} {'images/s':>10} {'target':>8}")
    for size in (32, 64, 128):
        for strength in (0.5, 1.0):
            rate = images_per_second(args.images if size <= 64 else args.images // 4, size, strength, args.repeats)
            target = ">=1000" if size == 64 else ""
            flag = "" if size != 64 else ("  met" if rate >= 1000 else "  NOT MET")
            print(f"{size:>5}x{size:<2} {strength:>9.1f} {rate:>10.0f} {target:>8}{flag}")
    rate = training_images_per_second()
    print(f"reference CNN training throughput (render + forward + backward, batch 128): {rate:.0f} images/s")


if __name__ == "__main__":
    main()
