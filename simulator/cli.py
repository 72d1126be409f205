"""Command-line commands of the simulator room: ``simulate`` and ``compare``."""

from __future__ import annotations

import json
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = ROOT / "profiles" / "data" / "reference_local.json"
DEFAULT_TRACE = ROOT / "traces" / "data" / "epic100_val_recorded.parquet"
DEFAULT_CALIBRATION = ROOT / "traces" / "data" / "epic100_calibration_recorded.parquet"


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def load_inputs(profile_path: Path, trace_path: Path, calibration_path: Path | None, need_calibration: bool = True):
    """Device model, workload and calibration workload, checked against each other."""
    from engram.errors import EngramError
    from profiles.format import read_profile
    from simulator.device import from_profile
    from simulator.workload import check_fit, from_recorded
    from traces.format import read_recorded_trace

    profile = read_profile(profile_path)
    device = from_profile(profile)
    workload = from_recorded(read_recorded_trace(trace_path), trace_path)
    check_fit(workload, device, str(trace_path), str(profile_path))
    calibration = None
    if calibration_path is not None and need_calibration:
        if Path(calibration_path).resolve() == Path(trace_path).resolve():
            raise EngramError("the calibration trace must not be the trace being replayed", path=calibration_path)
        calibration = from_recorded(read_recorded_trace(calibration_path), calibration_path)
        check_fit(calibration, device, str(calibration_path), str(profile_path))
        shared = set(calibration.video_names) & set(workload.video_names)
        if shared:
            _warn(f"the calibration trace shares {len(shared)} video id(s) with the replayed trace "
                  f"(e.g. {sorted(shared)[0]!r}); calibration should come from other data")
    return device, workload, calibration


def resolve_policy(policy: str, device):
    from simulator.policy import load_policy
    from simulator.presets import PRESETS, preset

    if policy in PRESETS:
        return preset(policy, device.exits), None
    path = Path(policy)
    if not path.exists() and path.suffix.lower() != ".json":
        raise click.BadParameter(f"{policy!r} is neither a preset ({', '.join(PRESETS)}) nor a policy file",
                                 param_hint="--policy")
    return load_policy(path), str(path)


def _summary(m: dict) -> str:
    hist = ", ".join(f"{k} {v}" for k, v in m["exit_histogram"].items())
    return (
        f"policy {m['policy']} ({m['kind']}) on {m['frames']} frames ({m['dropped']} dropped)\n"
        f"  latency   mean {m['mean_latency_ms']:.3f} ms, p50 {m['p50_latency_ms']:.3f}, p99 {m['p99_latency_ms']:.3f}"
        f" (with queueing: mean {m['mean_latency_queued_ms']:.3f}, p99 {m['p99_latency_queued_ms']:.3f})\n"
        f"  speed-up  {m['speedup']:.2f}x over no cache ({m['baseline_mean_latency_ms']:.3f} ms); oracle "
        f"{m.get('oracle_speedup', float('nan')):.2f}x, share {m.get('oracle_share', float('nan')):.0%}\n"
        f"  accuracy  {m['accuracy']:.2%} (no cache {m['baseline_accuracy']:.2%}, loss {m['accuracy_loss_pt']:+.2f} pt); "
        f"agrees with the full model on {m['accuracy_vs_model']:.2%}\n"
        f"  cache     answered at the input {m['hit_rate']['input']:.1%}, hot hits {m['hit_rate']['hot']:.1%}, "
        f"cold hits {m['hit_rate']['cold']:.1%}, "
        f"{m['cache_bytes'] / 1024:.1f} KiB peak; model {m['model_bytes'] / 1024:.0f} KiB\n"
        f"  energy    {m['energy_mj_per_frame']:.3f} mJ/frame ({m['active_energy_mj_per_frame']:.3f} active)\n"
        f"  exits     {hist}"
    )


def _public(m: dict) -> dict:
    return {k: v for k, v in m.items()}


def write_outputs(out: Path, results, workload, device, title: str, timeline_frames: int) -> list[Path]:
    from engram.fileio import write_json_atomic
    from simulator.report import write_report
    from simulator.timeline import write_timeline

    out.mkdir(parents=True, exist_ok=True)
    written = [write_report(out / "report.html", results, workload, device, title)]
    main = results[0]
    written.append(write_timeline(out / "timeline.json", main, workload, device, timeline_frames))
    write_json_atomic(out / "metrics.json", [_public(r.metrics) for r in results] if len(results) > 1 else _public(main.metrics))
    written.append(out / "metrics.json")
    for r in results:
        name = "policy.json" if len(results) == 1 else f"policy-{r.policy.name}.json"
        write_json_atomic(out / name, r.policy.to_json())
        written.append(out / name)
    return written


_profile_opt = click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path),
                            default=DEFAULT_PROFILE, show_default="this machine's profile of the reference CNN",
                            help="Device profile (JSON).")
_trace_opt = click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TRACE,
                          show_default="the shipped EPIC-KITCHENS-100 recorded trace", help="Recorded trace to replay.")
_calib_opt = click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False, path_type=Path),
                          default=DEFAULT_CALIBRATION, show_default="the shipped calibration trace",
                          help="Recorded trace (same model, other videos) the layer-aware exit metric is fitted on.")
_timeline_opt = click.option("--timeline-frames", type=click.IntRange(min=1), default=3000, show_default=True,
                             help="Frames written to the Perfetto timeline.")


@click.command("simulate")
@_profile_opt
@_trace_opt
@click.option("--policy", default="smtm", show_default=True,
              help="A preset (no-cache, deepcache, foggycache, branchy, smtm, oracle) or a policy JSON file.")
@_calib_opt
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.html, timeline.json (Perfetto), metrics.json and the policy as run here.")
@_timeline_opt
def simulate_cmd(profile_path, trace_path, policy, calibration_path, as_json, out, timeline_frames) -> None:
    """Replay a recorded trace against a device profile under one policy (SimPy discrete-event simulation)."""
    from simulator.run import simulate

    device, workload, calibration = load_inputs(profile_path, trace_path, calibration_path)
    pol, where = resolve_policy(policy, device)
    result = simulate(workload, device, pol, calibration=calibration, where=where)
    m = result.metrics
    if as_json:
        click.echo(json.dumps(_public(m)))
    else:
        click.echo(_summary(m))
    if out is not None:
        written = write_outputs(out, [result], workload, device, f"Engram: {pol.name} on {Path(trace_path).name}",
                                timeline_frames)
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=as_json)


def run_presets(device, workload, calibration, names=None):
    from simulator.policy import check_policy
    from simulator.presets import PRESETS, preset
    from simulator.run import run_once, simulate

    names = names or PRESETS
    plain = preset("no-cache", device.exits)
    baseline = run_once(workload, device, plain, check_policy(plain, device.exits, tuple(device.processors)))
    results = []
    for name in names:
        results.append(simulate(workload, device, preset(name, device.exits), calibration=calibration, baseline=baseline))
    return results


def format_table(results) -> str:
    from simulator.report import TABLE_COLUMNS, cell

    rows = [[cell(r.metrics, key, fmt) for _, key, fmt in TABLE_COLUMNS] for r in results]
    header = [c[0] for c in TABLE_COLUMNS]
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


@click.command("compare")
@_profile_opt
@_trace_opt
@_calib_opt
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of every policy's metrics.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.html (all policies), the SMTM timeline, metrics.json and the policies.")
@_timeline_opt
def compare_cmd(profile_path, trace_path, calibration_path, as_json, out, timeline_frames) -> None:
    """Run every preset (no cache, the baselines, SMTM, the oracle) on the same trace and profile."""
    device, workload, calibration = load_inputs(profile_path, trace_path, calibration_path)
    results = run_presets(device, workload, calibration)
    if as_json:
        click.echo(json.dumps([_public(r.metrics) for r in results]))
    else:
        click.echo(f"{len(workload)} frames of {Path(trace_path).name} on {device.name} ({Path(profile_path).name})")
        click.echo(format_table(results))
    if out is not None:
        smtm_first = sorted(results, key=lambda r: r.policy.kind != "smtm")
        written = write_outputs(out, smtm_first, workload, device, f"Engram: presets on {Path(trace_path).name}",
                                timeline_frames)
        click.echo(f"wrote {', '.join(str(p) for p in written[:3])} and the policies", err=as_json)

