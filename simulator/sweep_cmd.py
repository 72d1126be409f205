"""``run_sim.py sweep``: search the SMTM policy space with Optuna against a profile and a trace."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import click

from engram.fingerprint import sha256_file

from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE, format_table, load_inputs

DEFAULT_SWEEP_OUT = Path("out") / "sweep"
JOURNAL = "study.journal"
_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 2000000, 512KiB, 4MiB)", param_hint="--memory-budget")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _study_name(key: str) -> str:
    return f"engram-sweep-{key}"


def _check_existing(journal: Path, name: str, restart: bool) -> None:
    """A journal made with other settings is never silently mixed with this sweep's trials."""
    from engram.errors import EngramError

    if not journal.exists():
        return
    if restart:
        journal.unlink()
        return
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))]
    except Exception as exc:  # noqa: BLE001 (a damaged journal: say so, never a traceback)
        raise EngramError(f"not a readable Optuna journal ({exc}); use --restart to start over", path=journal) from None
    if names and name not in names:
        raise EngramError(f"holds a sweep made with other settings ({names[0]}); give another --out, or --restart "
                          "to discard it", path=journal)


@click.command("sweep")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PROFILE,
              show_default="this machine's profile of the reference CNN", help="Device profile (JSON).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TRACE,
              show_default="the shipped recorded trace", help="Recorded trace; its videos are split into tuning and held-out.")
@click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_CALIBRATION, show_default="the shipped calibration trace",
              help="Recorded trace the calibrated exit metric is fitted on (never the replayed one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_SWEEP_OUT, show_default=True,
              help="Folder for the study (resumable), the chosen policy, sweep.json and pareto.html.")
@click.option("--trials", type=click.IntRange(min=1), default=64, show_default=True, help="Trials in all (a resumed or extended sweep counts the finished ones).")
@click.option("--batch", type=click.IntRange(min=2), default=16, show_default=True, help="Trials per generation (NSGA-II population).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--holdout", type=click.FloatRange(0.05, 0.8), default=0.33, show_default=True, help="Share of the trace's frames (whole videos) held out from the search.")
@click.option("--max-loss", type=click.FloatRange(min=0.0), default=1.0, show_default=True, help="Largest accuracy loss (points) a policy may have.")
@click.option("--memory-budget", default=None, metavar="BYTES", help="Model + cache memory the device allows (e.g. 4MiB).")
@click.option("--deadline-ms", type=click.FloatRange(min=0.0, min_open=True), default=None, help="p99 latency (with queueing) a policy must meet.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Local worker processes (default: the cores).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS", help="Run the trials on a Ray cluster (HOST:PORT).")
@click.option("--restart", is_flag=True, help="Discard a study already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--no-progress", is_flag=True)
def sweep_cmd(profile_path, trace_path, calibration_path, out, trials, batch, seed, holdout, max_loss, memory_budget,
              deadline_ms, workers, ray_address, restart, as_json, no_progress) -> None:
    """Search cache levels and sizes, replacement, exit metric and per-exit thresholds, enabled exits and
    adaptation with Optuna (NSGA-II: latency, energy, accuracy loss), under the accuracy, memory and
    deadline constraints, on part of the trace's videos; report the chosen policy on the held-out videos."""
    from simulator.sweep import SweepSettings

    settings = SweepSettings(trials=trials, batch=batch, seed=seed, holdout=holdout, max_loss=max_loss,
                             memory_budget=parse_bytes(memory_budget) if memory_budget is not None else None,
                             deadline_ms=deadline_ms)
    result, held_runs, _, _ = do_sweep(profile_path, trace_path, calibration_path, out, settings, workers, ray_address,
                                       restart, progress=not no_progress)
    if as_json:
        click.echo(json.dumps(result["summary"]))
        return
    _print(result, held_runs, out)


def do_sweep(profile_path: Path, trace_path: Path, calibration_path: Path, out: Path, settings, workers: int | None,  # noqa: ANN001
             ray_address: str | None, restart: bool, progress: bool = True):  # noqa: ANN201
    """Run or resume a sweep into ``out``; return (result, held-out runs, held-out workload, device)."""
    from engram.fileio import write_json_atomic
    from simulator.sweep import run_sweep

    device, workload, calibration = load_inputs(profile_path, trace_path, calibration_path)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {"profile": sha256_file(profile_path), "trace": sha256_file(trace_path), "calibration": sha256_file(calibration_path)}
    name = _study_name(settings.key(inputs))
    _check_existing(out / JOURNAL, name, restart)
    t0 = time.time()
    try:
        result, held_runs = run_sweep(out / JOURNAL, name, device, workload, calibration, settings,
                                      workers=workers or len(os.sched_getaffinity(0)), ray_address=ray_address,
                                      progress=progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the finished trials are kept in {out / JOURNAL}; run the same command again to "
                   "resume", err=True)
        click.get_current_context().exit(130)
    result["inputs"] = {"profile": str(profile_path), "trace": str(trace_path), "calibration": str(calibration_path),
                        "sha256": inputs}
    result["seconds"] = round(time.time() - t0, 1)
    if result["chosen"] is not None:
        write_json_atomic(out / "chosen_policy.json", result["chosen"]["policy"])
    elif (out / "chosen_policy.json").exists():
        (out / "chosen_policy.json").unlink()  # a stale choice must not outlive the sweep that replaced it
    write_json_atomic(out / "sweep.json", result)
    _page(out, result)
    held = workload.select_videos(result["split"]["heldout"])
    return result, held_runs, held, device


def _page(out: Path, result: dict[str, Any]) -> None:
    from simulator.sweep_report import pareto_page

    records = [(r["number"], r["params"], r["metrics"]) for r in result["trials"]]
    chosen = result["chosen"]["trial"] if result["chosen"] else None
    pareto_page(out / "pareto.html", records, result["pareto"], chosen, result["references_tuning"],
                f"Engram sweep: {len(records)} trials on the tuning videos ({result['settings']['max_loss']:g} pt max loss)",
                result["settings"]["max_loss"])


def _print(result: dict[str, Any], held_runs: list, out: Path) -> None:
    s = result["summary"]
    click.echo(f"{s['trials']} trials, {s['feasible']} feasible, {len(result['pareto'])} on the Pareto front; "
               f"tuning on {s['tuning_frames']} frames ({len(result['split']['tuning'])} videos), "
               f"held out {s['heldout_frames']} frames ({len(result['split']['heldout'])} videos)")
    if result["chosen"] is None:
        click.echo("no trial met the constraints; loosen them or run more trials")
    else:
        c = result["chosen"]
        bound = c["tuning"].get("accuracy_loss_bound_pt")
        click.echo(f"chosen: trial {c['trial']} - on the tuning videos {c['tuning']['speedup']:.2f}x, loss "
                   f"{c['tuning']['accuracy_loss_pt']:+.2f} pt"
                   + (f" (95% bound {bound:+.2f} pt)" if bound is not None else "")
                   + f"; on the held-out videos {c['heldout']['speedup']:.2f}x, loss {c['heldout']['accuracy_loss_pt']:+.2f} pt")
        if s.get("chosen_by") and s["chosen_by"] != "loss bound":
            click.echo(f"note: chosen as the {s['chosen_by']}")
        click.echo("held-out videos, every policy:")
        click.echo(format_table(held_runs))
    click.echo(f"wrote {out / 'sweep.json'}, {out / 'chosen_policy.json'}, {out / 'pareto.html'} (study: {out / JOURNAL})")
