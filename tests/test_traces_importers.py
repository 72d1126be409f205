"""Each importer on real annotation files (checked against values worked out by hand from the files) and
on broken ones: one FormatError naming the file and line (or JSON path), nothing else."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engram.errors import FormatError
from traces.format import iter_rows, read_trace, validate
from traces.importers import import_trace
from traces.importers.common import ImportOptions, load_class_map
from traces.importers.csv_generic import ColumnSpec, CsvLayout

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "traces"
EPIC100 = ROOT / "traces" / "data" / "epic_kitchens_100_val"
EPIC55_ROWS = FIX / "epic55" / "EPIC_train_action_labels_P01_01_head.csv"


def rows_by_frame(trace, video=None):
    return {r[1]: r for r in iter_rows(trace) if video is None or r[0] == video}


def names(trace, ids):
    return [trace.meta.class_names[i] for i in ids]


# --------------------------------------------------------------------------------------- EPIC-KITCHENS


def test_epic55_real_rows_sampled_with_latest_start_rule():
    t = import_trace("epic55", [EPIC55_ROWS], ImportOptions(fps=1))
    validate(t)
    assert t.meta.class_names[185] == "celery" and t.num_classes == 352  # class id = EPIC-55 noun id
    assert t.meta.primary_rule.name == "latest-start"
    r = rows_by_frame(t)
    # uid 0 'open door' 00:00:00.14-00:00:03.37 -> samples at 1, 2, 3 s; 'door' is noun class 8 (cupboard).
    assert [f for f in r if f <= 4] == [1, 2, 3] and r[1][3] == 8
    # uid 9 carrot 24.48-27.94 and uid 10 drawer 24.97-26.20 overlap: the later-started drawer is primary.
    assert names(t, r[25][4]) == ["drawer", "carrot"] and names(t, r[26][4]) == ["drawer", "carrot"]
    assert names(t, r[27][4]) == ["carrot"]
    # uid 45 'pour courgette onto pan' lists two nouns [69, 1].
    assert names(t, r[251][4]) == ["courgette", "pan"]
    # uid 68: all_noun_classes [185, 25] (its all_nouns text disagrees; class ids are what count).
    assert names(t, r[355][4]) == ["celery", "bin"]
    # Gaps keep real time: nothing between 9.49 s and 12.77 s.
    assert 10 not in r and 11 not in r and 12 not in r and r[13][2] == 13.0


def test_epic100_shipped_trace_is_reproducible_from_the_shipped_csv():
    shipped = read_trace(ROOT / "traces" / "data" / "epic100_val.parquet")
    again = import_trace("epic100", [EPIC100 / "EPIC_100_validation.csv", EPIC100 / "EPIC_100_noun_classes_v2.csv"],
                         ImportOptions(fps=2))
    assert shipped.video_names == again.video_names and len(shipped.video_names) == 138
    for name in ("video", "frame", "time_s", "label", "objects_offsets", "objects_values"):
        np.testing.assert_array_equal(getattr(shipped, name), getattr(again, name))
    assert shipped.meta.class_names == again.meta.class_names and shipped.meta.fps == 2.0
    assert "CC BY-NC 4.0" in shipped.meta.license and "Damen" in shipped.meta.attribution


def test_epic100_first_segments_by_hand(tmp_path):
    lines = (EPIC100 / "EPIC_100_validation.csv").read_text().splitlines()
    src = tmp_path / "head.csv"
    src.write_text("\n".join(lines[:3]) + "\n")
    # P01_11_0 take plate 0.00-1.89, P01_11_1 put down plate 1.56-2.45 (plate = noun 2), sampled at 4 fps.
    t = import_trace("epic100", [src], ImportOptions(fps=4))
    assert [(r[1], r[2], r[4]) for r in iter_rows(t)] == [(k, k / 4, [2]) for k in range(0, 10)]
    assert t.meta.class_names[2] == "plate" and t.video_names == ("P01_11",)


@pytest.mark.parametrize("edit,needle,line", [
    (lambda ls: ls[:2] + [ls[2][: len(ls[2]) // 2]], "expected 15 fields", 3),
    (lambda ls: ls[:2] + [ls[2].replace(",2,['plate'],[2]", ",999,['plate'],[999]")], "unknown noun class 999", 3),
    (lambda ls: ls[:2] + [ls[2].replace("00:00:02.45", "00:00:01.00")], "before start_timestamp", 3),
    (lambda ls: ls[:2] + [ls[2].replace("00:00:02.45", "00:00:2x.45")], "timestamp", 3),
    (lambda ls: ls[:2] + [ls[2].replace("[2]", "[2")], "list of class ids", 3),
    (lambda ls: ls[:2] + [ls[2].replace("take", '"take')], "malformed CSV", 3),
])
def test_epic100_broken_rows_name_file_and_line(tmp_path, edit, needle, line):
    lines = (EPIC100 / "EPIC_100_validation.csv").read_text().splitlines()[:3]
    lines[2] = "P01_11_1,P01,P01_11,00:00:01.700,00:00:01.56,00:00:02.45,93,147,take plate,take,0,plate,2,['plate'],[2]"
    src = tmp_path / "bad.csv"
    src.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(FormatError) as err:
        import_trace("epic100", [src], ImportOptions(fps=2))
    assert err.value.path == str(src) and err.value.line == line and needle in str(err.value), str(err.value)


def test_epic_layout_mixup_and_empty_inputs(tmp_path):
    with pytest.raises(FormatError, match="use --format epic55"):
        import_trace("epic100", [EPIC55_ROWS])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FormatError, match="empty file"):
        import_trace("epic55", [empty])
    header = tmp_path / "header.csv"
    header.write_text(EPIC55_ROWS.read_text().splitlines()[0] + "\n")
    with pytest.raises(FormatError, match="no rows"):
        import_trace("epic55", [header])
    with pytest.raises(FormatError, match="file not found"):
        import_trace("epic55", [tmp_path / "missing.csv"])
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 20)
    with pytest.raises(FormatError, match="not UTF-8"):
        import_trace("epic55", [binary])


def test_video_filter_and_unknown_video():
    t = import_trace("epic100", [EPIC100 / "EPIC_100_validation.csv"], ImportOptions(fps=1, videos=("P02_13", "P01_11")))
    assert t.video_names == ("P01_11", "P02_13")  # file order, not the order asked
    with pytest.raises(FormatError, match="P99_99"):
        import_trace("epic100", [EPIC100 / "EPIC_100_validation.csv"], ImportOptions(videos=("P99_99",)))


# --------------------------------------------------------------------------------------- KITTI


def test_kitti_real_lines_largest_box_and_dontcare_ignored():
    t = import_trace("kitti", [FIX / "kitti" / "0000.txt"])
    validate(t)
    assert t.video_names == ("0000",) and t.meta.fps == 10.0 and "DontCare" not in t.meta.class_names
    (row,) = list(iter_rows(t))
    # Areas: Cyclist 193.5 x 212.5 = 41,111 > Van 158.5 x 130.6 = 20,701 > Pedestrian 98.3 x 157.3 = 15,468.
    assert names(t, row[4]) == ["Cyclist", "Van", "Pedestrian"]
    kept = import_trace("kitti", [FIX / "kitti" / "0000.txt"], ImportOptions(ignore_classes=()))
    assert "DontCare" in kept.meta.class_names
    assert names(kept, next(iter_rows(kept))[4])[-1] == "DontCare"  # 26 x 30 px: smallest


def kitti_line(frame, kind="Car", left=0, top=0, right=10, bottom=10, fields=17):
    vals = [frame, 0, kind, 0, 0, -1.5, left, top, right, bottom, 1.5, 1.6, 3.9, 1.0, 1.7, 9.0, -1.6, 0.9]
    return " ".join(str(v) for v in vals[:fields])


@pytest.mark.parametrize("lines,needle,line", [
    ([kitti_line(0), kitti_line(1, fields=16)], "expected 17 values", 2),
    ([kitti_line(0), kitti_line(1, kind="Bus")], "unknown class 'Bus'", 2),
    ([kitti_line(2), kitti_line(1)], "out of order", 2),
    ([kitti_line(0), kitti_line(1, left=20, right=10)], "negative size", 2),
    ([kitti_line(0).replace("-1.5", "nan")], "finite", 1),
])
def test_kitti_broken(tmp_path, lines, needle, line):
    src = tmp_path / "0001.txt"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError) as err:
        import_trace("kitti", [src])
    assert err.value.line == line and needle in str(err.value) and str(src) in str(err.value)


def test_kitti_thinning_to_a_lower_fps(tmp_path):
    src = tmp_path / "0002.txt"
    src.write_text("\n".join(kitti_line(f, "Car" if f % 2 else "Van") for f in range(10)) + "\n")
    t = import_trace("kitti", [src], ImportOptions(fps=5))
    assert [r[1] for r in iter_rows(t)] == list(range(5))
    assert [r[2] for r in iter_rows(t)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert {r[3] for r in iter_rows(t)} == {t.meta.class_names.index("Van")}  # even source frames kept
    with pytest.raises(FormatError, match="cannot be upsampled"):
        import_trace("kitti", [src], ImportOptions(fps=25))


# --------------------------------------------------------------------------------------- MOTChallenge


def test_mot_real_lines_sorted_by_track_become_frames():
    t = import_trace("mot", [FIX / "mot" / "MOT16-02" / "gt" / "gt.txt"])
    validate(t)
    assert t.video_names == ("MOT16-02",) and t.meta.fps == 30.0
    rows = list(iter_rows(t))
    # Frames 1-2: pedestrian 167x379 beats the static person 97x109; frames 3-9: the static person alone.
    assert [r[1] for r in rows] == list(range(9))
    assert names(t, rows[0][4]) == ["pedestrian", "static person"] and names(t, rows[1][4]) == ["pedestrian", "static person"]
    assert all(names(t, r[4]) == ["static person"] for r in rows[2:])
    assert rows[3][2] == pytest.approx(3 / 30)


def test_mot_broken(tmp_path):
    seq = tmp_path / "SEQ-01"
    (seq / "gt").mkdir(parents=True)
    gt = seq / "gt" / "gt.txt"
    cases = [
        ("1,1,0,0,5,5,1,1,1\n1,2,0,0,5,5,1,1\n", "expected 9 values", 2),
        ("1,1,0,0,5,5,1,14,1\n", "unknown class id 14", 1),
        ("2,1,0,0,5,5,1,1,1\n1,1,0,0,5,5,1,1,1\n", "out of order for track 1", 2),
        ("1,1,0,0,5,5,1,1,1\n1,1,0,0,5,5,1,1,1\n", "out of order", 2),
        ("1,-1,0,0,5,5,0.9,-1,-1,-1\n", "detection file", 1),
        ("1,1,0,0,-5,5,1,1,1\n", "negative box size", 1),
        ("0,1,0,0,5,5,1,1,1\n", "must be >= 1", 1),
    ]
    for text, needle, line in cases:
        gt.write_text(text)
        with pytest.raises(FormatError) as err:
            import_trace("mot", [gt], ImportOptions(source_fps=25))
        assert err.value.line == line and needle in str(err.value), (text, str(err.value))
    gt.write_text("1,1,0,0,5,5,1,1,1\n")
    with pytest.raises(FormatError, match="--source-fps"):
        import_trace("mot", [gt])
    t = import_trace("mot", [gt], ImportOptions(source_fps=25))
    assert t.video_names == ("SEQ-01",) and t.meta.fps == 25
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=SEQ-01\nframeRate=fast\n")
    with pytest.raises(FormatError, match="frameRate"):
        import_trace("mot", [gt])


def test_mot15_layout_is_pedestrians(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,1,-1,-1,-1\n2,1,11,10,20,40,1,-1,-1,-1\n")
    t = import_trace("mot", [gt], ImportOptions(source_fps=7))
    assert [names(t, r[4]) for r in iter_rows(t)] == [["pedestrian"], ["pedestrian"]]


# --------------------------------------------------------------------------------------- Scalabel / BDD100K


def test_scalabel_real_bdd100k_frames():
    src = FIX / "scalabel" / "track_sample_anns_first12.json"
    t = import_trace("scalabel", [src])
    validate(t)
    frames = json.loads(src.read_text())
    assert t.video_names == ("b1c66a42-6f7d68ca",) and len(t) == 12 and t.meta.fps == 5.0
    assert t.meta.class_names == ("car", "motorcycle", "rider", "truck")
    for r, fr in zip(iter_rows(t), frames):
        areas = {}
        for lab in fr["labels"]:
            b = lab["box2d"]
            areas[lab["category"]] = max(areas.get(lab["category"], 0), (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]))
        expected = sorted(areas, key=lambda c: -areas[c])
        assert names(t, r[4]) == expected and r[1] == fr["frameIndex"] and r[2] == pytest.approx(fr["frameIndex"] / 5)


def test_scalabel_broken(tmp_path):
    src = FIX / "scalabel" / "track_sample_anns_first12.json"
    text = src.read_text()
    bad = tmp_path / "truncated.json"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(FormatError, match="malformed JSON") as err:
        import_trace("scalabel", [bad])
    assert err.value.line == 1 and str(bad) in str(err.value)
    frames = json.loads(text)
    frames[5]["frameIndex"] = 2
    bad.write_text(json.dumps(frames))
    with pytest.raises(FormatError, match="out of order") as err:
        import_trace("scalabel", [bad])
    assert err.value.field == "[5].frameIndex"
    frames = json.loads(text)
    del frames[3]["labels"][7]["category"]
    bad.write_text(json.dumps(frames))
    with pytest.raises(FormatError, match="category") as err:
        import_trace("scalabel", [bad])
    assert err.value.field == "[3].labels[7].category"
    bad.write_text("[]")
    with pytest.raises(FormatError, match="no frames"):
        import_trace("scalabel", [bad])


# --------------------------------------------------------------------------------------- Something-Else


def test_something_else_real_annotations():
    src = FIX / "something_else" / "annotations_first4.json"
    t = import_trace("something-else", [src])
    validate(t)
    assert t.video_names == ("151201", "3201", "2003", "44862") and t.meta.fps == 12.0
    assert "hand" not in t.meta.class_names
    first = next(iter_rows(t))
    assert first[:3] == ("151201", 0, 0.0) and names(t, first[4]) == ["bottle"]
    with_hands = import_trace("something-else", [src], ImportOptions(ignore_classes=()))
    assert "hand" in with_hands.meta.class_names and len(with_hands) >= len(t)
    assert names(with_hands, next(iter_rows(with_hands))[4]) == ["bottle", "hand"]  # bottle box is larger


def test_something_else_broken(tmp_path):
    data = json.loads((FIX / "something_else" / "annotations_first4.json").read_text())
    data["3201"][4]["name"] = "3201/0002.jpg"
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="out of order") as err:
        import_trace("something-else", [bad])
    assert err.value.field == "['3201'][4].name"
    data["3201"][4]["name"] = "no-number.jpg"
    bad.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="frame number"):
        import_trace("something-else", [bad])


# --------------------------------------------------------------------------------------- generic CSV


def egtea_layout(**kw):
    base = dict(delimiter="whitespace", header=False, columns={"label": ColumnSpec.parse("3+")},
                extract=((ColumnSpec.parse("0"), re.compile(r"(?P<video>.+)-(?P<start>\d+)-(?P<stop>\d+)-F\d+-F\d+")),),
                time_unit="ms", classes_path=FIX / "egtea" / "noun_idx_excerpt.txt")
    base.update(kw)
    return CsvLayout(**base)


def test_csv_egtea_split_file_without_header():
    t = import_trace("csv", [FIX / "egtea" / "train_split1_excerpt.txt"], ImportOptions(fps=1), egtea_layout())
    validate(t)
    assert t.meta.class_names == ("recipe", "fridge", "eating_utensil")
    assert t.video_names == ("P21-R04-ContinentalBreakfast", "P20-R04-ContinentalBreakfast")
    p21 = rows_by_frame(t, "P21-R04-ContinentalBreakfast")
    # recipe 79.222-82.678 s -> 80, 81, 82; eating utensil 92.389-93.954 -> 93; fridge 278.309-281.455 -> 279..281.
    assert [f for f in p21 if f < 100] == [80, 81, 82, 93]
    assert names(t, p21[93][4]) == ["eating_utensil"] and names(t, p21[280][4]) == ["fridge"]
    p20 = rows_by_frame(t, "P20-R04-ContinentalBreakfast")
    assert sorted(f for f in p20 if f < 100) == [92, 93, 94, 95, 96] and names(t, p20[92][4]) == ["recipe"]


def test_csv_with_header_names_and_frames(tmp_path):
    src = tmp_path / "labels.csv"
    src.write_text("clip,frame,objects\nA,0,cup|plate\nA,3,plate\nB,1,knife\n")
    layout = CsvLayout(columns={"video": ColumnSpec.parse("clip"), "frame": ColumnSpec.parse("frame"),
                                "label": ColumnSpec.parse("objects")}, label_sep="|")
    t = import_trace("csv", [src], ImportOptions(source_fps=10), layout)
    assert t.meta.class_names == ("cup", "knife", "plate")
    assert [(r[0], r[1], names(t, r[4])) for r in iter_rows(t)] == [
        ("A", 0, ["cup", "plate"]), ("A", 3, ["plate"]), ("B", 1, ["knife"])]
    assert t.meta.primary_rule.name == "first-label"


def test_csv_broken(tmp_path):
    src = FIX / "egtea" / "train_split1_excerpt.txt"
    bad = tmp_path / "split.txt"
    lines = src.read_text().splitlines()
    bad.write_text("\n".join(lines[:4] + [lines[4].replace(" 1 1 1", " 1 1 9")] + lines[5:]) + "\n")
    with pytest.raises(FormatError) as err:
        import_trace("csv", [bad], ImportOptions(), egtea_layout())
    assert err.value.line == 5 and "unknown class id 9" in str(err.value)
    bad.write_text("\n".join(lines[:2] + ["P21-R04-Oops 1 1 1"]) + "\n")
    with pytest.raises(FormatError, match="does not match --extract") as err:
        import_trace("csv", [bad], ImportOptions(), egtea_layout())
    assert err.value.line == 3
    with pytest.raises(FormatError, match="no label column"):
        import_trace("csv", [src], ImportOptions(), egtea_layout(columns={}))
    with pytest.raises(FormatError, match="needs --source-fps"):
        import_trace("csv", [src], ImportOptions(), egtea_layout(time_unit="frames"))


# --------------------------------------------------------------------------------------- class maps


def test_class_map_merges_and_unmapped_class_names_its_line(tmp_path):
    cmap = tmp_path / "map.csv"
    cmap.write_text("Car,vehicle\nVan,vehicle\nCyclist,person\nPedestrian,person\n")
    t = import_trace("kitti", [FIX / "kitti" / "0000.txt"],
                     ImportOptions(class_map=load_class_map(cmap), class_map_path=cmap))
    assert t.meta.class_names == ("vehicle", "person")
    assert names(t, next(iter_rows(t))[4]) == ["person", "vehicle"]  # cyclist box largest, then van
    cmap.write_text("Car,vehicle\nVan,vehicle\nCyclist,person\n")
    with pytest.raises(FormatError) as err:
        import_trace("kitti", [FIX / "kitti" / "0000.txt"],
                     ImportOptions(class_map=load_class_map(cmap), class_map_path=cmap))
    assert err.value.line == 4 and "'Pedestrian' is not in the class map" in str(err.value)
    jmap = tmp_path / "map.json"
    jmap.write_text('{"Car": ""}')
    with pytest.raises(FormatError, match="non-empty class name"):
        load_class_map(jmap)


def test_ignoring_an_unknown_class_is_refused():
    with pytest.raises(FormatError, match="not a class of this format"):
        import_trace("kitti", [FIX / "kitti" / "0000.txt"], ImportOptions(ignore_classes=("Bus",)))


def test_fixture_licenses_sit_next_to_the_data():
    for sub in ("epic55", "kitti", "mot", "scalabel", "something_else", "egtea"):
        readme = (FIX / sub / "README.md").read_text()
        assert "License" in readme or "license" in readme, sub
    assert (EPIC100 / "license.txt").read_text().startswith("All files in this dataset")
