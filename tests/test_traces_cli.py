"""`run_sim.py trace ...` as a user meets it: help everywhere, real imports, stats, one-line errors."""

import json
from pathlib import Path

import pytest

from conftest import run_cli
from traces.format import iter_rows, read_trace

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "traces"


@pytest.mark.parametrize("cmd", [["trace"], ["trace", "import"], ["trace", "synth"], ["trace", "stats"]],
                         ids=lambda c: " ".join(c))
def test_help_on_every_level(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and "--help" in r.stdout
    if cmd == ["trace"]:
        assert all(c in r.stdout for c in ("import", "synth", "stats"))
    if cmd == ["trace", "import"]:
        assert "something-else" in r.stdout and "EGTEA" in r.stdout


def test_synth_then_stats_json_and_html(tmp_path):
    out = tmp_path / "s.parquet"
    r = run_cli("trace", "synth", "--out", str(out), "--videos", "2", "--frames", "300", "--seed", "3", "--zipf", "1.2")
    assert r.returncode == 0, r.stderr
    assert "600 frames, 2 videos" in r.stdout
    html = tmp_path / "s.html"
    r = run_cli("trace", "stats", str(out), "--json", "--html", str(html))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["frames"] == 600 and s["videos"] == 2 and s["level"] == "labels"
    assert 0 < s["top10pct_share"] <= 1 and 0 <= s["gini"] < 1
    page = html.read_text()
    assert "Plotly.newPlot" in page and 'src="http' not in page


def test_import_epic55_and_text_stats(tmp_path):
    out = tmp_path / "e.parquet"
    r = run_cli("trace", "import", "--format", "epic55", str(FIX / "epic55" / "EPIC_train_action_labels_P01_01_head.csv"),
                "--fps", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out}: ") and "1 videos" in r.stdout
    t = read_trace(out)
    assert t.meta.primary_rule.name == "latest-start" and t.meta.fps == 1.0
    r = run_cli("trace", "stats", str(out))
    assert r.returncode == 0, r.stderr
    assert "videos           1" in r.stdout and "gini" in r.stdout and "courgette" in r.stdout


def test_import_egtea_style_csv_through_the_command_line(tmp_path):
    out = tmp_path / "g.parquet"
    r = run_cli("trace", "import", "--format", "csv", str(FIX / "egtea" / "train_split1_excerpt.txt"),
                "--delimiter", "whitespace", "--no-header", "--time-unit", "ms", "--map", "label=3+",
                "--classes", str(FIX / "egtea" / "noun_idx_excerpt.txt"), "--fps", "1",
                "--extract", r"0=(?P<video>.+)-(?P<start>\d+)-(?P<stop>\d+)-F\d+-F\d+",
                "--license", "EGTEA Gaze+ terms", "--attribution", "Li, Liu, Rehg, ECCV 2018", "--out", str(out))
    assert r.returncode == 0, r.stderr
    t = read_trace(out)
    assert t.meta.class_names == ("recipe", "fridge", "eating_utensil") and t.meta.license == "EGTEA Gaze+ terms"
    assert {r[0] for r in iter_rows(t)} == {"P20-R04-ContinentalBreakfast", "P21-R04-ContinentalBreakfast"}


def test_shipped_epic_trace_stats():
    r = run_cli("trace", "stats", str(ROOT / "traces" / "data" / "epic100_val.parquet"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["videos"] == 138 and s["frames"] == 65741 and s["fps"] == 2.0
    assert s["classes"] == {"vocabulary": 305, "seen": 211}
    assert s["class_frequency"][0] == ["plate", 2717]


def one_error_line(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_bad_input_file_is_one_line_and_leaves_the_old_output(tmp_path):
    bad = tmp_path / "0003.txt"
    bad.write_text("0 0 Car 0 0 -1 0 0 10 10 1 1 1 1 1 1 1\n1 0 Bus 0 0 -1 0 0 10 10 1 1 1 1 1 1 1\n")
    out = tmp_path / "k.parquet"
    out.write_bytes(b"previous")
    line = one_error_line(run_cli("trace", "import", "--format", "kitti", str(bad), "--out", str(out)))
    assert f"{bad}:2: type: unknown class 'Bus'" in line
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0003.txt", "k.parquet"]  # no temp file left


@pytest.mark.parametrize("args,needle", [
    (["trace", "import", "--format", "kitti", "{fix}/kitti/0000.txt", "--map", "label=1", "--out", "{tmp}/x.parquet"],
     "--map"),
    (["trace", "import", "--format", "csv", "{fix}/egtea/train_split1_excerpt.txt", "--out", "{tmp}/x.parquet"],
     "no label column"),
    (["trace", "import", "--format", "mot", "{tmp}/missing/gt.txt", "--out", "{tmp}/x.parquet"], "file not found"),
    (["trace", "stats", "{fix}/kitti/0000.txt"], "not a readable Parquet file"),
    (["trace", "synth", "--out", "{tmp}/x.parquet", "--classes", "10", "--regime-classes", "50"], "--regime-classes"),
    (["trace", "import", "--format", "epic100", "{fix}/kitti/0000.txt", "--out", "{tmp}/x.parquet"], "0000.txt"),
])
def test_bad_arguments_give_one_clear_line(tmp_path, args, needle):
    args = [a.format(fix=FIX, tmp=tmp_path) for a in args]
    line = one_error_line(run_cli(*args))
    assert "error" in line and needle in line
    assert not (tmp_path / "x.parquet").exists()
