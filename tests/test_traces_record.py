"""The recorder: its vectors are the model's, its mapping is declared and checked, its output is valid."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from engram.errors import EngramError, FormatError
from kernels.procedural import CATALOGUE, render
from kernels.procedural.video import video_scenes
from kernels.reference.encoders import pooled_exit_features
from traces.format import LabelTrace, PrimaryRule, TraceMeta, read_recorded_trace, read_trace, write_trace
from traces.mapping import file_mapping, frequency_rank_mapping
from traces.record import RecordSettings, instance_ids, record, tile_change

META = TraceMeta("unit test", "CC0-1.0", "nobody", 5.0, ("cup", "plate", "knife", "pan", "unused"),
                 PrimaryRule("first-label", "first label"), {})


def labels() -> LabelTrace:
    objs = [[0]] * 6 + [[1, 0]] * 4 + [[0]] * 3 + [[2]] * 5 + [[3]] * 2
    video = ["v1"] * 13 + ["v2"] * 7
    frame = list(range(13)) + list(range(7))
    return LabelTrace.from_frames(META, video, frame, np.array(frame) / 5.0, objs)


@pytest.fixture(scope="module")
def recorded(reference_model):
    t = labels()
    cmap = frequency_rank_mapping(t, CATALOGUE.names(), seed=3)
    return t, cmap, record(t, reference_model, cmap, RecordSettings(seed=11, batch=7))


def test_recorded_vectors_equal_the_model_recomputed(reference_model, recorded):
    t, cmap, rec = recorded
    # Recompute three frames on their own, from scratch.
    rows = np.array([0, 9, 19])
    params = video_scenes(cmap.mapping[t.label], instance_ids(t), t.time_s, 11, 1.0, videos=t.video).take(rows)
    with torch.no_grad():
        logits, pooled = pooled_exit_features(reference_model.model, render(params, 64))
    assert np.array_equal(rec.prediction[rows], logits.argmax(1))
    for e in reference_model.model.exit_points:
        again = reference_model.encoders[e].encode_pooled(pooled[e])
        assert np.allclose(rec.vectors[e][rows].astype(np.float32), again, atol=2e-3)
        pred, ent = reference_model.heads[e].predict(pooled[e])
        assert np.array_equal(rec.head_pred[e][rows], pred)
        assert np.allclose(rec.head_entropy[e][rows], ent, atol=1e-3)  # batch size changes float rounding


def test_recorded_trace_round_trip_and_binding(reference_model, recorded, tmp_path):
    t, cmap, rec = recorded
    path = write_trace(rec, tmp_path / "rec.parquet")
    back = read_recorded_trace(path)
    assert back.model.exit_points == reference_model.model.exit_points
    fp = reference_model.model.fingerprint()
    assert (back.model.architecture_sha, back.model.weights_sha) == (fp["architecture"], fp["weights"])
    assert np.array_equal(back.true_class, cmap.mapping[t.label])
    assert back.meta.provenance["recorder"]["seed"] == 11
    assert back.meta.provenance["recorder"]["mapping"]["rule"] == "frequency-rank"


def test_frame_difference(recorded):
    t, _, rec = recorded
    starts = t.video_start_mask()
    assert np.all(rec.frame_diff[starts] == 1.0)
    same = np.r_[False, t.label[1:] == t.label[:-1]] & ~starts
    changed = ~same & ~starts
    # The scene (background) is shared within a video, so a new object changes only the tiles it covers.
    assert rec.frame_diff[same].mean() < 0.1
    assert rec.frame_diff[changed].mean() > 0.25


def test_tile_change_ignores_noise_but_sees_motion():
    rng = np.random.default_rng(0)
    base = rng.random((1, 3, 32, 32)).astype(np.float32)
    noisy = base + rng.normal(0, 0.08, base.shape).astype(np.float32)
    moved = base.copy()
    moved[:, :, :16] += 0.2  # half the frame brightens
    assert tile_change(base, noisy, 8, 0.05)[0] == 0.0
    assert tile_change(base, moved, 8, 0.05)[0] == pytest.approx(0.5)


def test_one_instance_per_video_and_class():
    t = labels()
    ids = instance_ids(t)
    # v1: cup (frames 0-5 and again 10-12), plate; v2: knife, pan.
    assert ids[0] == ids[12] and ids[0] != ids[6]
    assert len(set(ids[13:]) & set(ids[:13])) == 0
    assert sorted(set(ids)) == [0, 1, 2, 3]


def test_rank_mapping_is_declared_and_deterministic():
    t = labels()
    a = frequency_rank_mapping(t, CATALOGUE.names(), seed=0)
    b = frequency_rank_mapping(t, CATALOGUE.names(), seed=0)
    c = frequency_rank_mapping(t, CATALOGUE.names(), seed=1)
    assert np.array_equal(a.mapping, b.mapping) and not np.array_equal(a.mapping, c.mapping)
    assert a.mapping[4] == -1  # never a primary label
    assert len(set(a.mapping[:4])) == 4
    with pytest.raises(EngramError, match="only 2"):
        frequency_rank_mapping(t, ["x", "y"])


def test_mapping_file_errors_name_the_file(tmp_path):
    t = labels()
    names = CATALOGUE.names()
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"cup": names[5], "plate": "7", "1": 9, "knife": 3, "pan": names[0]}))
    m = file_mapping(good, t, names)
    assert list(m.mapping[:4]) == [5, 9, 3, 0]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"cup": 1, "plate": 2}))
    with pytest.raises(EngramError, match="partial.json leaves 2 class"):
        file_mapping(partial, t, names)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"teapot": 1}))
    with pytest.raises(FormatError, match="unknown trace class 'teapot'"):
        file_mapping(bad, t, names)
    broken = tmp_path / "broken.json"
    broken.write_text('{"cup": 1,')
    with pytest.raises(FormatError, match="broken.json"):
        file_mapping(broken, t, names)


def test_record_command_and_its_errors(tmp_path):
    lt = tmp_path / "labels.parquet"
    write_trace(labels(), lt)
    out = tmp_path / "rec.parquet"
    r = run_cli("trace", "record", "--trace", str(lt), "--out", str(out), "--max-frames", "12")
    assert r.returncode == 0, r.stderr
    rec = read_trace(out)
    assert len(rec) == 12 and rec.level == "recorded"
    bad_out = tmp_path / "never.parquet"
    r = run_cli("trace", "record", "--trace", str(lt), "--out", str(bad_out), "--videos", "v9")
    assert r.returncode == 2 and "no video 'v9'" in r.stderr and "Traceback" not in r.stderr
    assert not bad_out.exists()
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps({"cup": 1}))
    r = run_cli("trace", "record", "--trace", str(lt), "--out", str(bad_out), "--mapping", str(mp))
    assert r.returncode == 2 and "unmapped" in r.stderr
    assert not bad_out.exists() and not list(tmp_path.glob(".never*"))


def test_shipped_recorded_trace_belongs_to_the_shipped_model(reference_model):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "traces" / "data" / "epic100_val_recorded.parquet"
    rec = read_recorded_trace(path)
    fp = reference_model.model.fingerprint()
    assert (rec.model.architecture_sha, rec.model.weights_sha) == (fp["architecture"], fp["weights"])
    assert rec.model.exit_points == reference_model.model.exit_points
    assert len(rec) > 5000 and len(rec.labels.video_names) >= 20
    assert 0.9 < float(np.mean(rec.prediction == rec.true_class)) < 1.0
    assert path.stat().st_size < 5_000_000


def test_input_descriptor():
    from engram.input_descriptor import describe_input

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 3, 64, 64)).astype(np.float32)
    imgs[2] = 0.4  # a flat frame has no direction
    d = describe_input(imgs)
    assert d.shape == (3, 48)
    assert np.allclose(np.linalg.norm(d[:2], axis=1), 1.0, atol=1e-5) and np.all(d[2] == 0)
    # Brightness shifts do not change it (centred); a different picture does.
    assert np.allclose(describe_input(imgs[:1] + 0.1), d[:1], atol=1e-5)
    assert float(d[0] @ d[1]) < 0.9
