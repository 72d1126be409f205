#!/usr/bin/env python3
"""Kernel and profile benchmarks (issue 3). Prints, on this machine:

1. TVM (tuned, the shipped records) vs PyTorch eager, per block and whole model, for the reference CNN
   (64x64) and MobileNetV2 (224x224): both timed in this one process, interleaved round by round (a torch
   sample then a TVM sample of the same block), medians over the rounds, same number of threads.
   Goal: TVM tuned at least as fast as eager on both models (ratio = eager / TVM >= 1).
2. Profile accuracy, measured with the profiler's own code path: sum of per-block medians vs the measured
   whole model (goal: within 5%), per-block coefficient of variation after trimming (goal: <= 3%).
3. The nn-Meter latency predictor's error on table entries held out from its fit, per phone
   (nn-Meter's claim: 99% within +-10%).
4. Imported/predicted totals against whole-model measurements of the same network: nn-Meter's
   model-latency log (MobileNetV3-small on Pixel 4, whose graph ships with nn-Meter) and ncnn's benchmark
   (MobileNetV2 on Snapdragon 855+ / 888).

    python benchmarks/kernels.py                 # everything (about 10-15 minutes on 2 cores)
    python benchmarks/kernels.py --sections 1,2 --models reference --repeats 20
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MODELS = {"reference": None, "mobilenetv2": 224}


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r)
    Console(highlight=False, soft_wrap=True, width=140).print(t)


def _load(name: str):  # noqa: ANN202
    from profiles.profiler import load_profile_model

    return load_profile_model(name, MODELS.get(name))


# ----------------------------------------------------------------------------------------------------------
# 1. TVM tuned vs PyTorch eager


def tvm_vs_torch(name: str, repeats: int, sample_ms: float, threads: int) -> dict:
    import torch

    import tvm
    from kernels.tvm.compile import compile_model, vms_by_unit
    from kernels.tvm.timing import KernelTimer

    torch.set_num_threads(threads)
    model, _ = _load(name)
    model.eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = compile_model(model)
    for w in caught:
        print(f"warning: {w.message}")
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    units = [*cm.blocks, cm.whole]
    tvm_t, torch_f, xs = {}, {}, {}
    vms = vms_by_unit(units, lambda u: u.vm(dev))
    for u in units:
        x = rng.standard_normal(u.input_shape).astype(np.float32)
        xs[u.name] = torch.from_numpy(x)
        vm = vms[u.name]
        tvm_t[u.name] = KernelTimer(vm, dev, [tvm.runtime.tensor(x, dev)], func=u.function)
        tvm_t[u.name].calibrate(sample_ms)
        torch_f[u.name] = model if u.name == "model" else model.blocks[u.name]

    def torch_sample(fn, x, number: int) -> float:  # noqa: ANN001
        with torch.inference_mode():
            fn(x)  # warm-up run, as TVM's time_evaluator does
            t0 = time.perf_counter()
            for _ in range(number):
                fn(x)
            return (time.perf_counter() - t0) / number * 1e3

    res = {u.name: {"torch": [], "tvm": []} for u in units}
    for r in range(repeats + 2):
        for u in units:
            a = torch_sample(torch_f[u.name], xs[u.name], tvm_t[u.name].number)
            b = tvm_t[u.name].sample_ms()
            if r >= 2:
                res[u.name]["torch"].append(a)
                res[u.name]["tvm"].append(b)
    med = {k: {s: float(np.median(v[s])) for s in v} for k, v in res.items()}
    rows = []
    for u in units:
        m = med[u.name]
        rows.append([u.name, f"{m['torch']:.4f}", f"{m['tvm']:.4f}", f"{m['torch'] / m['tvm']:.2f}x",
                     f"{u.scheduled}/{u.kernels}"])
    sum_t = sum(med[b.name]["torch"] for b in cm.blocks)
    sum_v = sum(med[b.name]["tvm"] for b in cm.blocks)
    rows.append(["sum of blocks", f"{sum_t:.4f}", f"{sum_v:.4f}", f"{sum_t / sum_v:.2f}x", ""])
    _table(f"{name} {model.input_shape[1]}x{model.input_shape[2]}: PyTorch eager vs TVM tuned, median ms over {repeats} "
           f"interleaved rounds, {threads} threads (ratio > 1: TVM faster)",
           ["block", "torch eager ms", "TVM tuned ms", "eager / TVM", "tuned kernels"], rows)
    whole = med["model"]
    slower = [b.name for b in cm.blocks if med[b.name]["tvm"] > med[b.name]["torch"]]
    print(f"{name}: whole model eager/TVM = {whole['torch'] / whole['tvm']:.2f}x "
          f"({'met' if whole['torch'] >= whole['tvm'] else 'NOT met'}: TVM at least as fast as eager); "
          f"blocks where TVM is slower: {', '.join(slower) or 'none'}")
    return {"whole_ratio": whole["torch"] / whole["tvm"], "compiled": cm}


# ----------------------------------------------------------------------------------------------------------
# 2. Profile accuracy


def profile_accuracy(name: str, repeats: int, sample_ms: float, trim: float, run_trim: float,  # noqa: ANN001
                     context_sample_ms: float, threads: int, attempts: int = 3, compiled=None) -> None:
    from kernels.tvm.compile import compile_model
    from kernels.tvm.measure import measure_model
    from kernels.tvm.rpc import open_session
    from kernels.tvm.timing import TimingConfig, latency_stats

    model, _ = _load(name)
    if compiled is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = compile_model(model)
    cfg = TimingConfig(warmup=5, repeats=repeats, sample_ms=sample_ms, trim=trim, run_trim=run_trim,
                       context_sample_ms=context_sample_ms, attempts=attempts)
    with open_session("local", compiled.target) as s:
        m = measure_model(compiled, s, cfg, exits=(), progress=False)
    stats = {b: latency_stats(v, trim) for b, v in m.blocks.items()}
    whole = latency_stats(m.whole, trim)
    raw_cv = {b: latency_stats(v, 0.0)["cv"] for b, v in m.blocks.items()}
    iso = {b: latency_stats(v, trim) for b, v in (m.isolated or {}).items()}
    total = sum(s["median_ms"] for s in stats.values())
    rows = [[b, f"{s['median_ms']:.4f}", f"{s['p90_ms']:.4f}", f"{raw_cv[b]:.1%}", f"{s['cv']:.1%}",
             "ok" if s["cv"] <= 0.03 else "HIGH", f"{iso[b]['median_ms']:.4f}" if b in iso else "",
             f"{iso[b]['cv']:.1%}" if b in iso else ""] for b, s in stats.items()]
    total_iso = sum(s["median_ms"] for s in iso.values())
    rows.append(["sum of blocks", f"{total:.4f}", "", "", "", "", f"{total_iso:.4f}" if iso else "", ""])
    rows.append(["whole model", f"{whole['median_ms']:.4f}", f"{whole['p90_ms']:.4f}",
                 f"{latency_stats(m.whole, 0.0)['cv']:.1%}", f"{whole['cv']:.1%}", "", "", ""])
    timing = "in context" if m.in_context else "isolated"
    tries = ", ".join(f"{v:.1%}" for v in m.attempt_worst_cv)
    print(f"{name}: {len(m.attempt_worst_cv)} attempt(s) of {repeats} rounds (at most {attempts}, while the worst "
          f"trimmed CV is above 3%), worst CV per attempt {tries}; kept attempt {m.kept_attempt + 1}")
    _table(f"{name}: profile accuracy ({threads} TVM threads, {repeats} rounds, ~{sample_ms} ms per sample (in context ~{cfg.context_sample_ms} ms), "
           f"slowest {run_trim:.0%} of the runs in a sample and slowest {trim:.0%} of the samples trimmed; "
           f"blocks {timing}, as the profile records them; isolated = time_evaluator, for comparison)",
           ["block", "median ms", "p90 ms", "CV raw", "CV trimmed", "<= 3%", "isolated median", "isolated CV"], rows)
    dev = total / whole["median_ms"] - 1
    worst = max(s["cv"] for s in stats.values())
    print(f"{name}: sum of block medians ({timing}) {total:.4f} ms vs whole model {whole['median_ms']:.4f} ms: {dev:+.1%} "
          f"({'met' if abs(dev) <= 0.05 else 'NOT met'}: within 5%); worst per-block CV after trimming {worst:.1%} "
          f"({'met' if worst <= 0.03 else 'NOT met'}: <= 3%)")
    if iso:
        print(f"{name}: isolated blocks sum to {total_iso:.4f} ms ({total_iso / whole['median_ms'] - 1:+.1%}); "
              f"a whole pass of the blocks in context {latency_stats(m.chain, trim)['median_ms']:.4f} ms")
    # Each round's samples were taken within a few milliseconds of each other, so a slow phase of the machine
    # scales them together: a block's share of its round's total shows how stable the split between blocks is,
    # apart from how fast the machine ran that round.
    rounds = np.array([m.blocks[b] for b in stats])  # (blocks, rounds)
    shares = rounds / rounds.sum(axis=0, keepdims=True)
    share_cv = shares.std(axis=1, ddof=1) / shares.mean(axis=1)
    print(f"{name}: each block's share of its round's total varies by {share_cv.min():.1%}-{share_cv.max():.1%} (CV), "
          f"against {min(raw_cv.values()):.1%}-{max(raw_cv.values()):.1%} for the blocks' own times")
    shipped = ROOT / "profiles" / "data" / f"{name}_local.json"
    if shipped.is_file():
        from profiles.format import read_profile

        p = read_profile(shipped)
        s = sum(p.latency_ms(b) for b in p.block_names)
        w = p.model_latency_ms()
        cvs = max(p.stats(b).cv or 0 for b in p.block_names)
        print(f"{name}: shipped profile {shipped.name}: sum {s:.4f} ms vs whole {w:.4f} ms: {s / w - 1:+.1%}; "
              f"worst CV {cvs:.1%}")


# ----------------------------------------------------------------------------------------------------------
# 3. Predictor held-out error


def predictor_error(folds: int) -> None:
    from profiles.nnmeter import DATA, PHONES, read_lut
    from profiles.predictor import cross_validate

    rows = []
    for ph in sorted(PHONES):
        cv = cross_validate(read_lut(DATA / PHONES[ph].lut_file), folds=folds)
        for k, e in cv.items():
            rows.append([f"{ph}: {e.name}", str(e.n), f"{e.within_10:.1%}", f"{e.within_5:.1%}",
                         f"{e.median_abs:.1%}", f"{e.p99_abs:.1%}", f"{e.max_abs:.1%}"])
        ok = cv["mbconv"].within_10 >= 0.99
        print(f"{ph}: {cv['mbconv'].within_10:.1%} of held-out MBConv entries within +-10% "
              f"({'met' if ok else 'NOT met'}: nn-Meter's 99%)")
    _table("nn-Meter latency predictor: error on table entries held out from its fit",
           ["phone: held-out set", "n", "within 10%", "within 5%", "median |err|", "p99 |err|", "max |err|"], rows)


# ----------------------------------------------------------------------------------------------------------
# 4. Totals vs whole-model tables


def totals_check() -> None:
    from profiles.nnmeter import DATA, PHONES, graph_ops, phone_block_latencies, read_lut
    from profiles.predictor import LatencyPredictor

    preds = {ph: LatencyPredictor.fit(read_lut(DATA / PHONES[ph].lut_file), ph) for ph in PHONES}
    rows = []
    # nn-Meter: MobileNetV3-small (variant 0, graph shipped) on Pixel 4, TFLite 2.1
    meas = {}
    with open(DATA / "checks" / "model_latency_pixel4.csv", newline="") as fh:
        for r in csv.reader(fh):
            meas[r[1]] = float(r[2])
    ops = graph_ops(DATA / "checks" / "mobilenetv3small_0.json")
    vals = [preds["pixel4"].lookup(o) for o in ops]
    total = sum(v for v, _ in vals)
    n_meas = sum(1 for _, m in vals if m)
    rows.append(["MobileNetV3-small (nn-Meter variant 0), Pixel 4 CPU",
                 f"{total:.2f} ({n_meas}/{len(ops)} ops from the table)", "nn-Meter model log, TFLite 2.1, 2021",
                 f"{meas['mobilenetv3small_0']:.2f}", f"{total / meas['mobilenetv3small_0']:.2f}"])
    # ncnn: MobileNetV2 224 on SD855+ (~Pixel 4) and SD888 (Xiaomi 11)
    model, _ = _load("mobilenetv2")
    ncnn = []
    with open(ROOT / "profiles" / "data" / "ncnn_benchmark" / "benchmark_sd855p_sd888.csv", newline="") as fh:
        ncnn = list(csv.DictReader(fh))
    for ph, soc in (("pixel4", "Snapdragon 855+"), ("xiaomi11", "Snapdragon 888")):
        lat = phone_block_latencies(model, preds[ph])
        tot = sum(v[0] for v in lat.values())
        n_meas = sum(1 for v in lat.values() if v[1] == "imported")
        for r in ncnn:
            if soc in r["device"] and r["model"] == "mobilenet_v2" and r["gpu_device"] == "-1":
                rows.append([f"MobileNetV2 224 (zoo), {PHONES[ph].name} CPU",
                             f"{tot:.2f} ({n_meas}/{len(lat)} blocks from the table)",
                             f"ncnn {soc}, {r['num_threads']} thread(s), powersave {r['powersave']}",
                             f"{float(r['avg_ms']):.2f}", f"{tot / float(r['avg_ms']):.2f}"])
    _table("Imported/predicted totals vs whole-model measurements of the same network (ms)",
           ["network, device", "ours (sum of blocks)", "reference measurement", "measured", "ours / measured"], rows)
    print("Caveats: nn-Meter's block tables (ln_v3, 2022) and its model-latency logs (TFLite 2.1, 2021) come from "
          "different campaigns and TFLite versions; ncnn is another runtime (and the SD888 rows use 8 threads, the "
          "tables one). MobileNetV2's relu6 blocks with up to 320 channels are outside the tables (hard-swish, <= 48 "
          "channels), so all its blocks are predicted.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="reference,mobilenetv2")
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--sample-ms", type=float, default=4.0)
    ap.add_argument("--trim", type=float, default=0.2, help="slowest fraction of the samples dropped")
    ap.add_argument("--run-trim", type=float, default=0.25, help="slowest fraction of the runs in a sample dropped")
    ap.add_argument("--context-sample-ms", type=float, default=16.0, help="target duration of an in-context sample")
    ap.add_argument("--attempts", type=int, default=3,
                    help="take the rounds again, up to this many times, while a block's trimmed CV is above 3%% (as the profiler does)")
    ap.add_argument("--threads", type=int, default=None, help="TVM's and torch's threads (default: all cores)")
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args(argv)
    from kernels.tvm.threads import use_threads

    a.threads = use_threads(a.threads)
    sections = {s.strip() for s in a.sections.split(",")}
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    t0 = time.time()
    compiled = {}
    if "1" in sections:
        for m in models:
            compiled[m] = tvm_vs_torch(m, a.repeats, a.sample_ms, a.threads)["compiled"]
    if "2" in sections:
        for m in models:
            profile_accuracy(m, a.repeats, a.sample_ms, a.trim, a.run_trim, a.context_sample_ms, a.threads,
                             a.attempts, compiled.get(m))
    if "3" in sections:
        predictor_error(a.folds)
    if "4" in sections:
        totals_check()
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
