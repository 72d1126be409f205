"""What `python run_sim.py` does with no arguments: the whole loop on the bundled defaults.

A short policy search on the shipped recorded trace against this machine's profile (resumed, so a second run
is quick), the comparison table on the held-out videos (no cache, each baseline, the default SMTM, the tuned
policy, the oracle), the report and timeline of those runs, and the tuned policy exported as a bundle for the
runtime. Everything lands under ./out/.
"""

from __future__ import annotations

from pathlib import Path

import click

OUT = Path("out")
MAIN_TRIALS = 400  # 25 NSGA-II generations of MAIN_BATCH: about 3 minutes on 2 cores (0.6 s a trial on each)
MAIN_BATCH = 16
TRIALS_ENV = "ENGRAM_MAIN_JOB_TRIALS"  # the test suite runs a shorter main job


@click.command("main-job", hidden=True)
def main_job() -> None:
    from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE, format_table, write_outputs
    from simulator.sweep import SweepSettings
    from simulator.sweep_cmd import JOURNAL, do_sweep

    click.echo("Engram main job: a short policy search on the shipped recorded trace against this machine's profile, "
               "every policy on the held-out videos, the report and the exported bundle "
               "(run `python run_sim.py --help` for everything else)")
    import os

    settings = SweepSettings(trials=int(os.environ.get(TRIALS_ENV, MAIN_TRIALS)), batch=MAIN_BATCH)
    sweep_dir = OUT / "sweep"
    journal = sweep_dir / JOURNAL
    # The main job owns ./out/sweep: a study left by other settings (another profile, say) is replaced.
    restart = journal.exists() and not _same_study(journal, settings)
    result, held_runs, held, device = do_sweep(DEFAULT_PROFILE, DEFAULT_TRACE, DEFAULT_CALIBRATION, sweep_dir, settings,
                                               None, None, restart)
    s = result["summary"]
    click.echo(f"{s['trials']} trials on {s['tuning_frames']} frames of {len(result['split']['tuning'])} videos "
               f"({s['feasible']} within {settings.max_loss:g} pt loss); every policy on the "
               f"{s['heldout_frames']} frames of the {len(result['split']['heldout'])} held-out videos:")
    click.echo(format_table(held_runs))
    written = write_outputs(OUT, held_runs, held, device, f"Engram main job: held-out videos of {DEFAULT_TRACE.name}",
                            3000)
    lines = [f"report   {written[0]}", f"timeline {written[1]} (open in https://ui.perfetto.dev)",
             f"sweep    {sweep_dir / 'pareto.html'}, {sweep_dir / 'sweep.json'}"]
    if result["chosen"] is not None:
        from runtime.cli import export_cmd

        ctx = click.get_current_context()
        ctx.invoke(export_cmd, policy=None, from_dir=sweep_dir, profile_path=DEFAULT_PROFILE, trace_path=DEFAULT_TRACE,
                   calibration_path=DEFAULT_CALIBRATION, encoders_path=None, out=OUT / "bundle")
        lines.append(f"bundle   {OUT / 'bundle'} (the tuned policy, for the runtime)")
    else:
        lines.append("bundle   none: no trial met the accuracy constraint")
    click.echo("\n".join(lines))


def _same_study(journal: Path, settings) -> bool:  # noqa: ANN001
    from simulator.cli import DEFAULT_CALIBRATION, DEFAULT_PROFILE, DEFAULT_TRACE
    from engram.fingerprint import sha256_file
    from simulator.sweep_cmd import _study_name

    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        names = [x.study_name for x in optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))]
    except Exception:  # noqa: BLE001 (unreadable: start over)
        return False
    key = settings.key({"profile": sha256_file(DEFAULT_PROFILE), "trace": sha256_file(DEFAULT_TRACE),
                        "calibration": sha256_file(DEFAULT_CALIBRATION)})
    return names == [_study_name(key)]
