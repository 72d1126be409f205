"""`run_sim.py profile ...` as a user meets it: help everywhere, one-line errors (exit 2), the commands work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from engram.cli import main

DATA = Path(__file__).resolve().parents[1] / "profiles" / "data"
SUBCOMMANDS = ["import-nnmeter", "import-csv", "compile", "show", "validate", "power-models", "runtime-overheads"]


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("sub", [[], *[[s] for s in SUBCOMMANDS]], ids=lambda s: " ".join(s) or "profile")
def test_help_everywhere(capsys, sub):
    rc, out, _ = _run(capsys, "profile", *sub, "--help")
    assert rc == 0 and "Usage:" in out and "--help" in out


def test_profile_listed_in_root_help():
    r = run_cli("--help")
    assert r.returncode == 0 and "profile" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["profile"], "--model and --out are required"),
    (["profile", "--model", "reference", "--device", "phone", "--out", "x.json"], "rpc://HOST:PORT"),
    (["profile", "--model", "reference", "--device", "local", "--out", "x.json", "--target", "sparc"], "unknown target"),
    (["profile", "--model", "vgg99", "--out", "x.json"], "unknown model"),
    (["profile", "--model", "reference", "--out", "x.json", "--power-model", "toaster"], "unknown power model"),
    (["profile", "--model", "reference", "--out", "x.json", "--repeats", "1"], "--repeats"),
    (["profile", "show", "/nonexistent/p.json"], "file not found"),
    (["profile", "import-nnmeter", "--phone", "iphone", "--out", "x.json"], "--phone"),
    (["profile", "import-csv", "/nonexistent.csv", "--model", "reference", "--out", "x.json"], "file not found"),
])
def test_bad_arguments_give_one_clear_line(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, *args)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0] and needle in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_truncated_profile_is_one_line_naming_the_file(capsys, tmp_path):
    src = next(iter(sorted(DATA.glob("reference_*.json"))))
    bad = tmp_path / "bad.json"
    bad.write_text(src.read_text()[:5000])
    rc, _, err = _run(capsys, "profile", "show", str(bad))
    assert rc == 2 and str(bad) in err and "truncated JSON" in err and len(err.strip().splitlines()) == 1


def test_validate_refuses_another_model(capsys, tmp_path):
    src = DATA / "reference_local.json"
    rc, out, _ = _run(capsys, "profile", "validate", str(src), "--model", "reference")
    assert rc == 0 and "ok" in out
    rc, _, err = _run(capsys, "profile", "validate", str(src), "--model", "mobilenetv2")
    assert rc == 2 and "another model" in err and "model.fingerprint" in err


def test_show_and_power_models(capsys):
    for f in sorted(DATA.glob("*.json")):
        rc, out, _ = _run(capsys, "profile", "show", str(f))
        assert rc == 0 and "whole model" in out
    rc, out, _ = _run(capsys, "profile", "power-models", "--json")
    assert rc == 0 and "pixel6-tensor-x1" in json.loads(out)


def test_import_csv_command(capsys, tmp_path):
    blocks = ["stem", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "head"]
    csv = tmp_path / "m.csv"
    csv.write_text("name,cpu_ms,gpu_ms\n" + "\n".join(f"{b},{0.1 + i / 10},{0.05}" for i, b in enumerate(blocks)) + "\n")
    out = tmp_path / "p.json"
    rc, stdout, err = _run(capsys, "profile", "import-csv", str(csv), "--model", "reference", "--out", str(out),
                           "--power-model", "gpu=pixel6-mali-g78", "--device-name", "my board")
    assert rc == 0, err
    p = json.loads(out.read_text())
    assert p["device"]["name"] == "my board" and p["energy"]["models"]["gpu"]["name"] == "pixel6-mali-g78"
    rc, _, _ = _run(capsys, "profile", "validate", str(out), "--model", "reference")
    assert rc == 0


@pytest.mark.slow
def test_profile_locally_end_to_end(tmp_path):
    out = tmp_path / "local.json"
    r = run_cli("profile", "--model", "reference", "--device", "local", "--out", str(out), "--repeats", "3", "--warmup",
                "0", "--lookup-repeats", "1", "--sample-ms", "0.5", "--cv-warn", "100", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    from profiles.format import read_profile

    p = read_profile(out)
    assert p.device.kind == "local" and p.device.tvm_version and p.device.threads == 1
    assert p.energy.models["cpu"].cores_active == 1  # the power model counts the cores the kernels ran on
    assert p.model.tuning and p.model.tuning["tuned_kernels"] == p.model.tuning["kernels"]
    assert p.memory.planned_activation_bytes < p.memory.pingpong_activation_bytes
    # A local device times the blocks in context and keeps the isolated timings beside them.
    assert p.blocks_in_context and p.measurement["block_timing"] == "in-context"
    assert set(p.measurement["isolated_median_ms"]) == set(p.block_names)
    assert all(v >= 0 for v in p.measurement["call_overhead_median_ms"].values())
    assert all("in context" in p.stats(b).note for b in p.block_names)
    assert p.measurement["blockwise_pass"]["median_ms"] > 0
    assert len(p.measurement["attempts"]["worst_cv"]) == 1  # steady enough for --cv-warn 100 at once
