"""``run_sim.py profile``: profile a device, import measurements made elsewhere, inspect profiles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click



CTX = {"help_option_names": ["-h", "--help"]}


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _command_line() -> str:
    return " ".join(["run_sim.py", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("run_sim.py") else "run_sim.py profile"


def _summary_line(p) -> str:  # noqa: ANN001
    srcs = p.block_sources()
    n_pred = sum(1 for s in srcs.values() if s == "predicted")
    total = sum(p.latency_ms(b) for b in p.block_names)
    return (f"{p.model.name} on {p.device.name}: whole model {p.model_latency_ms():.4f} ms, sum of blocks {total:.4f} ms"
            f" ({len(srcs) - n_pred} blocks measured/imported, {n_pred} predicted), energy {p.energy.method}")


@click.group("profile", invoke_without_command=True, context_settings=CTX)
@click.option("--model", "model_name", metavar="M", help="Zoo model to profile (reference, mobilenetv2, resnet18).")
@click.option("--device", default="local", show_default=True, metavar="D", help="local, or rpc://HOST:PORT[/KEY] for a TVM RPC server.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Profile to write (JSON).")
@click.option("--target", default=None, metavar="T", help="Compilation target: local (default), aarch64-cortex-a76, aarch64-cortex-a78, aarch64-cortex-x1.")
@click.option("--input-size", type=click.IntRange(min=16), default=None, help="Input height = width (default: the model's own).")
@click.option("--repeats", type=click.IntRange(min=3), default=40, show_default=True, help="Timed rounds (one sample of every block per round).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Rounds run and discarded first.")
@click.option("--sample-ms", type=click.FloatRange(min=0.01), default=4.0, show_default=True, help="Target duration of one sample (runs per sample are chosen to reach it).")
@click.option("--trim", type=click.FloatRange(0.0, 0.5), default=0.2, show_default=True, help="Fraction of the slowest samples dropped before the statistics.")
@click.option("--run-trim", type=click.FloatRange(0.0, 0.75), default=0.25, show_default=True, help="Fraction of the slowest runs (in-context passes) dropped inside each sample before it is averaged.")
@click.option("--lookup-repeats", type=click.IntRange(min=1), default=15, show_default=True, help="Samples per cache size for the lookup table.")
@click.option("--cv-warn", type=click.FloatRange(min=0.0), default=0.03, show_default=True, help="Warn when a block's coefficient of variation is above this.")
@click.option("--attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Take the rounds again, up to this many times in all, while some block's CV is above --cv-warn, and "
                   "keep the steadiest attempt (the machine's slow phases last seconds).")
@click.option("--power-model", default=None, metavar="NAME", help="Power model for energy when no counter is readable (see `profile power-models`).")
@click.option("--dram-pj-per-byte", type=click.FloatRange(min=0.0), default=None, help="Override the power model's off-chip energy per byte.")
@click.option("--device-name", default=None, help="Name to record for the device.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="TVM worker threads, recorded in the profile (locally: sets TVM_NUM_THREADS; default: all cores. "
                   "Over RPC: the number the server was started with, TVM_NUM_THREADS in its environment).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def profile(ctx: click.Context, model_name: str | None, device: str, out: Path | None, target: str | None,
            input_size: int | None, repeats: int, warmup: int, sample_ms: float, trim: float, run_trim: float,
            lookup_repeats: int,
            cv_warn: float, attempts: int, power_model: str | None, dram_pj_per_byte: float | None,
            device_name: str | None, threads: int | None, no_progress: bool) -> None:
    """Time every block of a model (and the whole model, and the semantic lookup at each exit point for
    1..1024 cached entries) on a device, and write its profile.

    \b
    run_sim.py profile --model reference --device local --out prof.json
    run_sim.py profile --model reference --device rpc://192.168.1.7:9090 --target aarch64-cortex-a76 --out p.json

    The subcommands import measurements made elsewhere and inspect profiles.
    """
    if ctx.invoked_subcommand is not None:
        return
    if model_name is None or out is None:
        raise click.UsageError("--model and --out are required (or give a subcommand: import-nnmeter, import-csv, show, "
                               "runtime-overheads, "
                               "validate, power-models)")
    from kernels.tvm.rpc import parse_device
    from kernels.tvm.timing import TimingConfig
    from profiles.format import write_profile
    from profiles.power import get_power_model
    from profiles.profiler import load_profile_model, profile_model

    parse_device(device)  # a bad address fails before anything is compiled
    if power_model is not None:
        get_power_model(power_model)
    model, encoders = load_profile_model(model_name, input_size)
    cfg = TimingConfig(warmup=warmup, repeats=repeats, sample_ms=sample_ms, trim=trim, run_trim=run_trim,
                       lookup_repeats=lookup_repeats, cv_warn=cv_warn, attempts=attempts)
    prof = profile_model(model, device, target=target, config=cfg, power_model=power_model,
                         dram_pj_per_byte=dram_pj_per_byte, encoders=encoders, device_name=device_name, threads=threads,
                         progress=not no_progress, warn=_warn, command=_command_line())
    write_profile(prof, out)
    click.echo(_summary_line(prof))
    click.echo(f"wrote {out}")


@profile.command("import-nnmeter", context_settings=CTX)
@click.option("--phone", type=click.Choice(["pixel4", "pixel6", "xiaomi11"]), required=True, help="Which phone's table.")
@click.option("--model", "model_name", default="reference", show_default=True, help="Zoo model (its MBConv blocks are looked up).")
@click.option("--input-size", type=click.IntRange(min=16), default=None, help="Input height = width (default: the model's own).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Profile to write.")
@click.option("--lut", type=click.Path(dir_okay=False, path_type=Path), default=None, help="nn-Meter look-up table JSON (default: the shipped one).")
@click.option("--power-model", default=None, metavar="NAME", help="Power model (default: the phone's own).")
@click.option("--dram-pj-per-byte", type=click.FloatRange(min=0.0), default=None)
@click.option("--lookup-from", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Measured profile of the same model whose lookup table is scaled to the phone (default: the shipped "
                   "local profile when it is for this model; none otherwise).")
def import_nnmeter_cmd(phone: str, model_name: str, input_size: int | None, out: Path, lut: Path | None,
                       power_model: str | None, dram_pj_per_byte: float | None, lookup_from: Path | None) -> None:
    """Import a phone profile from nn-Meter's per-block look-up table; blocks it does not cover are predicted
    by a latency model fitted on the same table (the profile flags each block measured or predicted)."""
    from profiles.format import read_profile, write_profile
    from profiles.nnmeter import import_nnmeter
    from profiles.profiler import load_profile_model

    model, encoders = load_profile_model(model_name, input_size)
    local = None
    if lookup_from is not None:
        local = read_profile(lookup_from, model=model)
    else:
        default = Path(__file__).resolve().parent / "data" / f"{model_name}_local.json"
        if default.is_file():
            cand = read_profile(default)
            if cand.fingerprint == model.fingerprint():
                local = cand
    prof = import_nnmeter(model, phone, encoders=encoders, lut=lut, power_model=power_model,
                          dram_pj_per_byte=dram_pj_per_byte, lookup_from=local, command=_command_line())
    write_profile(prof, out)
    click.echo(_summary_line(prof))
    cv = prof.measurement["predictor"]["held_out_error"]["mbconv"]
    click.echo(f"predictor held-out error ({cv['name']}): {cv['within_10pct']:.1%} within +-10%")
    click.echo(f"wrote {out}")


@profile.command("import-csv", context_settings=CTX)
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_name", required=True, help="Zoo model the rows belong to.")
@click.option("--input-size", type=click.IntRange(min=16), default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Profile to write.")
@click.option("--device-name", default=None, help="Device name to record (default: the CSV's file name).")
@click.option("--power-model", "power_models", multiple=True, metavar="[PROC=]NAME",
              help="Power model for a processor (repeatable); without PROC= it is for the first processor.")
@click.option("--dram-pj-per-byte", type=click.FloatRange(min=0.0), default=None)
def import_csv_cmd(csv_file: Path, model_name: str, input_size: int | None, out: Path, device_name: str | None,
                   power_models: tuple[str, ...], dram_pj_per_byte: float | None) -> None:
    """Import per-layer latencies measured elsewhere from a CSV (name, <processor>_ms columns; see
    profiles/csv_import.py for the format)."""
    from profiles.csv_import import import_csv, parse_power_model_options
    from profiles.format import write_profile
    from profiles.profiler import load_profile_model

    model, encoders = load_profile_model(model_name, input_size)
    prof = import_csv(csv_file, model, encoders=encoders, device_name=device_name,
                      power_models=parse_power_model_options(power_models), dram_pj_per_byte=dram_pj_per_byte,
                      command=_command_line())
    write_profile(prof, out)
    click.echo(_summary_line(prof))
    click.echo(f"wrote {out}")


@profile.command("compile", context_settings=CTX)
@click.option("--model", "model_name", required=True, help="Zoo model.")
@click.option("--input-size", type=click.IntRange(min=16), default=None)
@click.option("--target", default="local", show_default=True,
              help="local, aarch64-cortex-a76, aarch64-cortex-a78, aarch64-cortex-x1 or opencl-adreno.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory for the libraries.")
def compile_cmd(model_name: str, input_size: int | None, target: str, out_dir: Path) -> None:
    """Compile every block (and the whole model) for a target with the shipped tuning records and export
    them: the blocks as one library with a function per block (blocks.so for this CPU, blocks.tar for a phone,
    which the RPC server or app links) and the whole model as another (model.so/.tar), plus the OpenCL source
    for Adreno (code generation only: this TVM build cannot run OpenCL)."""
    import warnings

    from kernels.tvm.compile import compile_model, export_compiled
    from kernels.tvm.targets import resolve_target
    from profiles.profiler import load_profile_model

    model, _ = load_profile_model(model_name, input_size)
    spec = resolve_target(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = compile_model(model, spec)
    for w in caught:
        if "tuning records" in str(w.message):
            _warn(str(w.message))
    n = len(export_compiled(cm, out_dir))
    click.echo(f"{model.name} for {spec.name}: {len(cm.blocks)} blocks + whole model, "
               f"{sum(b.scheduled for b in cm.blocks)}/{sum(b.kernels for b in cm.blocks)} kernels with tuned schedules; "
               f"{n} files in {out_dir}")


@profile.command("show", context_settings=CTX)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the validated profile as JSON.")
def show_cmd(file: Path, as_json: bool) -> None:
    """Validate a profile and print its per-block table."""
    from rich.table import Table

    from profiles.format import read_profile

    p = read_profile(file)
    if as_json:
        click.echo(json.dumps(p.to_json()))
        return
    proc = p.device.default_processor
    t = Table(title=f"{p.model.name} on {p.device.name} ({proc}, {p.device.runtime})")
    for col in ("block", "median ms", "p90 ms", "CV", "source", "MACs (M)", "energy mJ", "exit"):
        t.add_column(col, justify="left" if col in ("block", "source", "exit") else "right")
    for b in p.blocks:
        s = b.latency.get(proc)
        if s is None:
            continue
        t.add_row(b.name, f"{s.median_ms:.4f}", "" if s.p90_ms is None else f"{s.p90_ms:.4f}",
                  "" if s.cv is None else f"{s.cv:.1%}", s.source, f"{b.macs / 1e6:.2f}", f"{b.energy_mj[proc]:.4f}",
                  "exit" if b.is_exit else "")
    _console().print(t)
    click.echo(_summary_line(p))
    m = p.memory
    click.echo(f"memory: weights {m.weights_bytes:,} B + activations {m.planned_activation_bytes:,} B planned "
               f"({m.pingpong_activation_bytes:,} B ping-pong, lower bound {m.lower_bound_bytes:,} B)")
    if p.lookup is not None:
        e0 = p.model.exit_points[0]
        click.echo(f"lookup ({p.lookup.source}) at {e0}: {p.lookup_ms(e0, 1):.4f} ms with 1 entry, "
                   f"{p.lookup_ms(e0, 1024):.4f} ms with 1024")
    for name, pm in p.energy.models.items():
        click.echo(f"power model ({name}): {pm.name}: {pm.active_power_mw:.0f} mW active, {pm.idle_power_mw:.0f} mW idle")


@profile.command("validate", context_settings=CTX)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="Also refuse profiles of another model (zoo name).")
def validate_cmd(files: tuple[Path, ...], model_name: str | None) -> None:
    """Check profiles against the schema and the format's rules (exit 2 on the first bad one)."""
    from profiles.format import read_profile
    from profiles.profiler import load_profile_model

    model = load_profile_model(model_name)[0] if model_name else None
    for f in files:
        read_profile(f, model=model)
        click.echo(f"{f}: ok")


@profile.command("runtime-overheads", context_settings=CTX)
@click.argument("profile_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Profile to write (default: replace PROFILE_PATH).")
@click.option("--rounds", type=click.IntRange(min=3), default=15, show_default=True, help="Interleaved timing rounds.")
@click.option("--calls", type=click.IntRange(min=30), default=400, show_default=True,
              help="Timed calls of each part, spread over the rounds.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="TVM worker threads (default: the profile's own).")
def runtime_overheads_cmd(profile_path: Path, out: Path | None, rounds: int, calls: int, threads: int | None) -> None:
    """Measure what the on-device runtime costs beyond the kernels on this machine and add it to a local profile.

    Adds the profile's optional `runtime` section (profiles/FORMAT.md): per-block dispatch overhead (the runtime's
    Python-level block call minus the block timed as the profile timed it, both timed now), the per-frame overhead, the runtime's own
    lookup (numpy encode + search, 1..1024 entries) and what searching a cold level adds to it, its cache-update
    and hit cost, the temporal exit metric's
    per-frame drift, an input level's per-frame probe, and what a block costs more after frames that stopped at an
    exit point before it or that an input level answered (by exit and gap) or after a lookup in its own frame. The
    block medians and everything else stay as they are; the
    simulator then predicts what the runtime measures (`run_sim.py validate`)."""
    from engram.errors import EngramError
    from kernels.tvm.threads import use_threads
    from profiles.format import read_profile, write_profile
    from profiles.profiler import load_profile_model
    from runtime.overheads import measure_overheads, merge_overheads

    prof = read_profile(profile_path)
    if prof.device.kind != "local":
        raise EngramError(f"a {prof.device.kind} profile: runtime overheads are measured on this machine, for a local "
                          "profile made here", path=profile_path, field="device.kind")
    use_threads(threads or prof.device.threads)
    model, encoders = load_profile_model(prof.model.name)
    prof.check_model(model)
    if not encoders:
        raise EngramError(f"no semantic encoders for {prof.model.name}: the runtime's lookup cannot be measured",
                          path=profile_path, field="model.name")
    section = measure_overheads(model, encoders, rounds=rounds, calls=calls, in_context=prof.blocks_in_context,
                                progress=lambda msg: click.echo(f"measuring {msg}", err=True))
    written = write_profile(merge_overheads(prof.to_json(), section), out or profile_path)
    look = section["lookup"]["exits"]
    click.echo(f"runtime overheads: frame {section['frame_ms']:.4f} ms, dispatch "
               f"{sum(section['dispatch_ms'].values()):.4f} ms over {len(section['dispatch_ms'])} blocks, lookup "
               f"{min(v[0] for v in look.values()):.4f}-{max(v[-1] for v in look.values()):.4f} ms, update "
               f"{section['update_ms']:.4f} ms, a cold block up to "
               f"{max(max(v) for d in section['cold']['after_exit'].values() for v in d.values()):.4f} ms")
    click.echo(f"wrote {written}")


@profile.command("power-models", context_settings=CTX)
@click.option("--json", "as_json", is_flag=True)
def power_models_cmd(as_json: bool) -> None:
    """List the shipped power models and where each comes from."""
    from profiles.power import power_models

    models = power_models()
    if as_json:
        click.echo(json.dumps({k: m.to_json() for k, m in models.items()}))
        return
    for m in models.values():
        click.echo(f"{m.name:20s} {m.processor_kind} {m.active_power_mw:7.0f} mW active {m.idle_power_mw:6.0f} mW idle "
                   f"@ {m.frequency_mhz:.0f} MHz  {m.description}")
        click.echo(f"{'':20s} source: {m.source}")


__all__ = ["profile"]
