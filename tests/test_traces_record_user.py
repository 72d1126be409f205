"""`trace record --frames`: the user's own frames (image folders, a video file) and the user's own model.

A tiny torch model in a temporary .py file, PNG frames written with Pillow and a video written with PyAV;
the recorded trace must hold exactly what the model computes on the same preprocessed frames, encoded
with the encoders written next to it.
"""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from engram.cli import main
from kernels.reference.store import load_encoders, load_heads
from traces.format import LabelTrace, PrimaryRule, TraceMeta, read_recorded_trace, write_trace
from traces.frames import discover, natural_key, to_array
from engram.fingerprint import sha256_file
from traces.user_model import load_user_model, pool

MODEL_PY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def build():
    torch.manual_seed(0)
    return Tiny().eval()


def not_a_module():
    return 42
'''

H, W = 40, 48  # frames on disk; the model takes 32x32
EXITS = ("layer1", "layer2")
MODEL_ARGS = ("--exit-points", ",".join(EXITS), "--input-size", "32x32", "--num-classes", "5")
LABEL_CLASSES = ("cat", "dog", "cup")
MAPPING = {"cat": 0, "dog": 3, "cup": "4"}


def _picture(i: int, colour, rng) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (30, 60, 90)
    x = 4 + 2 * i
    img[10:26, x: x + 12] = colour
    return np.clip(img.astype(int) + rng.integers(0, 12, img.shape), 0, 255).astype(np.uint8)


def _labels(videos: dict[str, list[int]], fps: float = 5.0) -> LabelTrace:
    meta = TraceMeta("unit test", "CC0-1.0", "nobody", fps, LABEL_CLASSES, PrimaryRule("first-label", "first"), {})
    video, frame, objects = [], [], []
    for name, frames in videos.items():
        for k, f in enumerate(frames):
            video.append(name)
            frame.append(f)
            objects.append([k % len(LABEL_CLASSES)])
    return LabelTrace.from_frames(meta, video, frame, np.asarray(frame) / fps, objects)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Model file, weights, 2 x 10 PNG frames, 12 calibration PNGs, an 8-frame video, labels, a mapping."""
    d = tmp_path_factory.mktemp("user")
    (d / "model.py").write_text(MODEL_PY)
    ns: dict = {}
    exec(compile(MODEL_PY, "model.py", "exec"), ns)
    torch.manual_seed(7)  # weights other than build()'s own, so that --weights visibly matters
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ns["Tiny"]().state_dict().items()}, str(d / "w.safetensors"))
    rng = np.random.default_rng(0)
    for name, colour in (("clipA", (200, 30, 30)), ("clipB", (30, 200, 30))):
        (d / "frames" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(_picture(i, colour, rng)).save(d / "frames" / name / f"f{i}.png")
    (d / "calib").mkdir()
    for i in range(12):
        Image.fromarray(_picture(i % 8, (30 + 15 * i, 90, 200 - 10 * i), rng)).save(d / "calib" / f"c{i}.png")
    with av.open(str(d / "clip.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(8):
            for p in s.encode(av.VideoFrame.from_ndarray(_picture(i, (30, 30, 200), rng), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # clipB's label trace skips frame 4 (nothing in view there): it is not recorded.
    write_trace(_labels({"clipA": list(range(10)), "clipB": [0, 1, 2, 3, 5, 6, 7, 8, 9]}), d / "labels.parquet")
    write_trace(_labels({"calib": list(range(12))}), d / "calib_labels.parquet")
    (d / "map.json").write_text(json.dumps(MAPPING))
    return d


def _record(ws: Path, out: Path, *args: str, model: str = "build") -> int:
    return main(["trace", "record", "--model", f"{ws / 'model.py'}:{model}", *MODEL_ARGS,
                 "--calibration-frames", str(ws / "calib"), "--out", str(out), *args])


def _user_model(ws: Path, weights: bool):
    return load_user_model(ws / "model.py", "build", list(EXITS), (32, 32), 5,
                           weights=ws / "w.safetensors" if weights else None).model


def _check_against_model(rec, model, images: np.ndarray, out: Path) -> None:
    """Vectors, heads and prediction equal a recomputation on the same preprocessed frames."""
    encoders, _ = load_encoders(out.with_name(out.stem + ".encoders.safetensors"), model)
    heads = load_heads(out.with_name(out.stem + ".heads.safetensors"), model)
    with torch.no_grad():
        logits, feats = model.forward_exits(torch.from_numpy(images))
    assert np.array_equal(rec.prediction, logits.argmax(1).numpy())
    for e in EXITS:
        pooled = pool(feats[e])
        assert np.allclose(rec.vectors[e].astype(np.float32), encoders[e].encode_pooled(pooled), atol=2e-3)
        pred, ent = heads[e].predict(pooled)
        assert np.array_equal(rec.head_pred[e], pred)
        assert np.allclose(rec.head_entropy[e], ent, atol=1e-4)
    enc_file = out.with_name(out.stem + ".encoders.safetensors")
    prov = rec.meta.provenance["recorder"]
    assert prov["encoders"]["file"] == enc_file.name and prov["encoders"]["sha256"] == sha256_file(enc_file)


def test_image_folders_with_labels(ws, tmp_path, capsys):
    out = tmp_path / "rec.parquet"
    rc = _record(ws, out, "--frames", str(ws / "frames"), "--trace", str(ws / "labels.parquet"),
                 "--mapping", str(ws / "map.json"), "--weights", str(ws / "w.safetensors"), "--batch", "7")
    assert rc == 0, capsys.readouterr().err
    assert "19 frames of 2 videos" in capsys.readouterr().out
    rec = read_recorded_trace(out)
    assert len(rec) == 19 and rec.labels.video_names == ("clipA", "clipB")
    assert rec.model.exit_points == EXITS and rec.model.class_names == ("0", "1", "2", "3", "4")
    assert list(rec.labels.frame[10:]) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert np.array_equal(rec.true_class, np.array([0, 3, 4])[rec.labels.label])
    assert np.all(rec.frame_diff[rec.labels.video_start_mask()] == 1.0)
    assert np.all(rec.frame_diff[~rec.labels.video_start_mask()] < 1.0)
    prov = rec.meta.provenance["recorder"]
    assert prov["ground_truth"] == "labels" and prov["model"]["weights_sha256"] == sha256_file(ws / "w.safetensors")
    assert prov["encoders"]["calibration"]["targets"] == "model-prediction"
    model = _user_model(ws, weights=True)
    fp = model.fingerprint()
    assert (rec.model.architecture_sha, rec.model.weights_sha) == (fp["architecture"], fp["weights"])
    assert fp["weights"] != _user_model(ws, weights=False).fingerprint()["weights"]
    rows = [ws / "frames" / v / f"f{f}.png" for v, f in
            zip(np.array(rec.labels.video_names)[rec.labels.video], rec.labels.frame)]
    images = np.stack([to_array(Image.open(p).convert("RGB"), (32, 32)) for p in rows])
    _check_against_model(rec, model, images, out)


def test_video_file_without_labels(ws, tmp_path, capsys):
    out = tmp_path / "vid.parquet"
    rc = _record(ws, out, "--frames", str(ws / "clip.mp4"), "--calibration-trace", str(ws / "calib_labels.parquet"),
                 "--mapping", str(ws / "map.json"), "--normalize", "imagenet", "--resize", "crop")
    assert rc == 0, capsys.readouterr().err
    rec = read_recorded_trace(out)
    assert len(rec) == 8 and rec.labels.video_names == ("clip",) and rec.meta.fps == pytest.approx(10.0)
    assert np.allclose(rec.labels.time_s, np.arange(8) / 10.0)
    assert rec.frame_diff[0] == 1.0 and np.all(rec.frame_diff[1:] < 1.0)
    # No labels: the model's own answer is the ground truth, and the trace says so.
    assert rec.meta.primary_rule.name == "model-prediction"
    assert rec.meta.provenance["recorder"]["ground_truth"] == "model-prediction"
    assert np.array_equal(rec.labels.label, rec.prediction) and np.array_equal(rec.true_class, rec.prediction)
    assert rec.meta.provenance["recorder"]["encoders"]["calibration"]["targets"] == "labels"
    with av.open(str(ws / "clip.mp4")) as c:
        frames = [to_array(f.to_image(), (32, 32), "crop") for f in c.decode(video=0)]
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    images = ((np.stack(frames) - mean) / std).astype(np.float32)
    _check_against_model(rec, _user_model(ws, weights=False), images, out)


def test_discovery_and_order(ws, tmp_path):
    assert sorted(["f10.png", "f2.png", "f1.png"], key=natural_key) == ["f1.png", "f2.png", "f10.png"]
    flat = discover(ws / "calib")
    assert [s.name for s in flat] == ["calib"] and flat[0].images[2].name == "c2.png"
    (tmp_path / "mixed" / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "mixed" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "mixed" / "sub" / "b.png")
    with pytest.raises(Exception, match="mixes image files with subfolders"):
        discover(tmp_path / "mixed")


def _fail(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    # Progress bars may come first; the error is one line of its own.
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    for n in needles:
        assert n in errors[0], err
    return errors[0]


def test_errors_are_one_line_and_leave_nothing(ws, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out = out_dir / "x.parquet"
    frames = ("--frames", str(ws / "frames"))
    labelled = (*frames, "--trace", str(ws / "labels.parquet"), "--mapping", str(ws / "map.json"))

    _fail(capsys, _record(ws, out, "--frames", str(tmp_path / "nowhere")), "nowhere", "not found")
    bad = tmp_path / "bad" / "v"
    bad.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(bad / "0.png")
    (bad / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _fail(capsys, _record(ws, out, "--frames", str(tmp_path / "bad"), "--fps", "5"), "1.png", "cannot decode image")
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        c.start_encoding()  # a header and no frames
    _fail(capsys, _record(ws, out, "--frames", str(empty)), "empty.avi", "no frames")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 20)
    _fail(capsys, _record(ws, out, "--frames", str(junk)), "junk.mp4", "not a readable video")
    _fail(capsys, _record(ws, out, *frames, "--fps", "5", model="not_a_module"),
          "model.py", "not_a_module() returned int, not a torch.nn.Module")
    _fail(capsys, main(["trace", "record", "--model", f"{ws / 'model.py'}:build", "--exit-points", "layer1,layer9",
                        "--input-size", "32x32", "--num-classes", "5", "--calibration-frames", str(ws / "calib"),
                        *frames, "--fps", "5", "--out", str(out)]),
          "model.py", "--exit-points", "'layer9' is not a submodule")
    # The label trace has frame 10 of clipA, which has only 10 frames (0-9).
    long = tmp_path / "long.parquet"
    write_trace(_labels({"clipA": list(range(11)), "clipB": [0]}), long)
    _fail(capsys, _record(ws, out, *frames, "--trace", str(long), "--mapping", str(ws / "map.json")),
          "long.parquet", "frame", "clipA", "holds only 10 frames")
    other = tmp_path / "other.parquet"
    write_trace(_labels({"clipA": [0], "clipC": [0]}), other)
    _fail(capsys, _record(ws, out, *frames, "--trace", str(other), "--mapping", str(ws / "map.json")),
          "other.parquet", "'clipC' has labels but no frames")
    slow = tmp_path / "slow.parquet"
    write_trace(_labels({"clipA": [0], "clipB": [0]}), slow)
    _fail(capsys, _record(ws, out, *frames, "--trace", str(slow), "--mapping", str(ws / "map.json"), "--fps", "25"),
          "5 fps", "25 fps")
    _fail(capsys, _record(ws, out, *frames, "--trace", str(ws / "labels.parquet")), "--mapping")
    _fail(capsys, _record(ws, out, *frames), "--fps")
    _fail(capsys, main(["trace", "record", "--model", f"{ws / 'model.py'}:build", *MODEL_ARGS, *labelled,
                        "--out", str(out)]), "--calibration-frames")
    _fail(capsys, main(["trace", "record", *labelled, "--exit-points", "b1", "--out", str(out)]),
          "--exit-points", "only applies to your own model")
    assert not out_dir.exists() or not list(out_dir.iterdir())
