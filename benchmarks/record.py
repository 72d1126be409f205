"""Recording speed of `trace record` (frames per second on 2 cores), split by stage.

    python benchmarks/record.py [--frames N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kernels.procedural import CATALOGUE, render  # noqa: E402
from kernels.procedural.video import video_scenes  # noqa: E402
from kernels.reference.encoders import pooled_exit_features  # noqa: E402
from kernels.reference.store import load_reference  # noqa: E402
from traces.format import read_label_trace  # noqa: E402
from traces.mapping import frequency_rank_mapping  # noqa: E402
from traces.record import RecordSettings, instance_ids, record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    labels = read_label_trace(ROOT / "traces" / "data" / "epic100_val.parquet")
    labels = labels.select_rows(np.arange(args.frames))
    ref = load_reference()
    cmap = frequency_rank_mapping(labels, CATALOGUE.names())
    record(labels.select_rows(np.arange(64)), ref, cmap)  # warm-up

    t0 = time.perf_counter()
    params = video_scenes(cmap.mapping[labels.label], instance_ids(labels), labels.time_s, 0, 1.0)
    t1 = time.perf_counter()
    imgs = render(params, 64)
    t2 = time.perf_counter()
    with torch.no_grad():
        pooled_exit_features(ref.model, imgs, batch=256)
    t3 = time.perf_counter()
    record(labels, ref, cmap, RecordSettings())
    t4 = time.perf_counter()
    n = len(labels)
    print(f"recording {n} frames of the EPIC-KITCHENS-100 label trace, 64x64, reference CNN, {torch.get_num_threads()} threads")
    print(f"{'stage':<28}{'seconds':>9}{'frames/s':>10}")
    for name, dt in [("scene parameters", t1 - t0), ("rendering", t2 - t1), ("model (all blocks)", t3 - t2),
                     ("whole recorder", t4 - t3)]:
        print(f"{name:<28}{dt:>9.2f}{n / dt:>10.0f}")


if __name__ == "__main__":
    main()
