"""Cost of one policy-search trial (issue 6): seconds per trial of `run_sim.py sweep` on the shipped trace and
profile, split into fitting the exit metric on the calibration trace and simulating the tuning videos.

    python benchmarks/sweep.py [--trials 24] [--seed 0] [--threads 1] [--study out/sweep/sweep.json]

The trials are points of the search space drawn at random (seeded), or with ``--study`` trials of a stored sweep
taken evenly from its list (the mix a search really evaluates: it soon favours the logistic metrics, which cost
the most), each evaluated as a sweep worker evaluates it (``simulator.sweep.evaluate``) on the sweep's default
tuning split. The main job runs ``engram.main_job.MAIN_TRIALS`` trials on 2 worker processes and must stay under
5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24, help="Random points of the space to evaluate.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (1: as a sweep worker on one core).")
    ap.add_argument("--study", type=Path, default=None, help="A sweep.json whose trials to time instead of random points.")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np
    import optuna

    import simulator.run as run
    from engram.main_job import MAIN_TRIALS
    from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE, load_inputs
    from simulator.sweep import Context, SweepSettings, evaluate, split_videos
    from simulator.sweep_space import decode, suggest

    device, workload, calibration = load_inputs(DEFAULT_PROFILE, DEFAULT_TRACE, DEFAULT_CALIBRATION)
    settings = SweepSettings()
    tune_names, _ = split_videos(workload, settings.holdout, settings.seed)
    ctx = Context(device, workload.select_videos(tune_names), calibration, settings)
    if args.study is not None:
        import json

        stored = [t["params"] for t in json.loads(args.study.read_text())["trials"]]
        points = [stored[int(k)] for k in np.linspace(0, len(stored) - 1, min(args.trials, len(stored)))]
        source = f"{len(points)} trials of {args.study}"
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
        points = []
        for _ in range(args.trials):
            t = study.ask()
            points.append(suggest(t, device.exits))
            study.tell(t, 0.0)
        source = f"{len(points)} random points"

    # Time the calibration fit inside each evaluation by wrapping the function the sweep's resolve() calls.
    fit_s: list[float] = []
    real_fit = run.fit_calibration

    def timed_fit(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        out = real_fit(*a, **k)
        fit_s.append(time.perf_counter() - t0)
        return out

    run.fit_calibration = timed_fit
    evaluate(ctx, points[0])  # warm-up
    fit_s.clear()
    total, kinds = [], []
    for p in points:
        t0 = time.perf_counter()
        evaluate(ctx, p)
        total.append(time.perf_counter() - t0)
        kinds.append(decode(p, device.exits).metric.kind)
    total_a = np.array(total)
    logistic = np.array([k in ("calibrated", "temporal") for k in kinds])
    print(f"trace {DEFAULT_TRACE.name}: {len(ctx.tune)} tuning frames; calibration {DEFAULT_CALIBRATION.name} "
          f"({len(calibration)} frames); {source}, BLAS threads {args.threads}\n")
    print(f"{'points':<34} {'n':>3} {'s/trial':>8} {'fit s':>7} {'simulate s':>11}")
    fit_a = np.zeros(len(points))
    fit_a[logistic] = fit_s
    for name, sel in (("all", np.ones(len(points), bool)), ("calibrated or temporal metric", logistic),
                      ("cosine or margin metric", ~logistic)):
        if sel.any():
            print(f"{name:<34} {int(sel.sum()):>3} {total_a[sel].mean():>8.2f} {fit_a[sel].mean():>7.2f} "
                  f"{(total_a[sel] - fit_a[sel]).mean():>11.2f}")
    if args.study is not None:
        print(f"\nat this mix, the main job's {MAIN_TRIALS} trials on 2 workers: about "
              f"{MAIN_TRIALS * total_a.mean() / 2 / 60:.1f} min of search (plus the held-out replays and the report)")


if __name__ == "__main__":
    main()
