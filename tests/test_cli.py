"""The command line as a user meets it: help everywhere, one-line errors with exit status 2."""

import json

import pytest

from conftest import run_cli

COMMANDS = [[], ["reference"], ["reference", "evaluate"], ["reference", "train"], ["models"], ["profile"],
            ["simulate"], ["compare"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_on_every_level(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout
    assert "--help" in r.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["no-such-command"], "No such command"),
        (["reference", "evaluate", "--images", "lots"], "--images"),
        (["reference", "evaluate", "--images", "0"], "--images"),
        (["reference", "evaluate", "--model-dir", "/nonexistent/dir"], "file not found"),
        (["models", "vgg99"], "unknown model"),
        (["reference", "train", "--steps", "-3"], "--steps"),
    ],
)
def test_bad_arguments_give_one_clear_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in r.stderr


def test_models_lists_the_zoo_and_describes_one():
    r = run_cli("models", "--json")
    assert json.loads(r.stdout)["models"] == ["mobilenetv2", "reference", "resnet18"]
    r = run_cli("models", "resnet18", "--json")
    info = json.loads(r.stdout)
    assert info["exit_points"] == ["layer1", "layer2", "layer3", "layer4"]
    assert [c["name"] for c in info["costs"]] == info["blocks"]


def test_damaged_weights_file_is_one_line(tmp_path):
    (tmp_path / "refnet.safetensors").write_bytes(b"\x00garbage" * 10)
    r = run_cli("reference", "evaluate", "--model-dir", str(tmp_path), "--images", "10")
    assert r.returncode == 2
    assert "refnet.safetensors" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_main_job_searches_compares_and_exports(tmp_path):
    """`python run_sim.py` alone (an 8-trial search here): the held-out table with every policy, the report, the
    sweep and the bundle under ./out/; a second run resumes the finished study instead of searching again."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, ENGRAM_MAIN_JOB_TRIALS="8")
    r = subprocess.run([sys.executable, str(ROOT / "run_sim.py")], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "8 trials on" in r.stdout
    for name in ("tuned (trial", "oracle (tuned's cache) ", "no-cache ", "deepcache ", "foggycache ", "branchy ",
                 "smtm ", "oracle "):
        assert f"\n{name}" in r.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics[0]["policy"].startswith("tuned") and {m["policy"] for m in metrics[1:]} == {
        "oracle (tuned's cache)", "no-cache", "deepcache", "foggycache", "branchy", "smtm", "oracle"}
    assert (tmp_path / "out" / "report.html").stat().st_size > 100_000
    assert (tmp_path / "out" / "sweep" / "pareto.html").exists()
    assert json.loads((tmp_path / "out" / "bundle" / "bundle.json").read_text())["format"] == "engram.bundle"
    again = subprocess.run([sys.executable, str(ROOT / "run_sim.py")], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    table = lambda out: out[out.index("policy "):out.index("wrote")]  # noqa: E731
    assert table(again.stdout) == table(r.stdout)
