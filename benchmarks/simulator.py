"""Replay speed of the simulator: frames per second on one core, per preset, by trace length and cache size.

    python benchmarks/simulator.py [--repeats 3] [--lengths 1,4,16] [--threads 1]

Times one run of a policy (engine decisions, the SimPy event loop and the metrics) on the shipped recorded
trace against the shipped local profile; calibration and the no-cache/oracle comparison runs that
``simulate`` adds are set up once, outside the timing. BLAS is limited to ``--threads`` threads (default 1)
so that the numbers are per core. The target (issue 5) is 50,000 frames/s per core for ``smtm``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _limit_threads(n: int) -> None:
    # Must happen before numpy is imported for the BLAS pools to honour it.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="Timed runs per row (the median is reported).")
    ap.add_argument("--lengths", default="1,4,16", help="Trace lengths, in copies of the shipped trace.")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (1: frames per second per core).")
    args = ap.parse_args()
    _limit_threads(args.threads)

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import numpy as np

    from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE, load_inputs
    from simulator.policy import MetricConfig, check_policy
    from simulator.presets import PRESETS, preset
    from simulator.run import resolve, run_once

    device, workload, calibration = load_inputs(DEFAULT_PROFILE, DEFAULT_TRACE, DEFAULT_CALIBRATION)

    def fps(wl, policy) -> tuple[float, dict]:
        pol, enabled = resolve(policy, wl, device, calibration)
        check_policy(pol, device.exits, tuple(device.processors))
        run_once(wl.take(np.arange(min(len(wl), 500))), device, pol, enabled)  # warm-up
        times, res = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = run_once(wl, device, pol, enabled)
            times.append(time.perf_counter() - t0)
        return len(wl) / float(np.median(times)), res.metrics

    rows = []
    print(f"trace: {DEFAULT_TRACE.name} ({len(workload)} frames), profile: {DEFAULT_PROFILE.name}, "
          f"BLAS threads: {args.threads}, median of {args.repeats}\n")
    print("## per preset (shipped trace)\n")
    print(f"{'policy':<12} {'frames/s':>10} {'us/frame':>9} ")
    for name in PRESETS:
        f, m = fps(workload, preset(name, device.exits))
        rows.append((name, f))
        print(f"{name:<12} {f:>10,.0f} {1e6 / f:>9.2f}")
    # The temporal metric decides chunks by guess and verify (a few passes per chunk).
    p = preset("smtm", device.exits)
    p = p.model_copy(update={"metric": MetricConfig(kind="temporal", thresholds={e: 0.92 for e in device.exits})})
    f, m = fps(workload, p)
    print(f"{'temporal':<12} {f:>10,.0f} {1e6 / f:>9.2f}   (smtm with the temporal metric at 0.92)")
    # The input level compares descriptors frame by frame, in front of the chunked cache.
    from simulator.policy import InputReuseConfig

    p = preset("smtm", device.exits).model_copy(update={"input_reuse": InputReuseConfig(similarity=0.95, max_run=8)})
    f, m = fps(workload, p)
    print(f"{'input level':<12} {f:>10,.0f} {1e6 / f:>9.2f}   (smtm behind the input level at 0.95, runs of up to 8: "
          f"{m['hit_rate']['input']:.0%} of frames answered there)")

    print("\n## smtm by trace length (copies of the shipped trace)\n")
    print(f"{'frames':>8} {'frames/s':>10}")
    for k in (int(x) for x in args.lengths.split(",")):
        wl = workload.take(np.tile(np.arange(len(workload)), k))
        f, _ = fps(wl, preset("smtm", device.exits))
        print(f"{len(wl):>8} {f:>10,.0f}")

    print("\n## smtm by cache size (hot / cold classes)\n")
    print(f"{'hot':>5} {'cold':>5} {'frames/s':>10} {'hit rate':>9} {'cache KiB':>10}")
    for hot, cold in ((1, 7), (4, 28), (16, 112), (64, 448), (256, 768)):
        p = preset("smtm", device.exits)
        p = p.model_copy(update={"cache": p.cache.model_copy(update={"hot_size": hot, "cold_size": cold})})
        f, m = fps(workload, p)
        hits = m["hit_rate"]["hot"] + m["hit_rate"]["cold"]
        print(f"{hot:>5} {cold:>5} {f:>10,.0f} {hits:>9.1%} {m['cache_bytes'] / 1024:>10.1f}")


if __name__ == "__main__":
    main()
