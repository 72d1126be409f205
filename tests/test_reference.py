"""The shipped reference CNN: loads without pickle, reproduces its recorded accuracy, has the exit
profile the simulator relies on."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import run_cli
from engram.errors import FormatError, MismatchError
from kernels.reference.evaluate import evaluate
from kernels.reference.store import DATA_DIR, ENCODER_FILE, HEADS_FILE, MODEL_FILE, load_reference, save_reference


def test_weights_are_safetensors_not_pickle():
    for name in (MODEL_FILE, ENCODER_FILE, HEADS_FILE):
        raw = (DATA_DIR / name).read_bytes()
        # safetensors: an 8-byte little-endian header length, then a JSON header, then raw tensor bytes
        # (torch.save would start with a zip "PK" signature, a bare pickle with 0x80 PROTO).
        header_len = int.from_bytes(raw[:8], "little")
        assert raw[8:9] == b"{" and not raw.startswith(b"PK")
        header = json.loads(raw[8 : 8 + header_len])
        assert "__metadata__" in header
        assert all(v["data_offsets"][1] <= len(raw) - 8 - header_len for k, v in header.items() if k != "__metadata__")
    assert (DATA_DIR / MODEL_FILE).stat().st_size < 5_000_000


def test_recorded_accuracy_is_reproduced(reference_model):
    rec = reference_model.meta["evaluation"]
    result = evaluate(reference_model, rec["images"], rec["seed"], rec["strength"])
    assert abs(result["top1"] - rec["top1"]) <= 0.01
    for got, want in zip(result["exit_accuracy"], rec["exit_accuracy"]):
        assert abs(got - want) <= 0.01


def test_accuracy_targets_on_fresh_images(reference_model):
    r = evaluate(reference_model, 2000, 12345)
    acc, top1 = r["exit_accuracy"], r["top1"]
    assert r["classes"] >= 200 and 4 <= len(r["exits"]) <= 6
    assert top1 >= 0.90
    assert acc[0] < 0.7 * top1
    assert sum(0.3 * top1 <= a <= 0.9 * top1 for a in acc) >= 2
    # Deeper exits know more.
    assert all(b >= a - 0.02 for a, b in zip(acc, acc[1:]))
    assert acc[-1] > acc[0] + 0.3


def test_save_load_round_trip(reference_model, tmp_path):
    save_reference(reference_model, tmp_path)
    again = load_reference(tmp_path)
    x = torch.rand(4, *reference_model.model.input_shape)
    with torch.no_grad():
        assert torch.equal(reference_model.model(x), again.model(x))
    for e, enc in reference_model.encoders.items():
        assert np.array_equal(enc.components, again.encoders[e].components)
    assert again.fingerprint == reference_model.fingerprint


def test_encoders_and_heads_for_other_weights_are_refused(tmp_path):
    other = load_reference()
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    save_reference(other, tmp_path)  # consistent set for the changed weights
    shutil.copy(DATA_DIR / ENCODER_FILE, tmp_path / ENCODER_FILE)  # encoders of the shipped weights
    with pytest.raises(MismatchError, match="another model"):
        load_reference(tmp_path)
    save_reference(other, tmp_path)
    shutil.copy(DATA_DIR / HEADS_FILE, tmp_path / HEADS_FILE)
    with pytest.raises(MismatchError, match="another model"):
        load_reference(tmp_path)
    save_reference(other, tmp_path)
    assert load_reference(tmp_path).fingerprint == other.fingerprint


def test_exit_heads_are_better_deeper(reference_model):
    from kernels.procedural import render_images
    from kernels.reference.encoders import pooled_exit_features

    x, y = render_images(77, 600)
    _, pooled = pooled_exit_features(reference_model.model, x)
    accs, entropies = [], []
    for e in reference_model.model.exit_points:
        pred, ent = reference_model.heads[e].predict(pooled[e])
        accs.append(float((pred == y).mean()))
        entropies.append(float(ent.mean()))
    assert accs[-1] > 0.8 and accs[0] < 0.5 * accs[-1]
    assert entropies[0] > entropies[-1]  # shallow heads are unsure, and say so


def test_truncated_weights_are_refused(tmp_path):
    raw = (DATA_DIR / MODEL_FILE).read_bytes()
    (tmp_path / MODEL_FILE).write_bytes(raw[: len(raw) // 2])
    shutil.copy(DATA_DIR / ENCODER_FILE, tmp_path / ENCODER_FILE)
    shutil.copy(DATA_DIR / HEADS_FILE, tmp_path / HEADS_FILE)
    with pytest.raises(FormatError, match=MODEL_FILE):
        load_reference(tmp_path)


def test_tampered_weights_are_refused(tmp_path):
    raw = bytearray((DATA_DIR / MODEL_FILE).read_bytes())
    raw[-5] ^= 0x40  # flip a bit inside the last tensor
    (tmp_path / MODEL_FILE).write_bytes(bytes(raw))
    shutil.copy(DATA_DIR / ENCODER_FILE, tmp_path / ENCODER_FILE)
    shutil.copy(DATA_DIR / HEADS_FILE, tmp_path / HEADS_FILE)
    with pytest.raises(FormatError, match="damaged"):
        load_reference(tmp_path)


def test_evaluate_command_json():
    r = run_cli("reference", "evaluate", "--images", "300", "--seed", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("top1", "exit_accuracy", "classes", "exits", "semantic_dims"):
        assert key in out
    assert len(out["exit_accuracy"]) == len(out["exits"]) == len(out["semantic_dims"])
    assert 0.0 <= out["top1"] <= 1.0
