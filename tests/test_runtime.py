"""The policy bundle and the on-device runtime.

- ``run_sim.py export`` writes a bundle the reader accepts (schema, hashes, fingerprints), and refuses bad input in
  one line with exit status 2; a damaged bundle or one for another model is refused naming the file and field;
- the runtime, run on frames re-rendered from the shipped recorded trace with TVM-compiled blocks, takes the
  simulator's decisions. The rule checked (frames: the first 100 of videos P01_12 and P04_33):
  1. exact: the runtime's exit point, answer and hit level equal the simulator's (``SmtmEngine``) on every frame
     when the simulator is fed the runtime's own vectors (rounded to float16, as the runtime searches with them)
     and answers: same semantics;
  2. the runtime's vectors are the recorded ones before float16 rounding: every element is within half a float16
     ulp (of the recorded value) + 1e-6, and the full model's answers are the recorded predictions;
  3. so on the recorded trace the runtime decides as the simulator does, except where TVM's and torch's float32
     results round to different float16 values; on these frames there is no such case.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import export_default_bundle, run_main
from engram.errors import EngramError, FormatError, MismatchError
from profiles.format import read_profile
from runtime.bundle import (
    ENCODERS_FILE, MANIFEST, SCHEMA_PATH, bundle_json_schema, export_bundle, read_bundle,
)
from runtime.engine import Runtime
from runtime.smtm import FULL
from simulator.policy import MetricConfig, Policy
from simulator_helpers import CALIBRATION, PROFILE, ROOT, TRACE, shipped_device, shipped_trace, shipped_workload

pytestmark = pytest.mark.slow

VIDEOS = ("P01_12", "P04_33")
FRAMES_PER_VIDEO = 100


_run = run_main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`run_sim.py export --policy smtm` on the defaults (shipped profile, trace and calibration trace)."""
    return export_default_bundle(tmp_path_factory.mktemp("bundle") / "smtm.bundle")


@pytest.fixture(scope="module")
def compiled(reference_model):
    from runtime.blocks import compile_blocks

    return compile_blocks(reference_model.model)  # ~15 s: the shipped tuning records, no tuning


@pytest.fixture(scope="module")
def rendered():
    """Frames of the shipped recorded trace re-rendered (``{row: frame}``): the piece below and the recorder's
    first batch (which holds the first frames of P01_12), rendered together."""
    from runtime.frames import recorder_settings, render_recorded_frames

    rec = shipped_trace()
    rows = np.union1d(np.arange(recorder_settings(rec)["batch"]), _piece_rows())
    return dict(zip(rows.tolist(), render_recorded_frames(rec, rows)))


def _piece_rows() -> np.ndarray:
    rec = shipped_trace()
    names = rec.labels.video_names
    return np.concatenate([np.flatnonzero(rec.labels.video == names.index(v))[:FRAMES_PER_VIDEO] for v in VIDEOS])


@pytest.fixture(scope="module")
def piece(rendered):
    """The first frames of two videos of the shipped recorded trace, re-rendered, and their simulator workload."""
    rows = _piece_rows()
    return rows, np.stack([rendered[r] for r in rows.tolist()]), shipped_workload().take(rows)


@pytest.fixture(scope="module")
def run(exported, compiled, piece, reference_model):
    bundle = read_bundle(exported[0], reference_model.model)
    rt = Runtime(bundle, compiled[0])
    rows, frames, sub = piece
    log = rt.run(frames, sub.arrival_s, sub.new_video)
    return bundle, rt, log


# ------------------------------------------------------------------------------------------ the format


def test_schema_file_is_the_generated_schema():
    """The shipped file cannot drift from the models (regenerate it with runtime.bundle.bundle_json_schema())."""
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == bundle_json_schema()


def test_export_writes_a_bundle_the_schema_and_reader_accept(exported, reference_model):
    import jsonschema

    path, stdout = exported
    assert "wrote" in stdout and "speed-up" in stdout
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, ENCODERS_FILE]
    manifest = json.loads((path / MANIFEST).read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(manifest)
    b = read_bundle(path, reference_model.model)
    assert manifest["format"] == "engram.bundle" and manifest["version"] == 1
    assert b.fingerprint == reference_model.model.fingerprint()
    assert b.policy.kind == "smtm" and set(b.policy.metric.calibration) == set(b.enabled)  # fitted, as simulate does
    assert b.enabled == reference_model.model.exit_points
    assert manifest["profile"]["device"] == shipped_device().name
    assert manifest["calibration"]["path"].endswith(CALIBRATION.name)
    # The encoders are the shipped model's, and the reference reader (with the torch model) reads the file too.
    from kernels.reference.store import load_encoders

    ref_enc, _ = load_encoders(path / ENCODERS_FILE, reference_model.model)
    for e in b.enabled:
        for a in ("mean", "components", "centres"):
            assert np.array_equal(getattr(b.encoders[e], a), getattr(reference_model.encoders[e], a))
            assert np.array_equal(getattr(ref_enc[e], a), getattr(reference_model.encoders[e], a))
    # The predicted metrics are what the simulator gives for the policy as stored, on the default trace.
    from simulator.run import simulate

    again = simulate(shipped_workload(), shipped_device(), b.policy).metrics
    for k in ("mean_latency_ms", "p99_latency_ms", "accuracy", "speedup", "frames"):
        assert b.predicted[k] == pytest.approx(again[k]), k


def test_round_trip_and_atomic_replacement(exported, reference_model, tmp_path):
    b = read_bundle(exported[0], reference_model.model)
    out = tmp_path / "again"
    export_bundle(b.policy, PROFILE, out, b.predicted, CALIBRATION, trace_path=TRACE)
    c = read_bundle(out, reference_model.model)
    skip = {"created"}
    a_json = {k: v for k, v in b.manifest.model_dump().items() if k not in skip}
    c_json = {k: v for k, v in c.manifest.model_dump().items() if k not in skip}
    a_json["profile"].pop("path"), c_json["profile"].pop("path")
    assert a_json == c_json
    assert (out / ENCODERS_FILE).read_bytes() == (exported[0] / ENCODERS_FILE).read_bytes()
    # A bundle replaces a bundle; anything else is left alone; no temporary directories are left behind.
    export_bundle(b.policy, PROFILE, out, b.predicted, CALIBRATION)
    assert read_bundle(out, None).policy == b.policy
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(EngramError, match="not a bundle"):
        export_bundle(b.policy, PROFILE, other, b.predicted, CALIBRATION)
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "notes"]


def _copy(src, tmp_path, name="b"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _edit(path, fn) -> None:
    obj = json.loads((path / MANIFEST).read_text())
    fn(obj)
    (path / MANIFEST).write_text(json.dumps(obj, indent=2))


def test_damaged_bundles_are_refused_naming_file_and_field(exported, reference_model, tmp_path):
    src = exported[0]
    model = reference_model.model
    # A changed byte in the encoders file.
    d = _copy(src, tmp_path, "byte")
    data = bytearray((d / ENCODERS_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / ENCODERS_FILE).write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"encoders\.safetensors: files\.encoders\.safetensors\.sha256: damaged"):
        read_bundle(d, model)
    # A missing encoders file.
    d = _copy(src, tmp_path, "missing")
    (d / ENCODERS_FILE).unlink()
    with pytest.raises(FormatError, match=r"encoders\.safetensors: files\.encoders\.safetensors: missing file"):
        read_bundle(d, model)
    # Malformed JSON: the line is named.
    d = _copy(src, tmp_path, "json")
    text = (d / MANIFEST).read_text()
    (d / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(FormatError, match=r"bundle\.json:\d+: not valid JSON"):
        read_bundle(d, model)
    # Another version, another format, a field of the wrong type, a manifest that contradicts itself.
    cases = [
        (lambda o: o.update(version=2), "version: unsupported version 2"),
        (lambda o: o.update(format="engram.policy"), "format: expected format 'engram.bundle'"),
        (lambda o: o["policy"]["metric"]["thresholds"].update(b3="high"), "policy.metric.thresholds.b3"),
        (lambda o: o["files"][ENCODERS_FILE].update(sha256="0" * 64), "files.encoders.safetensors.sha256: damaged"),
        (lambda o: o.update(enabled_exits=["b3", "b1"]), "enabled_exits must be exit points of the model, in block order"),
        (lambda o: o["policy"].update(kind="foggycache"), "policy"),
        (lambda o: o.pop("predicted"), "predicted: Field required"),
    ]
    for k, (fn, msg) in enumerate(cases):
        d = _copy(src, tmp_path, f"case{k}")
        _edit(d, fn)
        with pytest.raises(FormatError) as exc:
            read_bundle(d, model)
        assert msg in str(exc.value) and str(d) in str(exc.value), (msg, str(exc.value))
    # Not a bundle at all.
    with pytest.raises(FormatError, match="no bundle.json"):
        read_bundle(tmp_path, model)
    with pytest.raises(FormatError, match="not found"):
        read_bundle(tmp_path / "nowhere", model)


def test_a_bundle_for_another_model_is_refused(exported, reference_model, tmp_path):
    fp = reference_model.model.fingerprint()
    other = {**fp, "weights": "f" * 64}
    with pytest.raises(MismatchError) as exc:
        read_bundle(exported[0], other)
    msg = str(exc.value)
    assert f"{exported[0] / MANIFEST}: model.fingerprint.weights: the bundle is for another model" in msg
    # An encoders file fitted for another model, slipped into a bundle with matching hashes, is refused too.
    from kernels.reference.store import encoders_bytes

    d = _copy(exported[0], tmp_path)
    data = encoders_bytes(reference_model.encoders, other)
    (d / ENCODERS_FILE).write_bytes(data)
    import hashlib

    _edit(d, lambda o: o["files"][ENCODERS_FILE].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
    with pytest.raises(MismatchError, match=r"encoders\.safetensors: model_fingerprint\.weights: encoders were fitted for another"):
        read_bundle(d, reference_model.model)


# ------------------------------------------------------------------------------------------ the command


def test_export_errors_are_one_line_with_status_2(capsys, tmp_path):
    out = tmp_path / "never"
    empty = tmp_path / "sweep"
    empty.mkdir()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    chose_nothing = tmp_path / "sweep-none"
    chose_nothing.mkdir()
    (chose_nothing / "sweep.json").write_text(json.dumps({"chosen": None}))
    cases = [
        ([], "exactly one of --policy and --from"),
        (["--from", str(chose_nothing)], "the sweep chose no policy"),
        (["--policy", "smtm", "--from", str(empty)], "exactly one of --policy and --from"),
        (["--from", str(tmp_path / "nosweep")], "sweep directory not found"),
        (["--from", str(empty)], "no chosen_policy.json here"),
        (["--policy", str(tmp_path / "nope.json")], "nope.json: file not found"),
        (["--policy", "foggycache"], "'foggycache' is a simulator baseline"),
        (["--policy", "smtm", "--profile", str(afile)], "file.txt"),
    ]
    for args, msg in cases:
        rc, _, err = _run(capsys, "export", *args, "--out", str(out))
        assert rc == 2, (args, err)
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
        assert not out.exists()
    rc, _, err = _run(capsys, "export", "--policy", "smtm", "--out", str(afile))
    assert rc == 2 and "exists and is not a bundle directory" in err and afile.read_text() == "x"


def test_export_from_a_sweep_directory(capsys, tmp_path, reference_model, compiled, piece):
    """--from reads SWEEP_DIR/chosen_policy.json; a no-cache policy gives a bundle without encoders that the
    runtime runs as plain inference."""
    from engram.fingerprint import sha256_file

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    plain = Policy(name="plain", kind="no-cache")
    (sweep / "chosen_policy.json").write_text(json.dumps(plain.to_json()))
    # The sweep's own record names the profile and traces it ran on: the bundle takes them unless given.
    profile = tmp_path / "profile-of-the-sweep.json"
    shutil.copy(PROFILE, profile)
    inputs = {"profile": str(profile), "trace": str(TRACE), "calibration": str(CALIBRATION),
              "sha256": {"profile": sha256_file(profile), "trace": sha256_file(TRACE), "calibration": sha256_file(CALIBRATION)}}
    (sweep / "sweep.json").write_text(json.dumps({"inputs": inputs}))
    out = tmp_path / "plain.bundle"
    rc, stdout, err = _run(capsys, "export", "--from", str(sweep), "--out", str(out))
    assert rc == 0, err
    b = read_bundle(out, reference_model.model)
    assert b.policy.name == "plain" and b.manifest.encoders is None and b.manifest.files == {}
    assert b.manifest.profile.path == str(profile)
    # The runtime runs with the threads the profile's kernels were timed with.
    assert b.manifest.profile.threads == read_profile(profile).device.threads is not None
    inputs["sha256"]["profile"] = "0" * 64
    (sweep / "sweep.json").write_text(json.dumps({"inputs": inputs}))
    rc, _, err = _run(capsys, "export", "--from", str(sweep), "--out", str(tmp_path / "never"))
    assert rc == 2 and "profile-of-the-sweep.json changed since the sweep" in err and err.count("\n") == 1
    assert b.manifest.calibration is None and sorted(p.name for p in out.iterdir()) == [MANIFEST]
    rows, frames, sub = piece
    log = Runtime(b, compiled[0]).run(frames[:20])
    assert np.all(log.exit_index == FULL) and np.array_equal(log.answer, sub.prediction[:20])


# ------------------------------------------------------------------------------------------ the runtime


def test_rendered_frames_are_the_recorders(reference_model, rendered):
    """Frames re-rendered in the recorder's batch and run through the reference CNN as the recorder runs it give
    the recorded predictions, and the recorded vectors bit for bit after the trace's float16 rounding but for a few
    values one float16 step off: the encoders' projection is a float32 matrix product, and OpenBLAS picks its
    kernel by CPU (the trace was recorded with its AVX-512 one, a Zen 5 host gets the AVX2 one: 0-8 of 8,192 values
    per exit point differ there). Frames rendered any differently change most values by far more."""
    import torch

    from kernels.reference.encoders import pooled_exit_features
    from runtime.frames import recorder_settings

    rec = shipped_trace()
    batch = recorder_settings(rec)["batch"]
    rows = np.arange(batch)  # the recorder's first batch (the first frames of P01_12)
    frames = np.stack([rendered[r] for r in rows.tolist()])
    assert frames.dtype == np.float32 and frames.shape == (batch, 3, 64, 64)
    with torch.no_grad():
        logits, pooled = pooled_exit_features(reference_model.model, torch.from_numpy(frames), batch=batch)
    assert np.array_equal(logits.argmax(1), rec.prediction[rows])
    for e in reference_model.model.exit_points:
        v = reference_model.encoders[e].encode_pooled(pooled[e]).astype(np.float16)
        recorded = rec.vectors[e][rows]
        off = v != recorded
        step = np.spacing(np.maximum(np.abs(v), np.abs(recorded)))  # one float16 step at the larger of the two
        assert np.all(np.abs(v.astype(np.float32) - recorded.astype(np.float32))[off] <= step[off]), e
        assert off.mean() <= 0.005, (e, int(off.sum()))


@pytest.fixture(scope="module")
def own(run, piece):
    """The runtime's own vectors at every exit point and its answers, on the piece."""
    bundle, rt, _ = run
    assert bundle.enabled == shipped_device().exits  # the smtm preset enables every exit point
    return rt.features(piece[1])


def _simulate(sub, vectors, prediction, policy):
    """The simulator's SMTM engine on the piece with these vectors (every exit point) and answers."""
    from simulator.policy import check_policy
    from simulator.run import run_once

    device = shipped_device()
    V = sub.vectors.copy()
    V[:, [sub.exit_index(e) for e in device.exits], : vectors.shape[2]] = vectors
    enabled = check_policy(policy, device.exits, tuple(device.processors))
    res = run_once(dataclasses.replace(sub, vectors=V, prediction=prediction), device, policy, enabled)
    assert not res.des.dropped.any()
    return res.engine


def _same(engine, log) -> np.ndarray:
    return (engine.exit_pos == log.exit_index) & (engine.answer == log.answer) & (engine.level == log.level)


def test_runtime_takes_the_simulators_decisions(run, piece, own, capsys):
    from simulator.run import run_once

    bundle, rt, log = run
    rows, frames, sub = piece
    vec, pred = own
    ex = [sub.exit_index(e) for e in bundle.enabled]

    # 2. The runtime's vectors and answers are the recorded ones before float16 rounding.
    assert np.array_equal(pred, sub.prediction)
    recorded = sub.vectors[:, ex, : vec.shape[2]]
    half_ulp = np.spacing(np.abs(recorded).astype(np.float16)).astype(np.float32) / 2
    assert np.all(np.abs(vec - recorded) <= half_ulp + 1e-6)

    # 1. Same semantics: fed the runtime's own vectors, the simulator decides every frame as the runtime did.
    vec16 = vec.astype(np.float16).astype(np.float32)
    assert _same(_simulate(sub, vec16, pred, bundle.policy), log).all()

    # 3. On the recorded trace: the rounded vectors are the recorded ones here, so every frame agrees.
    on_trace = run_once(sub, shipped_device(), bundle.policy, bundle.enabled).engine
    recorded16 = sub.vectors[:, ex, : vec.shape[2]]
    with capsys.disabled():
        print(f"\nruntime vectors equal to the recorded float16 ones: {np.mean(vec16 == recorded16):.4%} of elements")
    agree = _same(on_trace, log)
    assert agree.all(), f"{int((~agree).sum())} of {len(agree)} frames decided differently on the recorded trace"

    # The piece exercises every path: hot and cold hits, several exit points, full runs, a new video.
    assert (log.level == 0).any() and (log.level == 1).any() and (log.exit_index == FULL).any()
    assert len(set(log.exit_index[log.exit_index >= 0].tolist())) >= 4


@pytest.mark.slow
def test_the_same_bundle_drives_the_runtime_through_rpc(run, compiled, piece, rpc_server):
    """A phone runs TVM's RPC server; here a loopback server stands in. The runtime uploads the blocks' library,
    runs the blocks there, reads the exits' feature maps back, and decides every frame as it does locally."""
    from kernels.tvm.rpc import open_session
    from runtime.blocks import TvmBlocks

    bundle, _, log = run
    rows, frames, sub = piece
    n = 60
    blocks = TvmBlocks.on_session(compiled[1], open_session(rpc_server, compiled[1].target))
    try:
        assert blocks.remote and blocks.names == compiled[0].names
        remote = Runtime(bundle, blocks).run(frames[:n], sub.arrival_s[:n], sub.new_video[:n])
    finally:
        blocks.session.close()
    assert np.array_equal(remote.exit_index, log.exit_index[:n])
    assert np.array_equal(remote.answer, log.answer[:n])
    assert np.array_equal(remote.level, log.level[:n])
    assert (remote.level >= 0).any() and (remote.exit_index == FULL).any()  # hits and full runs both went remote
    assert (remote.block_ms[:, 0] > 0).all()  # every frame ran at least the first block remotely


def _other_policy(name: str, calibration: dict) -> Policy:
    from simulator.policy import AdaptationConfig, CacheConfig, MetricConfig

    if name == "margin-working-set":  # margin metric, exit subset, cold level from b5, lfu-decay, working-set + ema
        return Policy(name=name, kind="smtm", exits=["b3", "b5", "b6", "b7"],
                      cache=CacheConfig(hot_size=2, cold_size=6, cold_from="b5", replacement="lfu-decay", half_life_s=20.0),
                      metric=MetricConfig(kind="margin", thresholds={"b3": 0.95, "b5": 0.8, "b6": 0.6, "b7": 0.5}),
                      adaptation=AdaptationConfig(strategies=["working-set", "ema"], window_s=20.0, min_hot=1, max_hot=4,
                                                  ema_alpha=0.3))
    if name == "cosine-static":  # cosine metric, LRU, no adaptation
        return Policy(name=name, kind="smtm", exits=["b1", "b4", "b6"],
                      cache=CacheConfig(hot_size=2, cold_size=5, replacement="lru"),
                      metric=MetricConfig(kind="cosine", thresholds={"b1": 0.995, "b4": 0.97, "b6": 0.9}))
    if name == "temporal-working-set":  # temporal metric: agreement with the previous answer adds to the logit
        exits = ["b1", "b3", "b5", "b7"]
        return Policy(name=name, kind="smtm", exits=exits, cache=CacheConfig(hot_size=3, cold_size=8),
                      metric=MetricConfig(kind="temporal", thresholds={e: 0.97 for e in exits},
                                          calibration={e: [*calibration[e], 2.5, 0.1, -0.2, 0.0, -0.3] for e in exits}),
                      adaptation=AdaptationConfig(strategies=["working-set"], window_s=15.0, min_hot=1, max_hot=3))
    exits = ["b3", "b4", "b6", "b7"]  # calibrated, one hot slot (many promotions), LFU, scene reset after 2 misses
    return Policy(name=name, kind="smtm", exits=exits, cache=CacheConfig(hot_size=1, cold_size=4, replacement="lfu"),
                  metric=MetricConfig(kind="calibrated", thresholds={e: 0.9 for e in exits},
                                      calibration={e: calibration[e] for e in exits}),
                  adaptation=AdaptationConfig(strategies=["scene-reset", "ema"], miss_streak=2, on_scene_change="reset",
                                              ema_alpha=1.0))


@pytest.mark.parametrize("name", ["margin-working-set", "cosine-static", "calibrated-lfu-reset", "temporal-working-set"])
def test_other_policies_decide_as_in_the_simulator(name, run, compiled, piece, own, tmp_path):
    """Rule 1 for other metrics, replacement rules, adaptation strategies and exit subsets."""
    from simulator.run import simulate

    bundle, _, _ = run
    rows, frames, sub = piece
    vec, pred = own
    policy = _other_policy(name, bundle.policy.metric.calibration)
    predicted = simulate(sub, shipped_device(), policy, with_oracle=False).metrics
    b = read_bundle(export_bundle(policy, PROFILE, tmp_path / name, predicted), bundle.fingerprint)
    assert b.enabled == tuple(policy.exits) and list(b.encoders) == policy.exits
    log = Runtime(b, compiled[0]).run(frames, sub.arrival_s, sub.new_video)
    vec16 = vec.astype(np.float16).astype(np.float32)  # what the runtime searches with
    engine = _simulate(sub, vec16, pred, b.policy)
    assert _same(engine, log).all()
    assert (log.level == 0).any() and (log.exit_index == FULL).any()
    if name != "margin-working-set":
        assert (log.level == 1).any()
    if name.startswith("temporal"):  # the previous answer changed decisions, on both sides alike
        cal = {e: c[:4] for e, c in b.policy.metric.calibration.items()}
        plain = b.policy.model_copy(update={"metric": MetricConfig(kind="calibrated", thresholds=b.policy.metric.thresholds,
                                                                   calibration=cal)})
        assert not np.array_equal(_simulate(sub, vec16, pred, plain).exit_pos, log.exit_index)


@pytest.mark.parametrize("metric", ["temporal", "calibrated"])
def test_input_level_decides_as_in_the_simulator(metric, run, compiled, piece, own, tmp_path):
    """A policy with an input level: the runtime describes every frame as the recorder did and reuses answers on the
    frames where the simulator does; those frames run no block."""
    from runtime.engine import INPUT
    from runtime.input_level import InputLevel
    from simulator.policy import InputReuseConfig
    from simulator.run import simulate

    bundle, _, _ = run
    rows, frames, sub = piece
    vec, pred = own
    base = _other_policy("temporal-working-set", bundle.policy.metric.calibration)
    if metric == "calibrated":
        base = bundle.policy.model_copy(update={"name": "calibrated"})
    policy = base.model_copy(update={"name": f"{metric}-input-level",
                                     "input_reuse": InputReuseConfig(similarity=0.97, max_run=3)})
    level = InputLevel(0.97, 3)
    assert np.array_equal(np.stack([level.describe(f) for f in frames]), sub.input_desc)  # the recorded descriptors

    predicted = simulate(sub, shipped_device(), policy, with_oracle=False).metrics
    b = read_bundle(export_bundle(policy, PROFILE, tmp_path / policy.name, predicted), bundle.fingerprint)
    assert b.policy.input_reuse == policy.input_reuse
    log = Runtime(b, compiled[0]).run(frames, sub.arrival_s, sub.new_video)
    engine = _simulate(sub, vec.astype(np.float16).astype(np.float32), pred, b.policy)
    assert _same(engine, log).all()
    reused = log.exit_index == INPUT
    assert 0 < reused.sum() < len(log) and (log.level == 0).any() and (log.exit_index == FULL).any()
    assert np.all(log.block_ms[reused] == 0) and np.all(log.update_ms[reused] == 0)
    assert np.all(log.answer[reused] == log.answer[np.flatnonzero(reused) - 1])  # the answer before it
    assert not reused[sub.new_video].any()
    assert log.summary()["exit_histogram"]["input"] == int(reused.sum())
    assert [x for x, r in zip(log.exits, reused) if r] == ["input"] * int(reused.sum())


def test_runtime_log(run, piece):
    bundle, rt, log = run
    rows, frames, sub = piece
    n, nb = len(frames), len(bundle.model.blocks)
    assert len(log) == n and log.block_ms.shape == (n, nb)
    assert np.all(log.latency_ms > 0) and np.all(log.latency_ms >= log.block_ms.sum(axis=1))
    names = list(bundle.model.blocks)
    for i in range(n):
        last = nb - 1 if log.exit_index[i] == FULL else names.index(bundle.enabled[log.exit_index[i]])
        assert np.all(log.block_ms[i, : last + 1] > 0) and np.all(log.block_ms[i, last + 1 :] == 0)
    assert log.exits[0] is None  # the first frame finds the cache empty
    m = log.summary(sub.true_class)
    assert m["frames"] == n and sum(m["exit_histogram"].values()) == n and 0.8 <= m["accuracy"] <= 1.0
    assert 0 < m["mean_latency_ms"] < 50
    with pytest.raises(EngramError, match="frames must be"):
        rt.run(frames[:, :, :32])
    with pytest.raises(EngramError, match="float32"):
        rt.run(frames.astype(np.float64))


def test_runtime_runs_without_torch(exported, compiled, piece, tmp_path):
    """Blocks exported as libraries run with torch and simpy unavailable, deciding as in-process."""
    from runtime.blocks import export_libraries

    bundle_path = exported[0]
    libs = tmp_path / "libs"
    export_libraries(compiled[1], libs)
    rows, frames, sub = piece
    k = 60
    np.save(tmp_path / "frames.npy", frames[:k])
    np.save(tmp_path / "times.npy", sub.arrival_s[:k])
    np.save(tmp_path / "new.npy", sub.new_video[:k])
    script = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "simpy"):
            raise ImportError(name + " is not on this device")
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from runtime.blocks import TvmBlocks
from runtime.bundle import read_bundle
from runtime.engine import Runtime
d = {str(tmp_path)!r}
rt = Runtime(read_bundle({str(bundle_path)!r}, None), TvmBlocks.from_libraries(d + "/libs"))
log = rt.run(np.load(d + "/frames.npy"), np.load(d + "/times.npy"), np.load(d + "/new.npy"))
np.save(d + "/out.npy", np.stack([log.exit_index, log.answer, log.level.astype(np.int64)]))
assert not any(m.split(".")[0] in ("torch", "simpy") for m in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "out.npy")
    rt = Runtime(read_bundle(bundle_path, None), compiled[0])
    log = rt.run(frames[:k], sub.arrival_s[:k], sub.new_video[:k])
    assert np.array_equal(got, np.stack([log.exit_index, log.answer, log.level.astype(np.int64)]))


def test_lookup_timer_runs_a_new_frame_each_time(compiled, reference_model):
    # The runtime's frames are new each time, and a repeated one made b1's lookup look 20% cheaper.
    from runtime.overheads import FRAMES, LookupTimer

    blocks = compiled[0]
    seen = []

    class Counting:
        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(blocks, name)

        def input(self, x):  # noqa: ANN001, ANN201
            seen.append(np.asarray(x).copy())
            return blocks.input(x)

    encoders = {e: reference_model.encoders[e] for e in ("b1", "b6")}
    lt = LookupTimer(Counting(), reference_model.model, encoders, [4], np.random.default_rng(0), exits=["b1", "b6"])
    out = lt.sample(FRAMES + 2)
    assert out.shape == (1, 2) and (out > 0).all()
    assert len(seen) == FRAMES + 2
    assert len({x.tobytes() for x in seen}) == FRAMES  # cycled through every frame, none twice in a row
    assert all(not np.array_equal(a, b) for a, b in zip(seen, seen[1:]))


def test_cold_stage_is_timed_as_both_levels_searched_against_one(compiled, reference_model):
    # runtime-overheads prices a lookup's cold stage from lookups that search a hot level and then all entries,
    # against lookups of one level of as many entries.
    from runtime.overheads import LookupTimer, measure_cold_stage

    blocks = compiled[0]
    encoders = {e: reference_model.encoders[e] for e in ("b1", "b6")}
    lt = LookupTimer(blocks, reference_model.model, encoders, [4, 16], np.random.default_rng(0), exits=["b1", "b6"])
    searched = []
    confident = lt.dec._confident
    lt.dec._confident = lambda k, s1, s2, n, slot: searched.append((k, n)) or confident(k, s1, s2, n, slot)
    nb, out = len(blocks.functions), np.empty(2)
    lt.use_entries(1)
    lt.frame(nb, out)
    assert searched == [(0, 16), (1, 16)]
    searched.clear()
    lt.use_entries(1, 8)
    lt.frame(nb, out)
    assert searched == [(0, 8), (0, 16), (1, 8), (1, 16)]
    searched.clear()
    stage = measure_cold_stage(lt, rounds=2, calls=3, entries_index=1)
    assert set(stage) == {"b1", "b6"} and all(v >= 0 for v in stage.values())
    assert searched.count((0, 8)) == 2 * 3 and searched.count((0, 16)) == 2 * 2 * 3  # both conditions, every round
    assert lt.dec.cold_stage == [False, False]  # one level again afterwards


def test_lookup_probe_times_the_input_level_when_the_policy_has_one(compiled, reference_model):
    from runtime.overheads import ENTRIES, LookupProbe

    encoders = {e: reference_model.encoders[e] for e in ("b1", "b6")}
    table = {e: [0.03] * len(ENTRIES) for e in ("b1", "b6")}
    for level in (False, True):
        probe = LookupProbe(compiled[0], reference_model.model, encoders, table, ENTRIES, [4], exits=["b1", "b6"],
                            calls=3, input_level=level)
        for _ in range(4):
            probe.sample()
        r = probe.result()
        assert r["lookup_probe_samples"] == 4 and r["lookups_profiled_ms"] == pytest.approx(0.06)
        assert len(probe.input_samples) == (4 if level else 0)
        # The samples rotate over three timers with arrays of their own: frames run per sample, 3 for the lookups
        # and 3 more before the input probes.
        per = 3 * (2 if level else 1)
        assert [t._next for t in probe.timers] == [2 * per, per, per]
        assert len({id(t.cts[0]) for t in probe.timers}) == 3
        assert ("input_now_ms" in r) == level
        if level:
            assert r["input_now_ms"] == pytest.approx(float(np.median(probe.input_samples))) and r["input_now_ms"] > 0


def test_block_probe_times_as_the_profiler_does(compiled, reference_model):
    # validate's kernel probe and runtime-overheads' reference must take samples as the profile did: at least
    # min_runs passes in context, the slowest dropped (a 1 ms sample of two passes trimmed nothing).
    from kernels.tvm.timing import TimingConfig
    from runtime.overheads import _block_inputs, _block_timer

    blocks = compiled[0]
    counts = [0]

    def counting(fn):
        def f(x):
            counts[0] += 1
            return fn(x)
        return f

    class Counting:
        functions = [counting(fn) for fn in blocks.functions]

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(blocks, name)

    inputs = _block_inputs(blocks, np.zeros((1, *reference_model.model.input_shape), np.float32))
    cfg = TimingConfig(sample_ms=0.01, context_sample_ms=0.01, min_runs=9)
    sample = _block_timer(Counting(), inputs, True, cfg)
    counts[0] = 0
    ms = sample()
    assert counts[0] == 9 * len(blocks.functions)  # min_runs passes, every block in each
    assert ms.shape == (len(blocks.functions),) and np.isfinite(ms).all()
