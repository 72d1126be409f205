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
    from runtime.bundle import sha256_file

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
    from engram.errors import EngramError
    from runtime.bundle import RUNNABLE_KINDS, check_output, export_bundle
    from simulator.cli import load_inputs, resolve_policy
    from simulator.run import resolve, simulate

    if (policy is None) == (from_dir is None):
        raise click.UsageError("give exactly one of --policy and --from")
    if from_dir is not None:
        policy = _policy_from_sweep(from_dir)
        # The profile (and traces) the sweep tuned on, unless given: a bundle names the profile it was tuned for.
        ctx = click.get_current_context()
        given = {"profile": "profile_path", "trace": "trace_path", "calibration": "calibration_path"}
        for key, value in _sweep_inputs(from_dir).items():
            if ctx.get_parameter_source(given[key]) == click.core.ParameterSource.DEFAULT:
                if key == "profile":
                    profile_path = value
                elif key == "trace":
                    trace_path = value
                else:
                    calibration_path = value
    check_output(out)
    device, workload, calibration = load_inputs(profile_path, trace_path, calibration_path)
    pol, where = resolve_policy(policy, device)
    if pol.kind not in RUNNABLE_KINDS:
        raise EngramError(f"the runtime runs {' and '.join(RUNNABLE_KINDS)} policies; {pol.kind!r} is a simulator "
                          "baseline", path=where, field="kind")
    resolved, _ = resolve(pol, workload, device, calibration, where)
    result = simulate(workload, device, resolved, calibration=calibration, where=where)
    path = export_bundle(result.policy, profile_path, out, result.metrics, calibration_path,
                         trace_path=trace_path, encoders_path=encoders_path)
    m = result.metrics
    click.echo(f"wrote {path}: policy {result.policy.name} ({result.policy.kind}), {len(result.enabled)} exit points; "
               f"predicted on {Path(trace_path).name}: mean {m['mean_latency_ms']:.3f} ms, speed-up "
               f"{m['speedup']:.2f}x, accuracy {m['accuracy']:.2%}")
