"""The trace file format: round trips of both levels, and a clear FormatError for every broken rule."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram.errors import FormatError
from traces.format import (
    INPUT_DESC_DIMS, METADATA_KEY, LabelTrace, ModelInfo, PrimaryRule, RecordedTrace, TraceMeta, check_metadata, from_table, iter_rows,
    read_label_trace, read_metadata, read_recorded_trace, read_trace, to_table, validate, write_trace,
)

META = TraceMeta("unit test", "CC0-1.0", "nobody", 10.0, ("cup", "plate", "knife", "pan"),
                 PrimaryRule("largest-box", "largest box wins"), {"tool": "test"})


def small_labels() -> LabelTrace:
    return LabelTrace.from_frames(
        META,
        video=["a", "a", "a", "b", "b"],
        frame=[0, 1, 5, 0, 2],
        time_s=[0.0, 0.1, 0.5, 0.0, 0.2],
        objects=[[1], [1, 0], [2, 1, 3], [3], [0]],
    )


def model_info(exits=("b1", "b2"), dims=(4, 8)) -> ModelInfo:
    return ModelInfo("toy", "a" * 64, "b" * 64, exits, dims, ("m0", "m1", "m2"), (0, 1, 2, 1))


def unit_rows(rng, n, d):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def small_recorded(seed=0) -> RecordedTrace:
    labels = small_labels()
    model = model_info()
    rng = np.random.default_rng(seed)
    n = len(labels)
    mapping = np.asarray(model.class_mapping)
    return RecordedTrace(
        labels=labels,
        model=model,
        true_class=mapping[labels.label],
        prediction=rng.integers(0, 3, n),
        vectors={"b1": unit_rows(rng, n, 4), "b2": unit_rows(rng, n, 8)},
        head_pred={"b1": rng.integers(0, 3, n), "b2": rng.integers(0, 3, n)},
        head_entropy={"b1": rng.uniform(0, np.log(3), n), "b2": rng.uniform(0, np.log(3), n)},
        frame_diff=[1.0, 0.3, 0.0, 1.0, 0.5],
        input_desc=unit_rows(rng, n, INPUT_DESC_DIMS),
    )


# --------------------------------------------------------------------------------------- round trips


def test_label_trace_round_trip(tmp_path):
    t = small_labels()
    path = write_trace(t, tmp_path / "labels.parquet")
    back = read_trace(path)
    assert isinstance(back, LabelTrace) and back.level == "labels"
    assert list(iter_rows(back)) == list(iter_rows(t))
    assert back.meta == t.meta
    assert back.video_names == ("a", "b")
    assert back.objects(2).tolist() == [2, 1, 3]
    assert [b for b in back.video_bounds()] == [("a", 0, 3), ("b", 3, 5)]
    schema = pq.read_schema(path)
    assert pa.types.is_dictionary(schema.field("video").type)
    assert schema.field("objects").type.value_type == pa.int32()


def test_recorded_trace_round_trip(tmp_path):
    t = small_recorded()
    path = write_trace(t, tmp_path / "rec.parquet")
    back = read_recorded_trace(path)
    assert back.model == t.model
    assert list(iter_rows(back.labels)) == list(iter_rows(t.labels))
    for e in ("b1", "b2"):
        assert back.vectors[e].dtype == np.float16
        np.testing.assert_array_equal(back.vectors[e], t.vectors[e])  # already float16 in memory: exact
        np.testing.assert_array_equal(back.head_pred[e], t.head_pred[e])
        np.testing.assert_array_equal(back.head_entropy[e], t.head_entropy[e])
    np.testing.assert_array_equal(back.frame_diff, t.frame_diff)
    np.testing.assert_array_equal(back.true_class, [1, 1, 2, 1, 0])
    types = {f.name: f.type for f in pq.read_schema(path)}
    assert types["vec_b2"] == pa.list_(pa.float16(), 8)
    assert types["head_entropy_b1"] == pa.float32()
    assert list(types)[-2:] == ["frame_diff", "input_desc"]
    # A recorded trace's labels read as a label trace; a label trace is refused where a recording is needed.
    assert len(read_label_trace(path)) == 5
    write_trace(small_labels(), tmp_path / "labels.parquet")
    with pytest.raises(FormatError, match="label trace"):
        read_recorded_trace(tmp_path / "labels.parquet")


def test_metadata_is_readable_alone_and_matches_schema(tmp_path):
    path = write_trace(small_recorded(), tmp_path / "rec.parquet")
    meta = read_metadata(path)
    assert meta["format"] == "engram.trace" and meta["version"] == 1 and meta["level"] == "recorded"
    assert meta["model"]["semantic_dims"] == [4, 8]
    assert meta["primary_rule"]["name"] == "largest-box"


label_rows = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 5), st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True)),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(label_rows)
def test_random_label_traces_round_trip(tmp_path_factory, rows):
    meta = TraceMeta("prop", "CC0-1.0", "x", 5.0, tuple(f"c{i}" for i in range(6)), PrimaryRule("first-label", "d"))
    rows = sorted(rows, key=lambda r: r[0])  # group by video
    video, frame, time_s, objects = [], [], [], []
    last = {}
    for v, step, objs in rows:
        f = last.get(v, -1) + step
        last[v] = f
        video.append(f"v{v}")
        frame.append(f)
        time_s.append(f / 5.0)
        objects.append(objs)
    t = LabelTrace.from_frames(meta, video, frame, time_s, objects)
    path = write_trace(t, tmp_path_factory.mktemp("rt") / "t.parquet")
    assert list(iter_rows(read_trace(path))) == list(iter_rows(t))


def test_select_rows_keeps_objects_aligned():
    t = small_labels()
    sub = t.select_rows(np.array([False, True, True, True, False]))
    assert [(r[0], r[1], r[4]) for r in iter_rows(sub)] == [("a", 1, [1, 0]), ("a", 5, [2, 1, 3]), ("b", 0, [3])]
    validate(sub)


# --------------------------------------------------------------------------------------- label rules


def relabel(t: LabelTrace, **changes) -> LabelTrace:
    fields = dict(meta=t.meta, video_names=t.video_names, video=t.video, frame=t.frame, time_s=t.time_s,
                  label=t.label, objects_offsets=t.objects_offsets, objects_values=t.objects_values)
    fields.update(changes)
    return LabelTrace(**fields)


@pytest.mark.parametrize("changes,field,needle", [
    (dict(frame=[0, 2, 1, 0, 2]), "frame", "strictly increasing"),
    (dict(frame=[0, 1, 1, 0, 2]), "frame", "strictly increasing"),
    (dict(frame=[-1, 1, 5, 0, 2]), "frame", "negative"),
    (dict(time_s=[0.0, 0.3, 0.2, 0.0, 0.1]), "time_s", "decreases"),
    (dict(time_s=[0.0, np.nan, 0.5, 0.0, 0.2]), "time_s", "non-finite"),
    (dict(label=[1, 1, 2, 3, 4], objects_values=[1, 1, 0, 2, 1, 3, 3, 4]), "label", "outside the 4 class_names"),
    (dict(label=[0, 1, 2, 3, 0]), "objects", "first object must be the primary"),
    (dict(objects_values=[1, 1, 1, 2, 1, 3, 3, 0]), "objects", "listed twice"),
    (dict(video=[0, 1, 0, 1, 1]), "video", "grouped by video"),
    (dict(video=[1, 1, 1, 0, 0]), "video", "grouped by video"),
    (dict(video_names=("a", "a")), "video", "not unique"),
])
def test_label_rule_breaches_are_named(changes, field, needle):
    t = relabel(small_labels(), **changes)
    with pytest.raises(FormatError) as err:
        validate(t, path="x.parquet")
    assert err.value.field == field and needle in err.value.message
    assert str(err.value).startswith("x.parquet: ")


def test_empty_trace_and_empty_object_list_are_rejected():
    with pytest.raises(FormatError, match="no frames"):
        validate(LabelTrace.from_frames(META, [], [], [], []))
    with pytest.raises(FormatError, match="at least one object"):
        LabelTrace.from_frames(META, ["a"], [0], [0.0], [[]])


def test_bad_metadata_is_named_by_field():
    bad = json.loads(json.dumps({"format": "engram.trace", "version": 1, "level": "labels", "source": "s",
                                 "license": "l", "attribution": "a", "fps": 0, "class_names": ["x"],
                                 "primary_rule": {"name": "r", "description": "d"}}))
    with pytest.raises(FormatError) as err:
        check_metadata(bad)
    assert err.value.field == "fps"
    bad["fps"] = 5
    bad["class_names"] = ["x", "x"]
    with pytest.raises(FormatError, match="unique|non-unique"):
        check_metadata(bad)
    bad["class_names"] = ["x"]
    bad["level"] = "recorded"
    with pytest.raises(FormatError, match="model"):
        check_metadata(bad)
    bad["level"] = "labels"
    bad["version"] = 2
    with pytest.raises(FormatError, match="newer than this reader"):
        check_metadata(bad)


def test_write_refuses_an_invalid_trace_and_leaves_nothing(tmp_path):
    out = tmp_path / "t.parquet"
    with pytest.raises(FormatError):
        write_trace(relabel(small_labels(), frame=[0, 2, 1, 0, 2]), out)
    assert list(tmp_path.iterdir()) == []
    write_trace(small_labels(), out)
    before = out.read_bytes()
    with pytest.raises(FormatError):
        write_trace(relabel(small_labels(), frame=[0, 2, 1, 0, 2]), out)
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


# --------------------------------------------------------------------------------------- recorded rules


def rerecord(t: RecordedTrace, **changes) -> RecordedTrace:
    fields = dict(labels=t.labels, model=t.model, true_class=t.true_class, prediction=t.prediction, vectors=t.vectors,
                  head_pred=t.head_pred, head_entropy=t.head_entropy, frame_diff=t.frame_diff, input_desc=t.input_desc)
    fields.update(changes)
    return RecordedTrace(**fields)


def test_recorded_rule_breaches_are_named():
    t = small_recorded()
    n = len(t)
    cases = [
        (dict(true_class=[0, 1, 2, 1, 0]), "true_class", "class_mapping[label]"),
        (dict(prediction=[0, 1, 3, 0, 0]), "prediction", "outside the model's 3 classes"),
        (dict(vectors={"b1": np.ones((n, 4)), "b2": t.vectors["b2"]}), "vec_b1", "not L2-normalised"),
        (dict(vectors={"b1": t.vectors["b1"][:, :3] / np.linalg.norm(t.vectors["b1"][:, :3].astype(float), axis=1,
                                                                      keepdims=True),
                       "b2": t.vectors["b2"]}), "vec_b1", "semantic_dims"),
        (dict(vectors={"b1": t.vectors["b1"]}), "vectors", "missing ['b2']"),
        (dict(head_pred={"b1": t.head_pred["b1"], "b2": t.head_pred["b2"], "b3": t.head_pred["b2"]}), "head_pred",
         "not in the model's exit points"),
        (dict(head_entropy={"b1": np.full(n, 2.0), "b2": t.head_entropy["b2"]}), "head_entropy_b1", "outside [0, ln(3)]"),
        (dict(frame_diff=[0.9, 0.3, 0.0, 1.0, 0.5]), "frame_diff", "first frame"),
        (dict(frame_diff=[1.0, 1.3, 0.0, 1.0, 0.5]), "frame_diff", "outside [0, 1]"),
        (dict(input_desc=np.full((n, INPUT_DESC_DIMS), 0.5)), "input_desc", "neither unit-norm nor zero"),
        (dict(input_desc=np.zeros((n, 3))), "input_desc", "expected (5, 48)"),
        (dict(model=model_info(dims=(4,))), "model/semantic_dims", "1 semantic_dims for 2 exit points"),
    ]
    for changes, field, needle in cases:
        with pytest.raises(FormatError) as err:
            validate(rerecord(t, **changes))
        assert err.value.field == field, (field, err.value)
        assert needle in err.value.message, (needle, err.value)


def test_class_mapping_must_cover_every_primary_class():
    t = small_recorded()
    model = ModelInfo("toy", "a" * 64, "b" * 64, ("b1", "b2"), (4, 8), ("m0", "m1", "m2"), (0, 1, -1, 1))
    with pytest.raises(FormatError) as err:
        validate(rerecord(t, model=model, true_class=[1, 1, 0, 1, 0]))
    assert err.value.field == "model/class_mapping" and "'knife'" in err.value.message and "unmapped" in err.value.message
    # -1 is fine for a class that is never primary: only 'cup' (0) is primary in this variant.
    labels = LabelTrace.from_frames(META, ["a", "a"], [0, 1], [0, 0.1], [[0, 2], [0]])
    rng = np.random.default_rng(1)
    ok = RecordedTrace(labels, model, true_class=[0, 0], prediction=[0, 0],
                       vectors={"b1": unit_rows(rng, 2, 4), "b2": unit_rows(rng, 2, 8)},
                       head_pred={"b1": [0, 0], "b2": [0, 0]}, head_entropy={"b1": [0, 0], "b2": [0, 0]},
                       frame_diff=[1, 0], input_desc=np.zeros((2, INPUT_DESC_DIMS)))
    validate(ok)


def test_fractional_or_overflowing_ids_are_refused_not_truncated():
    with pytest.raises(FormatError, match="expected integers"):
        rerecord(small_recorded(), prediction=[0.5, 1, 1, 1, 1])
    with pytest.raises(FormatError, match="out of range"):
        rerecord(small_recorded(), prediction=[2**40, 1, 1, 1, 1])


# --------------------------------------------------------------------------------------- damaged files


def write_table(path, table):
    pq.write_table(table, path)
    return path


def test_damaged_files_give_one_clear_error(tmp_path):
    good = to_table(small_recorded())
    cases = {}
    cases["garbage.parquet"] = None
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 this is not parquet" * 3)
    (tmp_path / "empty.parquet").write_bytes(b"")
    cases["empty.parquet"] = None
    write_table(tmp_path / "nometa.parquet", good.replace_schema_metadata({}))
    write_table(tmp_path / "badjson.parquet", good.replace_schema_metadata({METADATA_KEY: b"{not json"}))
    write_table(tmp_path / "dropcol.parquet", good.drop_columns(["head_pred_b2"]))
    write_table(tmp_path / "extracol.parquet", good.append_column("vec_b3", good.column("vec_b1")))
    wrong = good.set_column(good.schema.get_field_index("frame"), "frame", good.column("frame").cast(pa.int32()))
    write_table(tmp_path / "wrongtype.parquet", wrong)
    meta = json.loads(good.schema.metadata[METADATA_KEY])
    meta["model"]["semantic_dims"] = [4, 16]
    write_table(tmp_path / "width.parquet", good.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}))
    meta = json.loads(good.schema.metadata[METADATA_KEY])
    meta["model"]["exit_points"] = ["b1", "c2"]
    write_table(tmp_path / "exits.parquet", good.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}))
    nulls = good.set_column(good.schema.get_field_index("label"), "label", pa.array([1, None, 2, 3, 0], pa.int32()))
    write_table(tmp_path / "nulls.parquet", nulls)
    expected = {
        "garbage.parquet": "not a readable Parquet file",
        "empty.parquet": "empty file",
        "nometa.parquet": "not an Engram trace",
        "badjson.parquet": "not valid JSON",
        "dropcol.parquet": "missing column",
        "extracol.parquet": "unexpected column",
        "wrongtype.parquet": "has type int32, expected int64",
        "width.parquet": "expected fixed_size_list<item: halffloat>[16]",
        "exits.parquet": "missing column",
        "nulls.parquet": "missing (null) values",
    }
    for name, needle in expected.items():
        with pytest.raises(FormatError) as err:
            read_trace(tmp_path / name)
        msg = str(err.value)
        assert name in msg and needle in msg, (name, msg)
        assert "\n" not in msg
    with pytest.raises(FormatError, match="file not found"):
        read_trace(tmp_path / "nope.parquet")


def test_plain_string_video_column_from_another_writer_is_accepted(tmp_path):
    table = to_table(small_labels())
    table = table.set_column(0, "video", table.column("video").cast(pa.string()))
    back = read_trace(write_table(tmp_path / "plain.parquet", table))
    assert back.video_names == ("a", "b") and back.video.tolist() == [0, 0, 0, 1, 1]


def test_sliced_multi_chunk_tables_read_correctly(tmp_path):
    table = to_table(small_recorded())
    path = tmp_path / "chunks.parquet"
    pq.write_table(table, path, row_group_size=2)  # several row groups -> several chunks on read
    back = read_recorded_trace(path)
    assert [r[4] for r in iter_rows(back.labels)] == [[1], [1, 0], [2, 1, 3], [3], [0]]
    np.testing.assert_array_equal(back.vectors["b2"], small_recorded().vectors["b2"])


# --------------------------------------------------------------------------------------- property: damaged bytes

_GOOD_BYTES = {}


def _good_bytes(tmp_path_factory, level):
    if level not in _GOOD_BYTES:
        trace = small_recorded() if level == "recorded" else small_labels()
        _GOOD_BYTES[level] = write_trace(trace, tmp_path_factory.mktemp("good") / "t.parquet").read_bytes()
    return _GOOD_BYTES[level]


@settings(max_examples=80, deadline=None)
@given(level=st.sampled_from(["labels", "recorded"]),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_trace_bytes_give_format_errors_only(tmp_path_factory, level, edits, cut):
    data = bytearray(_good_bytes(tmp_path_factory, level))
    for pos, value in edits:
        data[int(pos * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = tmp_path_factory.mktemp("bad") / "t.parquet"
    path.write_bytes(bytes(data))
    try:
        trace = read_trace(path)
    except FormatError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    validate(trace)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(["format", "version", "level", "fps", "class_names", "primary_rule", "model", "source",
                            "provenance", "extra"]),
       value=json_values, recorded=st.booleans())
def test_random_metadata_values_give_format_errors_only(key, value, recorded):
    table = to_table(small_recorded() if recorded else small_labels())
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    meta[key] = value
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    try:
        trace = from_table(table)
    except FormatError as exc:
        assert "\n" not in str(exc)
        return
    validate(trace)
