"""Command-line commands of the traces room: ``trace import``, ``trace synth``, ``trace stats``.

Heavy imports (numpy, pyarrow, plotly) happen inside the commands so that ``run_sim.py --help`` stays fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

_CSV_ONLY = {"maps": "--map", "extracts": "--extract", "delimiter": "--delimiter", "no_header": "--no-header",
             "time_unit": "--time-unit", "classes_path": "--classes", "class_base": "--class-base",
             "label_sep": "--label-sep"}
_DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "space": "whitespace",
               "whitespace": "whitespace"}


@click.group("trace")
def trace() -> None:
    """Object traces: import real annotations, synthesise long-tail traces, and measure them.

    A trace is one Parquet file (format: traces/FORMAT.md) holding, per frame of one or more videos, the
    object classes in view and the primary one.
    """


def _summary_line(path: Path, t) -> str:
    seen = len(set(t.label.tolist()))
    return (f"wrote {path}: {len(t):,} frames, {len(t.video_names)} videos, {seen} of {t.num_classes} classes "
            f"in use, {t.meta.fps:g} fps")


def _delimiter(value: str) -> str:
    d = _DELIMITERS.get(value.lower(), value)
    if d != "whitespace" and len(d) != 1:
        raise click.BadParameter(f"{value!r}: use one character, or comma, semicolon, tab, whitespace", param_hint="--delimiter")
    return d


def _csv_layout(maps, extracts, delimiter, no_header, time_unit, classes_path, class_base, label_sep):
    from traces.importers.csv_generic import FIELDS, ColumnSpec, CsvLayout

    columns = {}
    for m in maps:
        field, sep, col = m.partition("=")
        field = field.strip()
        if not sep or field not in FIELDS:
            raise click.BadParameter(f"{m!r}: expected FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}", param_hint="--map")
        try:
            columns[field] = ColumnSpec.parse(col)
        except ValueError as exc:
            raise click.BadParameter(f"{m!r}: {exc}", param_hint="--map") from None
    extract = []
    for x in extracts:
        col, sep, pattern = x.partition("=")
        if not sep:
            raise click.BadParameter(f"{x!r}: expected COLUMN=REGEX", param_hint="--extract")
        try:
            rx = re.compile(pattern)
            spec = ColumnSpec.parse(col)
        except (re.error, ValueError) as exc:
            raise click.BadParameter(f"{x!r}: {exc}", param_hint="--extract") from None
        if not rx.groupindex:
            raise click.BadParameter(f"{x!r}: the pattern needs named groups like (?P<video>...)", param_hint="--extract")
        extract.append((spec, rx))
    return CsvLayout(delimiter=_delimiter(delimiter), header=not no_header, columns=columns, extract=tuple(extract),
                     time_unit=time_unit, classes_path=classes_path, class_base=class_base, label_sep=label_sep)


_FORMAT_HELP = """Import annotation files SRC... of --format into a label trace.

\b
Formats:
  epic100         EPIC-KITCHENS-100 action CSV (+ optional EPIC_100_noun_classes_v2.csv)
  epic55          EPIC-KITCHENS-55 action CSV (+ optional EPIC_noun_classes.csv)
  kitti           KITTI tracking label_02/NNNN.txt (one video per file, 10 fps)
  mot             MOTChallenge <seq>/gt/gt.txt (frame rate from <seq>/seqinfo.ini)
  scalabel        Scalabel / BDD100K MOT box-track JSON (5 fps)
  something-else  Something-Else annotations.json (12 fps)
  csv             any delimited segment/labelled-frame file, via --map/--extract

Segment formats (epic*, csv with start/stop) are sampled at --fps (default 5); frames with no active
segment are dropped, timestamps keep real time, and overlapping segments give several objects in view
with the most recently started one as primary. Box formats keep their annotated frames (--fps thins
them) and take the largest box as primary. Each format's details: traces/FORMAT.md.

\b
Example (EGTEA Gaze+ split file, no header):
  run_sim.py trace import --format csv train_split1.txt --delimiter whitespace --no-header \\
    --time-unit ms --map label=3+ --classes noun_idx.txt \\
    --extract '0=(?P<video>.+)-(?P<start>\\d+)-(?P<stop>\\d+)-F\\d+-F\\d+' --out egtea.parquet
"""


@trace.command("import", help=_FORMAT_HELP)
@click.argument("src", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(
    ["epic100", "epic55", "kitti", "mot", "scalabel", "something-else", "csv"]), help="Annotation format of SRC.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Trace file to write (.parquet).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate of the trace: sampling rate for segments (default 5), thinning for boxes.")
@click.option("--source-fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Rate of the annotated frames (box formats; csv frame numbers). Default: the format's own.")
@click.option("--video", "videos", multiple=True, help="Keep only this video (repeatable).")
@click.option("--ignore-class", "ignore", multiple=True, help="Drop this source class (repeatable). "
              "Replaces the format's default (kitti: DontCare; something-else: hand).")
@click.option("--keep-all-classes", is_flag=True, help="Do not drop the format's default-ignored classes.")
@click.option("--class-map", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rename/merge classes: JSON {source: trace} or 2-column CSV. Every class met must be mapped.")
@click.option("--source", "source_text", default=None, help="Override the metadata's source description.")
@click.option("--license", "license_text", default=None, help="Override the metadata's license.")
@click.option("--attribution", default=None, help="Override the metadata's attribution.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="csv: where a field (video, start, stop, frame, label) is; COLUMN is a header name or 0-based "
                   "index, N+ for N and all later columns.")
@click.option("--extract", "extracts", multiple=True, metavar="COLUMN=REGEX",
              help="csv: fill fields from named groups of a regex matched against a whole cell.")
@click.option("--delimiter", default=",", show_default=True, help="csv: one character, or comma/semicolon/tab/whitespace.")
@click.option("--no-header", is_flag=True, help="csv: the first line is data.")
@click.option("--time-unit", type=click.Choice(["s", "ms", "frames"]), default="s", show_default=True,
              help="csv: unit of start/stop (frames: at --source-fps). HH:MM:SS.ff values are always clock times.")
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="csv: class list, one 'name' or 'name id' per line; labels may then be ids.")
@click.option("--class-base", type=int, default=0, show_default=True, help="csv: id of the first line of a plain --classes list.")
@click.option("--label-sep", default=None, help="csv: separator between several labels inside one cell.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of one line.")
def import_cmd(src, fmt, out, fps, source_fps, videos, ignore, keep_all_classes, class_map, source_text,
               license_text, attribution, maps, extracts, delimiter, no_header, time_unit, classes_path, class_base,
               label_sep, as_json) -> None:
    from traces.format import write_trace
    from traces.importers import import_trace
    from traces.importers.common import ImportOptions, load_class_map

    ctx = click.get_current_context()
    if fmt != "csv":
        for name, flag in _CSV_ONLY.items():
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise click.BadParameter(f"only applies to --format csv, not {fmt}", param_hint=flag)
    if ignore and keep_all_classes:
        raise click.BadParameter("use either --ignore-class or --keep-all-classes", param_hint="--keep-all-classes")
    layout = _csv_layout(maps, extracts, delimiter, no_header, time_unit, classes_path, class_base, label_sep) \
        if fmt == "csv" else None
    options = ImportOptions(
        fps=fps,
        source_fps=source_fps,
        ignore_classes=tuple(ignore) if ignore else (() if keep_all_classes else None),
        class_map=load_class_map(class_map) if class_map else None,
        class_map_path=class_map,
        videos=tuple(videos),
        source=source_text,
        license=license_text,
        attribution=attribution,
    )
    t = import_trace(fmt, list(src), options, layout)
    write_trace(t, out)
    if as_json:
        click.echo(json.dumps({"out": str(out), "frames": len(t), "videos": len(t.video_names),
                               "classes": t.num_classes, "classes_in_use": len(set(t.label.tolist())),
                               "fps": t.meta.fps}))
    else:
        click.echo(_summary_line(out, t))


@trace.command("synth")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Trace file to write (.parquet).")
@click.option("--classes", type=click.IntRange(min=1), default=100, show_default=True, help="Number of classes.")
@click.option("--zipf", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Zipf exponent of class popularity (0: uniform; larger: longer head).")
@click.option("--regimes", type=click.IntRange(min=1), default=4, show_default=True, help="Number of scene regimes.")
@click.option("--regime-classes", type=click.IntRange(min=1), default=12, show_default=True,
              help="Classes per regime (drawn by popularity).")
@click.option("--regime-dwell-s", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Mean time in a regime before the scene switches (Markov).")
@click.option("--dwell-s", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Mean time an object stays the primary object.")
@click.option("--extra-objects", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Mean number of other classes in view alongside the primary (Poisson).")
@click.option("--videos", type=click.IntRange(min=1), default=4, show_default=True, help="Number of videos.")
@click.option("--frames", type=click.IntRange(min=1), default=3000, show_default=True, help="Frames per video.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Frame rate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed (same seed, same trace).")
def synth_cmd(out, classes, zipf, regimes, regime_classes, regime_dwell_s, dwell_s, extra_objects, videos, frames,
              fps, seed) -> None:
    """Synthesise a long-tail label trace with switching scene regimes (model: traces/synth.py)."""
    from traces.format import write_trace
    from traces.synth import SynthParams, synthesize

    if regime_classes > classes:
        raise click.BadParameter(f"{regime_classes} is more than --classes {classes}", param_hint="--regime-classes")
    t = synthesize(SynthParams(classes=classes, zipf=zipf, regimes=regimes, regime_classes=regime_classes,
                               regime_dwell_s=regime_dwell_s, dwell_s=dwell_s, extra_objects=extra_objects,
                               videos=videos, frames=frames, fps=fps, seed=seed))
    write_trace(t, out)
    click.echo(_summary_line(out, t))


def _format_stats(path: Path, s: dict) -> str:
    rd = s["reuse_distance"]
    ws = s["working_set"]
    top = ", ".join(f"{name} {count}" for name, count in s["class_frequency"][:5])
    ps = "n/a" if s["p_same_as_previous"] is None else f"{s['p_same_as_previous']:.3f}"
    lines = [
        f"trace            {path}",
        f"videos           {s['videos']}",
        f"frames           {s['frames']:,} at {s['fps']:g} fps ({s['duration_s'] / 3600:.2f} h)",
        f"classes          {s['classes']['seen']} seen of {s['classes']['vocabulary']}",
        f"top 10% share    {s['top10pct_share']:.3f} ({s['top10pct_classes']} classes)",
        f"gini             {s['gini']:.3f}",
        f"P(same as prev)  {ps}",
        f"mean run length  {s['mean_run_length_frames']:.2f} frames",
        f"objects/frame    mean {s['objects_per_frame']['mean']:.2f}, max {s['objects_per_frame']['max']}",
        f"reuse distance   first sightings {rd['cold_share']:.3f} of frames; on class change: "
        f"median {rd['on_change']['p50']}, p90 {rd['on_change']['p90']}, max {rd['on_change']['max']}",
        "LRU hit rate     " + ", ".join(f"{k}: {v:.3f}" for k, v in rd["lru_hit_rate"].items()),
        f"working set      {ws['window_s']:g} s window: mean {ws['mean']:.2f}, median {ws['p50']}, p90 {ws['p90']}, "
        f"max {ws['max']}",
        f"most frequent    {top}",
    ]
    return "\n".join(lines)


@trace.command("stats")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (includes the full class-frequency list).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained plotly page (class-frequency curve, working set over time).")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Working-set window in seconds.")
def stats_cmd(file, as_json, html_out, window_s) -> None:
    """Long-tail and locality statistics of a trace (either level; the labels are used)."""
    from traces.format import RecordedTrace, read_trace
    from traces.stats import compute_stats

    whole = read_trace(file)
    t = whole.labels if isinstance(whole, RecordedTrace) else whole
    s = compute_stats(t, window_s=window_s)
    if html_out is not None:
        from traces.report import write_report

        write_report(t, s, window_s, html_out, f"Trace statistics: {file.name}")
    if as_json:
        click.echo(json.dumps({"file": str(file), "level": whole.level, **s}))
    else:
        click.echo(_format_stats(file, s))
        if html_out is not None:
            click.echo(f"wrote {html_out}")



_USER_MODEL_ONLY = {"exit_points": "--exit-points", "input_size": "--input-size", "num_classes": "--num-classes",
                    "class_names_path": "--class-names", "weights": "--weights", "calibration_frames": "--calibration-frames",
                    "calibration_trace": "--calibration-trace", "dims": "--dims"}
_FRAMES_ONLY = {"fps": "--fps", "resize": "--resize", "normalize": "--normalize"}
_RENDER_ONLY = {"strength": "--strength"}


def _given(ctx: click.Context, names: dict[str, str]) -> list[str]:
    return [flag for name, flag in names.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]


@trace.command("record")
@click.option("--trace", "labels_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Label trace to follow (Parquet, either level; its labels are used). Required for rendered frames; "
                   "with --frames, the ground truth (matched by video name and frame index).")
@click.option("--frames", "frames_path", default=None, type=click.Path(path_type=Path),
              help="Record these frames instead of rendering: a video file, a folder of images (one video), or a "
                   "folder of image subfolders and/or video files (one video each). Images sorted by name.")
@click.option("--model", "model", default="reference", show_default=True,
              help="'reference' (the shipped reference CNN), a directory holding refnet.safetensors, "
                   "encoders.safetensors and heads.safetensors (as `reference train --out` writes), or your own "
                   "model as FILE.py:FUNCTION (FUNCTION() returns a torch.nn.Module; needs --frames).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Recorded trace to write.")
@click.option("--mapping", default=None,
              help="'rank' (trace classes by frequency rank, over the whole label trace, onto a seeded permutation "
                   "of the model's classes) or a JSON file {trace class: model class} (names or ids). "
                   "Default: rank for rendered frames; with --frames and a label trace, give it explicitly.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the rendered appearance and motion (and of the rank mapping's permutation).")
@click.option("--strength", type=click.FloatRange(0.0, 1.5), default=None,
              help="Nuisance strength of rendered frames (default: the one the model was trained at).")
@click.option("--videos", default=None, help="Comma-separated video ids to keep (default: all).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Keep only the first N frames.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True, help="Frames per model batch.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--frames: frame rate of image folders (default: the label trace's; needed without one).")
@click.option("--resize", type=click.Choice(["stretch", "crop"]), default="stretch", show_default=True,
              help="--frames: fit frames to the model's input size by stretching, or by a centred crop to its "
                   "aspect ratio first.")
@click.option("--normalize", default="unit", show_default=True,
              help="--frames with your model: its input normalisation, 'unit' (RGB in [0, 1]), 'imagenet', or "
                   "MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B of RGB in [0, 1].")
@click.option("--exit-points", default=None, help="Your model: comma-separated submodule names to exit after, in order.")
@click.option("--input-size", default=None, help="Your model: input height x width, e.g. 224x224.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Your model: number of output classes.")
@click.option("--class-names", "class_names_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your model: its class names, one per line in class-id order (default: 0, 1, ...).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your model: a safetensors state dict to load into the module FUNCTION() returns.")
@click.option("--calibration-frames", type=click.Path(path_type=Path), default=None,
              help="Your model: frames (same forms as --frames) to fit the semantic encoders and exit heads on.")
@click.option("--calibration-trace", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your model: labels of the calibration frames (else the PCA is fitted unsupervised and the heads "
                   "learn the model's own predictions).")
@click.option("--dims", type=click.IntRange(min=1), default=32, show_default=True,
              help="Your model: semantic vector width (PCA dimensions; capped by channels and calibration frames).")
def record_cmd(labels_path, frames_path, model, out, mapping, seed, strength, videos, max_frames, batch, fps, resize,
               normalize, exit_points, input_size, num_classes, class_names_path, weights, calibration_frames,
               calibration_trace, dims) -> None:
    """Record what a model computes on every frame: rendered frames that follow a label trace, or your own.

    Per frame: the semantic vector at every exit point, each exit head's top-1 and entropy, the full
    model's prediction and the share of the frame that changed. The output is a recorded trace
    (traces/FORMAT.md) bound to the model's fingerprint.

    \b
    Rendered (the reference CNN's procedural objects, following the label trace):
      run_sim.py trace record --trace LABELS --out rec.parquet
    Your frames and model (encoders and exit heads fitted on the calibration frames and written
    next to the output as rec.encoders.safetensors and rec.heads.safetensors):
      run_sim.py trace record --frames clips/ --trace labels.parquet --mapping map.json \\
        --model mynet.py:build --weights mynet.safetensors --exit-points layer2,layer3 \\
        --input-size 224x224 --num-classes 1000 --normalize imagenet \\
        --calibration-frames calib/ --calibration-trace calib.parquet --out rec.parquet
    Without --trace, the model's own predictions stand in for the labels, and the trace says so.
    """
    ctx = click.get_current_context()
    user_only = _given(ctx, _USER_MODEL_ONLY)
    from traces.user_model import parse_model_ref

    user_ref = parse_model_ref(model)
    if user_ref is None and user_only:
        raise click.BadParameter("only applies to your own model (--model FILE.py:FUNCTION)", param_hint=user_only[0])
    if frames_path is None:
        if user_ref is not None:
            raise click.BadParameter("your own model records your frames: give --frames", param_hint="--model")
        frames_only = _given(ctx, _FRAMES_ONLY)
        if frames_only:
            raise click.BadParameter("only applies with --frames", param_hint=frames_only[0])
        if labels_path is None:
            raise click.UsageError("give --trace LABELS (rendered frames follow it) or --frames PATH")
        _record_rendered(labels_path, model, out, mapping or "rank", seed, strength, videos, max_frames, batch)
        return
    rendered = _given(ctx, _RENDER_ONLY)
    if rendered:
        raise click.BadParameter("only applies to rendered frames, not --frames", param_hint=rendered[0])
    if user_ref is None and ctx.get_parameter_source("normalize") == click.core.ParameterSource.COMMANDLINE \
            and normalize.strip().lower() != "unit":
        raise click.BadParameter("the reference CNN takes RGB in [0, 1] ('unit')", param_hint="--normalize")
    _record_frames(frames_path, labels_path, model, user_ref, out, mapping, seed, videos, max_frames, batch, fps,
                   resize, normalize, exit_points, input_size, num_classes, class_names_path, weights,
                   calibration_frames, calibration_trace, dims)


def _progress_bar(total, desc: str):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, file=sys.stderr)


def _record_rendered(labels_path, model, out, mapping, seed, strength, videos, max_frames, batch) -> None:
    import numpy as np
    import torch

    from kernels.procedural import CATALOGUE
    from traces.format import RecordedTrace, read_trace, write_trace
    from traces.mapping import file_mapping, frequency_rank_mapping
    from traces.record import RecordSettings, record

    torch.set_num_threads(2)
    whole = read_trace(labels_path)
    labels = whole.labels if isinstance(whole, RecordedTrace) else whole
    names = CATALOGUE.names()
    # The mapping is a property of the whole label trace, so that recordings of different parts of it (a test
    # part and a calibration part, say) map each trace class to the same model class.
    if mapping == "rank":
        cmap = frequency_rank_mapping(labels, names, seed)
    else:
        cmap = file_mapping(Path(mapping), labels, names)
    wanted = [v.strip() for v in videos.split(",") if v.strip()] if videos else None
    labels = labels.pick(wanted, max_frames, labels_path)
    ref = _load_reference_model(model)
    bar = _progress_bar(len(labels), "recording")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        rec = record(labels, ref, cmap, RecordSettings(seed=seed, strength=strength, batch=batch), progress)
    finally:
        bar.close()
    write_trace(rec, out)
    acc = float(np.mean(rec.prediction == rec.true_class))
    click.echo(f"wrote {out}: {len(rec):,} frames of {len(rec.labels.video_names)} videos, "
               f"{len(np.unique(rec.true_class))} model classes, full-model accuracy {acc:.1%}")


def _load_reference_model(model: str):
    from engram.errors import EngramError
    from kernels.reference.store import load_reference

    if model == "reference":
        return load_reference()
    path = Path(model)
    if not path.is_dir():
        raise EngramError(f"--model: expected 'reference', a model directory or FILE.py:FUNCTION, got {model!r}")
    return load_reference(path)


def _label_trace(path: Path):
    from traces.format import RecordedTrace, read_trace

    whole = read_trace(path)
    return whole.labels if isinstance(whole, RecordedTrace) else whole


def _class_mapping(mapping: str | None, labels, labels_path: Path, names: list[str], seed: int, option: str):
    from engram.errors import EngramError
    from traces.mapping import file_mapping, frequency_rank_mapping

    if mapping is None:
        also = ", or --mapping rank" if option == "--trace" else ""
        raise EngramError(f"{labels_path} has its own classes: declare which model class each stands for with "
                          f"--mapping FILE.json ({{trace class: model class}}){also}", field="--mapping")
    if mapping == "rank":
        if option == "--calibration-trace":
            raise EngramError("a calibration trace needs --mapping FILE.json: the rank mapping depends on each "
                              "trace's class frequencies", field="--mapping")
        return frequency_rank_mapping(labels, names, seed)
    return file_mapping(Path(mapping), labels, names)


def _record_frames(frames_path, labels_path, model, user_ref, out, mapping, seed, videos, max_frames, batch, fps,
                   resize, normalize, exit_points, input_size, num_classes, class_names_path, weights,
                   calibration_frames, calibration_trace, dims) -> None:
    import numpy as np
    import torch

    from traces.record_frames import FramesModel, extract, fit_on_calibration, plan_frames, record_frames, write_recording
    from traces.user_model import Normalisation, load_user_model, parse_input_size, parse_normalisation, read_class_names

    torch.set_num_threads(2)
    if user_ref is not None:
        missing = [flag for flag, v in (("--exit-points", exit_points), ("--input-size", input_size),
                                        ("--calibration-frames", calibration_frames)) if v is None]
        if num_classes is None and class_names_path is None:
            missing.append("--num-classes")
        if missing:
            raise click.UsageError(f"your own model needs {', '.join(missing)}"
                                   + (" (its semantic encoders and exit heads are fitted on calibration frames, "
                                      "never on the frames being recorded)" if "--calibration-frames" in missing else ""))
        if calibration_trace is not None and calibration_frames is None:
            raise click.BadParameter("needs --calibration-frames", param_hint="--calibration-trace")
        norm = parse_normalisation(normalize)
        size = parse_input_size(input_size)
        exits = [e.strip() for e in exit_points.split(",") if e.strip()]
        from traces.format import EXIT_NAME

        bad = [e for e in exits if not EXIT_NAME.match(e)]
        if bad:
            raise click.BadParameter(f"{bad[0]!r} cannot name a trace column (letters, digits, _ . -)",
                                     param_hint="--exit-points")
        names = read_class_names(class_names_path) if class_names_path is not None else None
        um = load_user_model(user_ref[0], user_ref[1], exits, size, num_classes, names, weights)
        fm = FramesModel(um.model, um.class_names, norm, {}, {}, um.provenance)
    else:
        from kernels.procedural import CATALOGUE

        ref = _load_reference_model(model)
        norm = Normalisation("unit", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        fm = FramesModel(ref.model, tuple(CATALOGUE.names()), norm, ref.encoders, ref.heads,
                         {"kind": "reference", "name": ref.model.name, "path": model})

    out = Path(out)
    labels = cmap = None
    if labels_path is not None:
        labels = _label_trace(labels_path)
        cmap = _class_mapping(mapping, labels, labels_path, list(fm.class_names), seed, "--trace")
    wanted = [v.strip() for v in videos.split(",") if v.strip()] if videos else None
    plan = plan_frames(frames_path, labels, labels_path, fps, wanted, max_frames)

    fitted = None
    if user_ref is not None:
        cal_labels = cal_map = None
        if calibration_trace is not None:
            cal_labels = _label_trace(calibration_trace)
            cal_map = _class_mapping(mapping, cal_labels, calibration_trace, list(fm.class_names), seed,
                                     "--calibration-trace")
        cal_plan = plan_frames(calibration_frames, cal_labels, calibration_trace, need_fps=False)
        bar = _progress_bar(cal_plan.total(), "calibrating")
        try:
            feats = extract(fm.model, fm.norm, cal_plan, resize, batch, progress=bar.update)
        finally:
            bar.close()
        fitted = fit_on_calibration(fm.model, feats, cal_plan, cal_map, dims)

    bar = _progress_bar(plan.total(), "recording")
    try:
        recording = record_frames(plan, fm, cmap, out, resize, batch, fitted, progress=bar.update)
    finally:
        bar.close()
    write_recording(recording, out)
    rec = recording.trace
    line = f"wrote {out}: {len(rec):,} frames of {len(rec.labels.video_names)} videos"
    if labels is not None:
        acc = float(np.mean(rec.prediction == rec.true_class))
        line += f", {len(np.unique(rec.true_class))} model classes, full-model accuracy {acc:.1%}"
    else:
        line += ", no labels: ground truth is the model's own prediction"
    if recording.sidecars:
        line += "; encoders and exit heads in " + ", ".join(p.name for p in recording.sidecars)
    click.echo(line)
