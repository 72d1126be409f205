"""Command line of the runtime room: ``export`` (a tuned policy -> a bundle the runtime runs)."""

from __future__ import annotations

from pathlib import Path

import click

CHOSEN_POLICY = "chosen_policy.json"  # what a sweep leaves in its output directory
SWEEP_RESULT = "sweep.json"  # its record, with the inputs it ran on


def _policy_from_sweep(sweep_dir: Path) -> str:
    from engram.errors import EngramError

    if not sweep_dir.exists():
        raise EngramError("sweep directory not found", path=sweep_dir)
    if not sweep_dir.is_dir():
        raise EngramError("not a directory (give the sweep's output directory)", path=sweep_dir)
    chosen = sweep_dir / CHOSEN_POLICY
    if not chosen.is_file():
        if (sweep_dir / SWEEP_RESULT).is_file():
            raise EngramError(f"the sweep chose no policy (no {CHOSEN_POLICY}: no trial met its constraints)",
                              path=sweep_dir)
        raise EngramError(f"no {CHOSEN_POLICY} here: run a sweep with --out {sweep_dir} first, or give --policy",
                          path=sweep_dir)
    return str(chosen)


def _sweep_inputs(sweep_dir: Path) -> dict[str, Path]:
    """The profile, trace and calibration trace a sweep ran on (from its sweep.json), checked unchanged."""
    import json

    from engram.errors import EngramError
    from engram.fingerprint import sha256_file

    path = sweep_dir / SWEEP_RESULT
    if not path.is_file():
        return {}
    try:
        inputs = json.loads(path.read_text(encoding="utf-8")).get("inputs") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return {}
    out = {}
    for key in ("profile", "trace", "calibration"):
        if not isinstance(inputs.get(key), str):
            continue
        p = Path(inputs[key])
        want = (inputs.get("sha256") or {}).get(key)
        if not p.is_file():
            raise EngramError(f"the sweep's {key} {p} is gone; give --{key}", path=path, field=f"inputs.{key}")
        if want and sha256_file(p) != want:
            raise EngramError(f"the sweep's {key} {p} changed since the sweep; give --{key} to export anyway",
                              path=path, field=f"inputs.sha256.{key}")
        out[key] = p
    return out


def _defaults():
    from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE

    return DEFAULT_PROFILE, DEFAULT_TRACE, DEFAULT_CALIBRATION


_DP, _DT, _DC = _defaults()


@click.command("export")
@click.option("--policy", default=None,
              help="A preset (smtm, no-cache) or a policy JSON file. Give this or --from.")
@click.option("--from", "from_dir", type=click.Path(path_type=Path), default=None,
              help=f"A sweep's output directory: exports its {CHOSEN_POLICY}, with the profile and traces the sweep "
              f"ran on (from its {SWEEP_RESULT}) unless given.")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), default=_DP,
              show_default="this machine's profile of the reference CNN", help="Device profile the policy is tuned for.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=_DT,
              show_default="the shipped EPIC-KITCHENS-100 recorded trace",
              help="Recorded trace the predicted metrics are simulated on.")
@click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False, path_type=Path), default=_DC,
              show_default="the shipped calibration trace",
              help="Recorded trace (same model, other videos) the layer-aware exit metric is fitted on.")
@click.option("--encoders", "encoders_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="the shipped reference CNN's",
              help="Semantic encoders of the profile's model (e.g. REC.encoders.safetensors from `trace record --frames`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write.")
def export_cmd(policy, from_dir, profile_path, trace_path, calibration_path, encoders_path, out) -> None:
    """Export a policy as a bundle for the on-device runtime.

    The policy is resolved exactly as `simulate` resolves it (the calibrated exit metric is fitted on the
    calibration trace) and simulated on the trace for the predicted metrics; the bundle holds the policy as
    run, the semantic encoders of its exit points, the model fingerprint, the profile and the predictions.
    """
    from runtime.bundle import check_output, check_runnable, export_bundle
    from simulator.cli import load_inputs, resolve_policy
    from simulator.run import simulate

    if (policy is None) == (from_dir is None):
        raise click.UsageError("give exactly one of --policy and --from")
    if from_dir is not None:
        policy = _policy_from_sweep(from_dir)
        # The profile (and traces) the sweep tuned on, unless given: a bundle names the profile it was tuned for.
        ctx = click.get_current_context()
        paths = {"profile": profile_path, "trace": trace_path, "calibration": calibration_path}
        for key, value in _sweep_inputs(from_dir).items():
            if ctx.get_parameter_source(f"{key}_path") == click.core.ParameterSource.DEFAULT:
                paths[key] = value
        profile_path, trace_path, calibration_path = paths["profile"], paths["trace"], paths["calibration"]
    check_output(out)
    device, workload, calibration = load_inputs(profile_path, trace_path, calibration_path)
    pol, where = resolve_policy(policy, device)
    check_runnable(pol, where)  # before the simulation, which is the slow part
    result = simulate(workload, device, pol, calibration=calibration, where=where)
    path = export_bundle(result.policy, profile_path, out, result.metrics, calibration_path,
                         trace_path=trace_path, encoders_path=encoders_path)
    m = result.metrics
    click.echo(f"wrote {path}: policy {result.policy.name} ({result.policy.kind}), {len(result.enabled)} exit points; "
               f"predicted on {Path(trace_path).name}: mean {m['mean_latency_ms']:.3f} ms, speed-up "
               f"{m['speedup']:.2f}x, accuracy {m['accuracy']:.2%}")


# ----------------------------------------------------------------------------------------------------------
# validate: the simulator's prediction against the runtime's measurement, same frames, same device
# ----------------------------------------------------------------------------------------------------------


def _validate_frames(labels_path: Path, mapping: str, seed: int, videos: str | None, max_frames: int):
    """The label trace's frames to run (first ``max_frames`` of the chosen videos) and its class mapping, chosen as
    `trace record --trace` chooses them (the rank mapping over the whole label trace)."""

    from kernels.procedural import CATALOGUE
    from traces.format import RecordedTrace, read_trace
    from traces.mapping import file_mapping, frequency_rank_mapping

    whole = read_trace(labels_path)
    labels = whole.labels if isinstance(whole, RecordedTrace) else whole
    names = CATALOGUE.names()
    cmap = frequency_rank_mapping(labels, names, seed) if mapping == "rank" else file_mapping(Path(mapping), labels, names)
    wanted = [v.strip() for v in videos.split(",") if v.strip()] if videos else None
    return labels.pick(wanted, max_frames, labels_path, "run"), cmap


def _interleaved_runs(runtimes, frames, times, new_video, chunk: int, between=None):
    """Run the same frames through several runtimes, ``chunk`` frames at a time each in turn (so that a change in
    the machine's load affects them alike), calling ``between()`` after each turn; one RunLog per runtime."""
    import numpy as np

    from runtime.engine import RunLog

    logs: list[list] = [[] for _ in runtimes]
    for a in range(0, len(frames), chunk):
        b = min(len(frames), a + chunk)
        for k, rt in enumerate(runtimes):
            logs[k].append(rt.run(frames[a:b], times[a:b], new_video[a:b]))
        if between is not None:
            between()
    out = []
    for parts in logs:
        first = parts[0]
        cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in
               ("exit_index", "answer", "level", "latency_ms", "block_ms", "lookup_ms", "update_ms", "entries")}
        out.append(RunLog(first.enabled, first.blocks, **cat, extra=parts[-1].extra))
    return out


def _repeated_runs(runtimes, frames, times, new_video, chunk: int, passes: int, between=None):
    """:func:`_interleaved_runs` ``passes`` times, every runtime starting each pass with an empty cache; one RunLog
    per runtime whose decisions are the first pass's and whose timings are each frame's mean over the passes, and
    per runtime the passes' mean latencies and the share of frames every pass decided alike."""
    import numpy as np

    from runtime.engine import RunLog

    runs = []
    for _ in range(passes):
        for rt in runtimes:
            rt.reset()
        runs.append(_interleaved_runs(runtimes, frames, times, new_video, chunk, between))
    out, pass_means, agree = [], [], []
    for k in range(len(runtimes)):
        logs = [r[k] for r in runs]
        first = logs[0]
        same = np.ones(len(first), dtype=bool)
        for g in logs[1:]:
            same &= (g.exit_index == first.exit_index) & (g.answer == first.answer)
        mean = {f: np.mean([getattr(g, f) for g in logs], axis=0) for f in ("latency_ms", "block_ms", "lookup_ms", "update_ms")}
        out.append(RunLog(first.enabled, first.blocks, first.exit_index, first.answer, first.level, **mean,
                          entries=first.entries, extra=logs[-1].extra))
        pass_means.append([float(np.mean(g.latency_ms)) for g in logs])
        agree.append(float(np.mean(same)) if len(first) else 1.0)
    return out, pass_means, agree


def measured_components(log) -> dict[str, float]:  # noqa: ANN001
    """Mean per frame of the runtime's blocks (the calls, with their dispatch), lookups (read, encode and search at
    every exit tried), cache writes (an update after a miss, the bookkeeping of a hit) and the rest of the frame
    (copy-in, the decider's per-frame start, the answer)."""
    import numpy as np

    blocks = float(np.mean(log.block_ms.sum(axis=1)))
    lookups, updates = float(np.mean(log.lookup_ms)), float(np.mean(log.update_ms))
    return {"blocks": blocks, "lookups": lookups, "updates": updates,
            "frame": float(np.mean(log.latency_ms)) - blocks - lookups - updates}


def ran_block_means(log) -> dict[str, float]:  # noqa: ANN001
    """Each block's mean call time over the frames that ran it (a block the policy never reached is left out)."""
    ran = log.block_ms > 0
    return {b: float(log.block_ms[ran[:, j], j].mean()) for j, b in enumerate(log.blocks) if ran[:, j].any()}


def predicted_components(engine, frame_ms: float) -> dict[str, float]:  # noqa: ANN001
    """The same parts as the simulator charged them: blocks with their dispatch, lookups with the temporal metric's
    drift and the input level's probe, updates or hits, and the profile's per-frame overhead ``frame_ms`` (charged
    with the first block of every frame that runs one: not with a frame the input level answers)."""
    import numpy as np

    from simulator.engines import INPUT

    frame = frame_ms * float(np.mean(engine.exit_pos != INPUT)) if len(engine.exit_pos) else 0.0
    return {"blocks": float(np.mean(engine.compute_ms)) - frame, "lookups": float(np.mean(engine.lookup_ms)),
            "updates": float(np.mean(engine.update_ms)), "frame": frame}


def validation_report(sim, plain_sim, log, plain_log, true_class) -> dict:
    """Predicted against measured (one JSON-able dict): mean and p99 latency, accuracy, exit histogram, speed-up."""
    import numpy as np

    from simulator.engines import FULL as SIM_FULL

    p, pp = sim.metrics, plain_sim.metrics
    m, mp = log.summary(true_class), plain_log.summary(true_class)
    eng = sim.engine
    sim_exit = np.where(eng.exit_pos == SIM_FULL, -1, eng.exit_pos)
    same_exit = sim_exit == log.exit_index
    same = same_exit & (np.asarray(eng.answer) == log.answer)
    ratio = lambda a, b: a / b - 1.0 if b else float("nan")  # noqa: E731
    return {
        "frames": int(len(log)),
        "policy": p["policy"], "kind": p["kind"],
        "predicted_mean_ms": p["mean_latency_ms"], "measured_mean_ms": m["mean_latency_ms"],
        "latency_error": ratio(m["mean_latency_ms"], p["mean_latency_ms"]),
        "predicted_p50_ms": p["p50_latency_ms"], "measured_p50_ms": m["p50_latency_ms"],
        "predicted_p99_ms": p["p99_latency_ms"], "measured_p99_ms": m["p99_latency_ms"],
        "p99_error": ratio(m["p99_latency_ms"], p["p99_latency_ms"]),
        "predicted_no_cache_mean_ms": pp["mean_latency_ms"], "measured_no_cache_mean_ms": mp["mean_latency_ms"],
        "no_cache_latency_error": ratio(mp["mean_latency_ms"], pp["mean_latency_ms"]),
        "predicted_no_cache_p50_ms": pp["p50_latency_ms"], "measured_no_cache_p50_ms": mp["p50_latency_ms"],
        "measured_no_cache_mean_block_ms": mp["mean_block_ms"],
        "predicted_speedup": pp["mean_latency_ms"] / p["mean_latency_ms"] if p["mean_latency_ms"] else 0.0,
        "measured_speedup": mp["mean_latency_ms"] / m["mean_latency_ms"] if m["mean_latency_ms"] else 0.0,
        "predicted_accuracy": p["accuracy"], "measured_accuracy": m["accuracy"],
        "accuracy_diff_pt": (m["accuracy"] - p["accuracy"]) * 100.0,
        "predicted_no_cache_accuracy": pp["accuracy"], "measured_no_cache_accuracy": mp["accuracy"],
        "predicted_exit_histogram": dict(p["exit_histogram"]), "measured_exit_histogram": dict(m["exit_histogram"]),
        "decisions_agree": float(np.mean(same)) if len(log) else 1.0,
        "exits_agree": float(np.mean(same_exit)) if len(log) else 1.0,
        "measured_mean_block_ms": m["mean_block_ms"], "measured_mean_lookup_ms": m["mean_lookup_ms"],
        "measured_mean_update_ms": m["mean_update_ms"],
        "predicted_mean_lookup_ms": float(np.mean(eng.lookup_ms)), "predicted_mean_update_ms": float(np.mean(eng.update_ms)),
    }


def _format_validation(r: dict) -> str:
    hist_p, hist_m = r["predicted_exit_histogram"], r["measured_exit_histogram"]
    rows = [
        ("mean latency (ms)", f"{r['predicted_mean_ms']:.3f}", f"{r['measured_mean_ms']:.3f}", f"{r['latency_error']:+.1%}"),
        ("p99 latency (ms)", f"{r['predicted_p99_ms']:.3f}", f"{r['measured_p99_ms']:.3f}", f"{r['p99_error']:+.1%}"),
        ("no-cache mean (ms)", f"{r['predicted_no_cache_mean_ms']:.3f}", f"{r['measured_no_cache_mean_ms']:.3f}",
         f"{r['no_cache_latency_error']:+.1%}"),
        ("speed-up", f"{r['predicted_speedup']:.2f}x", f"{r['measured_speedup']:.2f}x",
         f"{r['measured_speedup'] / r['predicted_speedup'] - 1:+.1%}" if r["predicted_speedup"] else "-"),
        ("accuracy", f"{r['predicted_accuracy']:.2%}", f"{r['measured_accuracy']:.2%}", f"{r['accuracy_diff_pt']:+.2f} pt"),
        *((f"exit {k}", str(hist_p.get(k, 0)), str(hist_m.get(k, 0)), f"{hist_m.get(k, 0) - hist_p.get(k, 0):+d}")
          for k in dict.fromkeys([*hist_p, *hist_m])),
    ]
    head = ("", "predicted", "measured", "error")
    w = [max(len(x[k]) for x in (head, *rows)) for k in range(4)]
    line = lambda c: "  ".join(s.ljust(w[0]) if k == 0 else s.rjust(w[k]) for k, s in enumerate(c))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * x for x in w)), *(line(x) for x in rows),
                      f"decisions (exit point and answer) agree on {r['decisions_agree']:.2%} of the frames",
                      *([f"{r['passes']} passes over the frames (timings averaged per frame; every pass decided alike on "
                         f"{r['passes_agree']:.2%} of the frames): measured mean per pass "
                         + ", ".join(f"{v:.3f}" for v in r["measured_mean_ms_passes"]) + " ms"
                         + (" (at the current speed " + ", ".join(f"{v:+.1%}" for v in r["latency_error_now_passes"]) + ")"
                            if "latency_error_now_passes" in r else "")] if r.get("passes", 1) > 1 else []),
                      *([f"TVM threads: {r['threads']} (the profile's: {r['profile_threads'] or 'not recorded'})"]
                        if r.get("threads") else []),
                      *([f"kernels now {r['kernels_now_ms']:.3f} ms against {r['kernels_profiled_ms']:.3f} ms profiled "
                         f"({r['kernel_drift']:+.1%}): the machine's speed now, not the cost model",
                         f"with each part priced as it ran during the runs the prediction is {r['predicted_now_mean_ms']:.3f} ms "
                         f"({r['latency_error_now']:+.1%}); no cache {r['predicted_now_no_cache_mean_ms']:.3f} ms "
                         f"({r['no_cache_latency_error_now']:+.1%}, its own runs' prices: a check of the accounting)"]
                        if "kernel_drift" in r else []),
                      *([f"the runtime's per-frame overhead now {r['frame_now_ms']:.4f} ms against {r['frame_profiled_ms']:.4f} ms "
                         "profiled"] if "frame_now_ms" in r else []),
                      *(["per frame, measured against predicted at the current speed: " + ", ".join(
                          f"{k} {r['components_ms']['measured'][k]:.4f} / {v:.4f} ms"
                          for k, v in r["components_ms"]["predicted_now"].items())
                          + (f" (of the blocks, {r['predicted_now_cold_ms']:.4f} ms cold and "
                             f"{r['predicted_now_after_lookup_ms']:.4f} ms after lookups)"
                             if r.get("predicted_now_cold_ms") or r.get("predicted_now_after_lookup_ms") else "")]
                        if "components_ms" in r else []),
                      *([f"the runtime's lookups now {r['lookups_now_ms']:.4f} ms against {r['lookups_profiled_ms']:.4f} ms "
                         f"profiled ({r['lookup_drift']:+.1%}, at {', '.join(map(str, r['lookup_probe_entries']))} entries; "
                         f"{r['lookup_probe_samples']} probes between the runs' chunks): the prediction at the current "
                         "speed scales the decider's work by this"]
                        if "lookup_drift" in r else []),
                      *([f"the blocks ran on {r['device']}: measured latencies are the host's clock around remote calls "
                         "and include the network's round trips"] if r.get("latency_includes_network") else [])])


@click.command("validate")
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), required=True,
              help="Bundle directory (from `run_sim.py export`).")
@click.option("--trace", "labels_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Label trace whose frames are rendered with the reference workload (as `trace record --trace`).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), default=600, show_default=True,
              help="Run the first N frames (of the chosen videos).")
@click.option("--videos", default=None, help="Comma-separated video ids to keep (default: all).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="the profile the bundle was tuned on",
              help="This machine's device profile to simulate against.")
@click.option("--mapping", default="rank", show_default=True,
              help="'rank' or a JSON mapping file, as `trace record --mapping`.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the rendered frames, as `trace record --seed`.")
@click.option("--strength", type=click.FloatRange(0.0, 1.5), default=None,
              help="Nuisance strength of the rendered frames (default: the one the model was trained at).")
@click.option("--warmup", type=click.IntRange(min=0), default=30, show_default=True,
              help="Frames run first and discarded (the runtimes start again with empty caches).")
@click.option("--chunk", type=click.IntRange(min=1), default=50, show_default=True,
              help="The policy and plain inference run the frames in turn, this many at a time.")
@click.option("--passes", type=click.IntRange(min=1), default=3, show_default=True,
              help="Run the frames this many times (each pass from empty caches) and average each frame's timings over "
                   "the passes: this machine's phases move a single pass's mean by several percent.")
@click.option("--device", "device_url", default="local", show_default=True,
              help="Where the runtime runs its blocks: 'local' or rpc://HOST:PORT[/KEY] (a phone's TVM RPC server).")
@click.option("--target", default=None, show_default="this CPU",
              help="TVM target the blocks are compiled for (e.g. a phone's: see `run_sim.py profile --help`).")
@click.option("--measure-overheads", "measure_now", is_flag=True,
              help="Measure the runtime's overheads here first, as `profile runtime-overheads` does (about 40 s), and "
                   "simulate with them instead of the profile's runtime section.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def validate_cmd(bundle_path, labels_path, max_frames, videos, profile_path, mapping, seed, strength, warmup, chunk,
                 passes, device_url, target, measure_now, as_json) -> None:
    """Fidelity: the simulator's predicted latency and accuracy of a bundle's policy against what the runtime
    measures running it on this machine, on the same frames.

    The label trace's frames are rendered with the reference workload (the mapping, seed and strength of `trace
    record`), recorded in memory (the simulator's input) and run through the runtime with TVM-compiled blocks,
    under the bundle's policy and without a cache (for the measured speed-up), --passes times from empty caches, each
    frame's timings averaged over the passes. The simulation uses the policy as
    stored (its calibration) and this machine's profile; a profile with a `runtime` section (`run_sim.py profile
    runtime-overheads`, or --measure-overheads right before the runs) also accounts for the runtime's own overheads.

    With --device rpc://..., the same runtime drives the blocks on a device behind TVM's RPC server (compiled for
    --target): decisions and accuracy are the device's; latencies are the host's clock around each remote call, so
    they include the network's round trips and are reported but not judged.
    """
    import dataclasses
    import json

    import numpy as np

    from engram.errors import EngramError
    from kernels.reference.store import load_reference
    from profiles.format import read_profile
    from kernels.tvm.rpc import open_session, parse_device
    from kernels.tvm.targets import resolve_target
    from runtime.blocks import compiled_blocks, remote_blocks
    from engram.fingerprint import sha256_file
    from runtime.bundle import read_bundle
    from runtime.engine import Runtime
    from runtime.frames import render_recorded_frames
    from runtime.overheads import LookupProbe, at_current_speed, kernel_drift, probe_entries, speed_factor
    from simulator.device import from_profile
    from simulator.policy import Policy
    from simulator.run import simulate
    from simulator.workload import check_fit, from_recorded
    from traces.record import RecordSettings, record

    if measure_now and device_url != "local":
        raise EngramError("--measure-overheads times the runtime on this machine, not on a device behind RPC",
                          field="--measure-overheads")
    session = None
    if device_url != "local" or target is not None:
        # Refuse a malformed address or an unreachable device before any work.
        session = open_session(parse_device(device_url), resolve_target(target))
    ref = load_reference()
    bundle = read_bundle(bundle_path, ref.model)  # refuses another model's bundle
    warnings = []
    if profile_path is None:
        profile_path = Path(bundle.manifest.profile.path)
        if not profile_path.is_file():
            raise EngramError(f"the bundle's profile {profile_path} is not here; give --profile", path=bundle_path,
                              field="profile.path")
        if sha256_file(profile_path) != bundle.manifest.profile.sha256:
            warnings.append(f"{profile_path} changed since the bundle was exported")
    profile = read_profile(profile_path, model=ref.model)
    if profile.runtime is None and not measure_now:
        warnings.append(f"{profile_path} has no runtime overheads (run `run_sim.py profile runtime-overheads`): "
                        "the prediction counts the kernels only")
    device = from_profile(profile)
    labels, cmap = _validate_frames(labels_path, mapping, seed, videos, max_frames)
    threads = None
    if session is None or session.remote is None:
        from kernels.tvm.threads import use_threads

        # The runtime runs with the thread count the profile was timed with (before anything starts TVM's pool).
        threads = use_threads(profile.device.threads)
        if profile.device.threads and threads != profile.device.threads:
            warnings.append(f"TVM's thread pool already runs {threads} thread(s) in this process, the profile was "
                            f"timed with {profile.device.threads}")
    for msg in warnings:  # once the inputs are known to be good
        click.echo(f"warning: {msg}", err=True)

    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    blocks = compiled_blocks(ref.model) if session is None else remote_blocks(ref.model, session)
    if measure_now:
        # The runtime's overheads measured here and now, as `profile runtime-overheads` measures them: this shared
        # machine's phases move them by up to 2x within minutes, more than the error the check is after.
        from profiles.format import profile_from_json
        from profiles.profiler import load_profile_model
        from runtime.overheads import measure_overheads, merge_overheads

        _, encoders = load_profile_model(profile.model.name)
        section = measure_overheads(ref.model, encoders, blocks, rounds=15, calls=400, in_context=profile.blocks_in_context,
                                    progress=None if as_json else lambda msg: click.echo(f"measuring {msg}", err=True))
        profile = profile_from_json(merge_overheads(profile.to_json(), section), profile_path)
        device = from_profile(profile)
    rec = record(labels, ref, cmap, RecordSettings(seed=seed, strength=strength))
    frames = render_recorded_frames(rec)
    workload = from_recorded(rec, str(labels_path))
    check_fit(workload, device, str(labels_path), str(profile_path))

    plain = Policy(name="no-cache", kind="no-cache", processor=bundle.policy.processor, queue=bundle.policy.queue)
    sim = simulate(workload, device, bundle.policy, with_oracle=False)
    plain_sim = simulate(workload, device, plain, with_oracle=False)
    if sim.metrics.get("dropped"):
        click.echo(f"warning: the simulator dropped {sim.metrics['dropped']} frames (queue)", err=True)

    rt = Runtime(bundle, blocks)
    rt_plain = Runtime(dataclasses.replace(bundle, manifest=bundle.manifest.model_copy(update={"policy": plain})), blocks)
    times, new_video = np.asarray(workload.arrival_s, np.float64), np.asarray(workload.new_video, bool)
    w = min(warmup, len(frames))
    for r in (rt, rt_plain):
        if w:
            r.run(frames[:w], times[:w], new_video[:w])
        r.reset()
    profiled = [profile.latency_ms(b, bundle.policy.processor) for b in profile.block_names]
    # The runtime's lookups are numpy, not kernels: their speed is probed on their own, at the cache sizes the policy
    # searches, between the chunks of the runs, when the profile has the runtime's lookup table to compare with.
    rto, cache = profile.runtime, bundle.policy.cache
    probe = None
    if not blocks.remote and bundle.policy.kind == "smtm" and cache is not None and rto is not None \
            and rto.lookup_ms is not None:
        sizes = [cache.hot_size] + ([cache.hot_size + cache.cold_size] if cache.cold_size else [])
        probe = LookupProbe(blocks, ref.model, bundle.encoders, rto.lookup_ms, rto.lookup_entries,
                            probe_entries(rto.lookup_entries, sizes), exits=bundle.enabled,
                            input_level=bundle.policy.input_reuse is not None and rto.input_ms is not None)
    # The kernels timed as the profile timed them, before and after the runs (averaged): a machine slower or
    # faster now than when it was profiled shows here, not as a fault of the cost model.
    drift = None if blocks.remote else (lambda: kernel_drift(blocks, ref.model, profiled, in_context=profile.blocks_in_context))
    before = drift() if drift else None
    (log, plain_log), pass_means, agree = _repeated_runs([rt, rt_plain], frames, times, new_video, chunk, passes,
                                                         between=probe.sample if probe else None)
    report = validation_report(sim, plain_sim, log, plain_log, rec.true_class)
    report.update({"passes": passes, "measured_mean_ms_passes": pass_means[0],
                   "measured_no_cache_mean_ms_passes": pass_means[1], "passes_agree": agree[0]})
    if drift:
        after = drift()
        report.update({k: (before[k] + after[k]) / 2 for k in before})
    if probe:
        report.update(probe.result())
        report["lookup_probe_entries"] = [int(n) for n in probe.timer.entries]
    if not blocks.remote:
        # The same prediction with every part of the runtime priced at what it cost during these runs: each block's
        # call and the per-frame overhead as the no-cache runs, interleaved with the policy's chunk by chunk, paid
        # them; the decider's work at the probe's speed (else the kernels'), the input level's probe as it was timed
        # between the chunks. What is left is the cost model's own
        # error (which parts the policy pays for, how often, at which cache sizes), apart from how fast the machine
        # happens to run each kind of work now. The no-cache prediction is then the no-cache measurement by
        # construction (a check of the accounting: it differs only by queueing).
        dispatch = rto.dispatch_ms if rto is not None else {}
        calls_now = plain_log.block_ms.mean(axis=0)
        kernels_now = np.asarray([c - dispatch.get(b, 0.0) for c, b in zip(calls_now, profile.block_names)])
        report["blocks_now_factor"] = speed_factor(profiled, kernels_now)
        frame_now = float(np.mean(plain_log.latency_ms - plain_log.block_ms.sum(axis=1))) if rto is not None else None
        if frame_now is not None:
            report.update({"frame_now_ms": frame_now, "frame_profiled_ms": float(rto.frame_ms)})
        factor = 1.0 + report["lookup_drift"] if probe else report["blocks_now_factor"]
        dev_now = at_current_speed(device, bundle.policy.processor, calls_now, frame_now, factor,
                                   report["blocks_now_factor"], report.get("input_now_ms"))
        if "input_now_ms" in report:
            report["input_profiled_ms"] = float(rto.input_ms)
        r_now = simulate(workload, dev_now, bundle.policy, with_oracle=False)
        s_now = r_now.metrics
        p_now = simulate(workload, dev_now, plain, with_oracle=False).metrics
        # Where the error is: the policy's mean per frame by part, as the runtime timed it and as predicted now.
        report["block_calls_ms"] = {"policy": ran_block_means(log), "no_cache": ran_block_means(plain_log)}
        report["components_ms"] = {"measured": measured_components(log),
                                   "predicted_now": predicted_components(r_now.engine, frame_now or 0.0)}
        report.update({
            # Parts of the blocks: cold, and after the frame's own lookups.
            "predicted_now_cold_ms": float(np.mean(r_now.engine.cold_ms)),
            "predicted_now_after_lookup_ms": float(np.mean(r_now.engine.after_lookup_ms)),
            "predicted_now_mean_ms": s_now["mean_latency_ms"],
            "latency_error_now": report["measured_mean_ms"] / s_now["mean_latency_ms"] - 1.0,
            "latency_error_now_passes": [v / s_now["mean_latency_ms"] - 1.0 for v in pass_means[0]],
            "predicted_now_no_cache_mean_ms": p_now["mean_latency_ms"],
            "no_cache_latency_error_now": report["measured_no_cache_mean_ms"] / p_now["mean_latency_ms"] - 1.0})
    report.update({"device": device_url, "blocks": blocks.source, "latency_includes_network": blocks.remote,
                   "threads": threads, "profile_threads": profile.device.threads})
    report.update({"bundle": str(bundle_path), "trace": str(labels_path), "profile": str(profile_path),
                   "profile_has_runtime_overheads": profile.runtime is not None, "overheads_measured_now": measure_now})
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{bundle.policy.name} ({bundle.policy.kind}) on {len(log)} frames of {Path(labels_path).name}, "
                   f"profile {Path(profile_path).name}")
        click.echo(_format_validation(report))
