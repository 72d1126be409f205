"""Property tests for every importer: random valid files import to exactly the frames a brute-force
reading of the primary rules predicts; random corruptions of real files give a FormatError (or a valid
trace), never any other exception."""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.errors import FormatError
from traces.format import iter_rows, validate
from traces.importers import import_trace
from traces.importers.common import ImportOptions
from traces.importers.csv_generic import ColumnSpec, CsvLayout
from traces.importers.kitti import CLASSES as KITTI_CLASSES
from traces.importers.mot import CLASSES as MOT_CLASSES

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "traces"
EPIC100_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
                  "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")
EPIC55_HEADER = ("uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,verb,"
                 "verb_class,noun,noun_class,all_nouns,all_noun_classes")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------ brute-force expectations


def expected_segment_frames(segments, fps):
    """segments: (video, start, stop, [class names]) in file order -> {(video, k): [names]} by the
    latest-start rule, evaluated grid point by grid point."""
    out = {}
    videos = list(dict.fromkeys(s[0] for s in segments))
    for v in videos:
        segs = [(i, s) for i, s in enumerate(segments) if s[0] == v]
        top = max(s[2] for _, s in segs)
        for k in range(0, int(top * fps) + 2):
            t = k / fps
            active = [(s[1], i, s[3]) for i, s in segs if s[1] <= t < s[2]]
            if not active:
                continue
            objs = []
            for _, _, names in sorted(active, reverse=True):
                objs += [n for n in names if n not in objs]
            out[(v, k)] = objs
    return out


def expected_box_frames(boxes, ignore=()):
    """boxes: (video, frame, class, area) in file order -> {(video, frame): [names]} by the largest-box rule."""
    best = {}
    for i, (v, f, c, a) in enumerate(boxes):
        if c in ignore:
            continue
        cur = best.setdefault((v, f), {})
        if c not in cur or a > cur[c][0]:
            cur[c] = (a, i)
    return {key: sorted(cl, key=lambda c: (-cl[c][0], cl[c][1])) for key, cl in best.items()}


def imported(trace):
    return {(r[0], r[1]): [trace.meta.class_names[c] for c in r[4]] for r in iter_rows(trace)}


# ------------------------------------------------------------------------------ strategies

quarter = st.integers(0, 400).map(lambda q: q / 4)  # exact binary fractions: no rounding at grid points
videos = st.sampled_from(["P01_01", "P02_03", "P10_101"])


@st.composite
def segment_lists(draw, n_classes=20):
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        start = draw(quarter)
        stop = start + draw(st.integers(0, 40)) / 4
        nouns = draw(st.lists(st.integers(0, n_classes - 1), min_size=1, max_size=3, unique=True))
        rows.append((draw(videos), start, stop, nouns))
    return rows


def hms(seconds):
    m, s = divmod(seconds, 60)
    return f"00:{int(m):02d}:{s:05.2f}"


def epic_text(rows, layout):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    buf.write((EPIC100_HEADER if layout == "epic100" else EPIC55_HEADER) + "\n")
    for i, (v, a, b, nouns) in enumerate(rows):
        main = nouns[0]
        fa, fb = int(a * 50), int(b * 50)
        alln = str([f"n{c}" for c in nouns]).replace('"', "'")
        if layout == "epic100":
            w.writerow([f"{v}_{i}", v[:3], v, hms(a), hms(a), hms(b), fa, fb, "take x", "take", 0, "x", main, alln, str(nouns)])
        else:
            w.writerow([i, v[:3], v, "take x", hms(a), hms(b), fa, fb, "take", 0, "x", main, alln, str(nouns)])
    return buf.getvalue()


@st.composite
def box_lists(draw, classes, max_frame=30):
    out = []
    for v in draw(st.lists(st.sampled_from(["0000", "0001", "0002"]), min_size=1, max_size=2, unique=True)):
        frames = sorted(draw(st.lists(st.integers(0, max_frame), min_size=1, max_size=8, unique=True)))
        for f in frames:
            for _ in range(draw(st.integers(1, 4))):
                w, h = draw(st.integers(0, 6)), draw(st.integers(0, 6))
                out.append((v, f, draw(st.sampled_from(classes)), w, h))
    return out


def write(tmp, name, text):
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------ valid inputs


@SETTINGS
@given(rows=segment_lists(), fps=st.sampled_from([1, 2, 4]), layout=st.sampled_from(["epic100", "epic55"]))
def test_epic_random_segments_follow_latest_start(tmp_path_factory, rows, fps, layout):
    src = write(tmp_path_factory.mktemp("epic"), "ann.csv", epic_text(rows, layout))
    expected = expected_segment_frames([(v, a, b, [f"#{c}" for c in ns]) for v, a, b, ns in rows], fps)
    if not expected:
        with pytest.raises(FormatError, match="no frame has an object"):
            import_trace(layout, [src], ImportOptions(fps=fps))
        return
    t = import_trace(layout, [src], ImportOptions(fps=fps))
    nouns = t.meta.class_names
    expected = {k: [nouns[int(n[1:])] for n in v] for k, v in expected.items()}
    validate(t)
    assert imported(t) == expected
    assert all(r[2] == r[1] / fps for r in iter_rows(t))


@SETTINGS
@given(rows=segment_lists(), fps=st.sampled_from([1, 2, 4]))
def test_csv_random_segments_follow_latest_start(tmp_path_factory, rows, fps):
    text = "vid;t0;t1;what\n" + "".join(f"{v};{a * 1000:.0f};{b * 1000:.0f};{'|'.join(f'k{c}' for c in ns)}\n"
                                        for v, a, b, ns in rows)
    src = write(tmp_path_factory.mktemp("csv"), "seg.csv", text)
    layout = CsvLayout(delimiter=";", columns={f: ColumnSpec.parse(c) for f, c in
                                               (("video", "vid"), ("start", "t0"), ("stop", "t1"), ("label", "what"))},
                       time_unit="ms", label_sep="|")
    expected = expected_segment_frames([(v, a, b, [f"k{c}" for c in ns]) for v, a, b, ns in rows], fps)
    if not expected:
        with pytest.raises(FormatError):
            import_trace("csv", [src], ImportOptions(fps=fps), layout)
        return
    t = import_trace("csv", [src], ImportOptions(fps=fps), layout)
    assert imported(t) == expected


@SETTINGS
@given(boxes=box_lists(KITTI_CLASSES))
def test_kitti_random_boxes_follow_largest_box(tmp_path_factory, boxes):
    tmp = tmp_path_factory.mktemp("kitti")
    paths = []
    for v in dict.fromkeys(b[0] for b in boxes):
        lines = [f"{f} {i} {c} 0 0 -1.0 10 20 {10 + w} {20 + h} 1.5 1.6 3.9 1.0 1.7 9.0 -1.6"
                 for i, (vv, f, c, w, h) in enumerate(boxes) if vv == v]
        paths.append(write(tmp, f"{v}.txt", "\n".join(lines) + "\n"))
    expected = expected_box_frames([(v, f, c, w * h) for v, f, c, w, h in boxes], ignore=("DontCare",))
    if not expected:
        with pytest.raises(FormatError):
            import_trace("kitti", paths)
        return
    t = import_trace("kitti", paths)
    assert imported(t) == expected


@SETTINGS
@given(boxes=box_lists(list(range(1, 14))))
def test_mot_random_tracks_follow_largest_box(tmp_path_factory, boxes):
    tmp = tmp_path_factory.mktemp("mot")
    paths, in_file_order = [], []
    for v in dict.fromkeys(b[0] for b in boxes):
        # The j-th box of a frame belongs to track j + 1; lines sorted by track then frame, as in MOT files.
        tracks = {}
        for _, f, c, w, h in (b for b in boxes if b[0] == v):
            j = sum(1 for (_, ff) in tracks if ff == f)
            tracks[(j + 1, f)] = (c, w, h)
        rows = sorted(tracks.items())
        lines = [f"{f + 1},{j},5,5,{w},{h},1,{c},1" for (j, f), (c, w, h) in rows]
        paths.append(write(tmp / f"SEQ-{v}" / "gt", "gt.txt", "\n".join(lines) + "\n"))
        in_file_order += [(f"SEQ-{v}", f, MOT_CLASSES[c - 1], w * h) for (j, f), (c, w, h) in rows]
    t = import_trace("mot", paths, ImportOptions(source_fps=30))
    assert imported(t) == expected_box_frames(in_file_order)


@SETTINGS
@given(boxes=box_lists(["car", "bus", "rider", "pedestrian"]))
def test_scalabel_random_frames_follow_largest_box(tmp_path_factory, boxes):
    frames = {}
    for v, f, c, w, h in boxes:
        frames.setdefault((v, f), []).append({"category": c, "box2d": {"x1": 1, "y1": 2, "x2": 1 + w, "y2": 2 + h}})
    data = [{"name": f"{v}-{f}.jpg", "videoName": v, "frameIndex": f, "labels": labs} for (v, f), labs in frames.items()]
    src = write(tmp_path_factory.mktemp("scalabel"), "t.json", json.dumps(data))
    t = import_trace("scalabel", [src])
    assert imported(t) == expected_box_frames([(v, f, c, w * h) for v, f, c, w, h in boxes])


@SETTINGS
@given(boxes=box_lists(["cup", "hand", "bottle"]))
def test_something_else_random_frames_follow_largest_box(tmp_path_factory, boxes):
    data = {}
    for v, f, c, w, h in boxes:
        frames = data.setdefault(v, [])
        if not frames or frames[-1]["name"] != f"{v}/{f + 1:04d}.jpg":
            frames.append({"name": f"{v}/{f + 1:04d}.jpg", "labels": []})
        frames[-1]["labels"].append({"category": c, "box2d": {"x1": 0, "y1": 0, "x2": w, "y2": h}})
    src = write(tmp_path_factory.mktemp("se"), "a.json", json.dumps(data))
    expected = expected_box_frames([(v, f, c, w * h) for v, f, c, w, h in boxes], ignore=("hand",))
    if not expected:
        with pytest.raises(FormatError):
            import_trace("something-else", [src])
        return
    assert imported(import_trace("something-else", [src])) == expected


# ------------------------------------------------------------------------------ corruptions

NOISE = st.text(alphabet=st.sampled_from(list("0123456789-.,;:[]{}\"' \n\tabcXYZé") + ["\x00", "\ufffd"]),
                min_size=1, max_size=6)


@st.composite
def corrupted(draw, text):
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "delete_line", "swap_lines", "replace", "insert"]))
        lines = text.split("\n")
        if kind == "truncate":
            text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
        elif kind == "delete_line" and len(lines) > 1:
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
        elif kind == "swap_lines" and len(lines) > 2:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind in ("replace", "insert") and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + draw(NOISE) + text[i + (1 if kind == "replace" else 0):]
    return text


EGTEA_LAYOUT = CsvLayout(delimiter="whitespace", header=False, columns={"label": ColumnSpec.parse("3+")},
                         extract=((ColumnSpec.parse("0"),
                                   re.compile(r"(?P<video>.+)-(?P<start>\d+)-(?P<stop>\d+)-F\d+-F\d+")),),
                         time_unit="ms", classes_path=FIX / "egtea" / "noun_idx_excerpt.txt")

CORRUPTIBLE = {
    "epic55": (FIX / "epic55" / "EPIC_train_action_labels_P01_01_head.csv", "ann.csv", ImportOptions(fps=1), None),
    "epic100": (ROOT / "traces" / "data" / "epic_kitchens_100_val" / "EPIC_100_validation.csv", "ann.csv",
                ImportOptions(fps=1), 40),
    "kitti": (FIX / "kitti" / "0000.txt", "0000.txt", ImportOptions(), None),
    "mot": (FIX / "mot" / "MOT16-02" / "gt" / "gt.txt", "SEQ/gt/gt.txt", ImportOptions(source_fps=30), None),
    "scalabel": (FIX / "scalabel" / "track_sample_anns_first12.json", "t.json", ImportOptions(), 3000),
    "something-else": (FIX / "something_else" / "annotations_first4.json", "a.json", ImportOptions(), 3000),
    "csv": (FIX / "egtea" / "train_split1_excerpt.txt", "split.txt", ImportOptions(fps=1), None),
}


@pytest.mark.parametrize("fmt", list(CORRUPTIBLE))
def test_corrupted_real_files_give_format_errors_only(fmt, tmp_path_factory):
    src, name, options, keep = CORRUPTIBLE[fmt]
    text = src.read_text(encoding="utf-8")
    if keep is not None:  # a prefix keeps each example fast; JSON prefixes are cut at a record boundary
        text = "\n".join(text.split("\n")[:keep]) if fmt.startswith("epic") else _json_prefix(text, keep)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bad=corrupted(text))
    def check(bad):
        path = write(tmp_path_factory.mktemp("bad"), name, bad)
        try:
            t = import_trace(fmt, [path], options, EGTEA_LAYOUT if fmt == "csv" else None)
        except FormatError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg.strip()
            return
        validate(t)  # whatever parses must be a valid trace

    check()


def _json_prefix(text, chars):
    data = json.loads(text)
    if isinstance(data, list):
        out = []
        while data and len(json.dumps(out)) < chars:
            out.append(data.pop(0))
        return json.dumps(out, indent=1)
    out = {}
    for k, v in data.items():
        out[k] = v[:5]
        if len(json.dumps(out)) > chars:
            break
    return json.dumps(out, indent=1)


def _run_epic55_with_nouns(path):
    return import_trace("epic55", [FIX / "epic55" / "EPIC_train_action_labels_P01_01_head.csv", path], ImportOptions(fps=1))


def _run_kitti_with_class_map(path):
    from traces.importers.common import load_class_map

    return import_trace("kitti", [FIX / "kitti" / "0000.txt"],
                        ImportOptions(class_map=load_class_map(path), class_map_path=path))


def _run_csv_with_classes(path):
    layout = CsvLayout(**{**EGTEA_LAYOUT.__dict__, "classes_path": path})
    return import_trace("csv", [FIX / "egtea" / "train_split1_excerpt.txt"], ImportOptions(fps=1), layout)


def _run_mot_with_seqinfo(path):
    return import_trace("mot", [path.parent / "gt" / "gt.txt"])


AUX = {
    "epic55 noun table": (ROOT / "traces" / "data" / "epic_kitchens_55" / "EPIC_noun_classes.csv", "EPIC_noun_classes.csv",
                          _run_epic55_with_nouns, 40),
    "class map": ("Car,vehicle\nVan,vehicle\nCyclist,person\nPedestrian,person\n", "map.csv", _run_kitti_with_class_map, None),
    "csv classes": (FIX / "egtea" / "noun_idx_excerpt.txt", "noun_idx.txt", _run_csv_with_classes, None),
    "mot seqinfo": (FIX / "mot" / "MOT16-02" / "seqinfo.ini", "seqinfo.ini", _run_mot_with_seqinfo, None),
}


@pytest.mark.parametrize("kind", list(AUX))
def test_corrupted_auxiliary_files_give_format_errors_only(kind, tmp_path_factory):
    src, name, run, keep = AUX[kind]
    text = src.read_text(encoding="utf-8") if isinstance(src, Path) else src
    if keep is not None:
        text = "\n".join(text.split("\n")[:keep])

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bad=corrupted(text))
    def check(bad):
        d = tmp_path_factory.mktemp("aux")
        if kind == "mot seqinfo":
            (d / "gt").mkdir()
            (d / "gt" / "gt.txt").write_text((FIX / "mot" / "MOT16-02" / "gt" / "gt.txt").read_text())
        path = write(d, name, bad)
        try:
            t = run(path)
        except FormatError as exc:
            assert "\n" not in str(exc)
            return
        validate(t)

    check()
