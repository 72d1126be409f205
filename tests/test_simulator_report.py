"""`simulate --out` and `compare --out`: the HTML report (rendered in a headless browser), the Chrome trace-event
timeline (one track per processor, a slice per block) and metrics.json."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from collections import defaultdict

import numpy as np
import pytest

from engram.cli import main
from simulator.policy import load_policy
from simulator.presets import PRESETS, preset
from simulator_helpers import PROFILE, write_small_traces

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
EXITS = ("b1", "b3", "b4", "b5", "b6", "b7")


def _main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One ``simulate --out`` (SMTM) and one ``compare --out``, on a two-video trace."""
    base = tmp_path_factory.mktemp("sim-report")
    trace, calib = write_small_traces(base / "traces")
    common = ["--profile", str(PROFILE), "--trace", str(trace), "--calibration", str(calib)]
    rc, out, err = _main("simulate", *common, "--policy", "smtm", "--json", "--out", str(base / "sim"))
    assert rc == 0, err
    rc2, _, err2 = _main("compare", *common, "--out", str(base / "cmp"))
    assert rc2 == 0, err2
    return {"sim": base / "sim", "cmp": base / "cmp", "printed": json.loads(out), "stderr": err}


@pytest.fixture(scope="module")
def profile_doc():
    return json.loads(PROFILE.read_text())


def test_simulate_out_writes_the_report_timeline_metrics_and_policy(runs):
    d = runs["sim"]
    for name in ("report.html", "timeline.json", "metrics.json", "policy.json"):
        assert (d / name).is_file() and (d / name).stat().st_size > 0, name
    assert "wrote" in runs["stderr"] and str(d / "report.html") in runs["stderr"]  # not on stdout with --json
    assert json.loads((d / "metrics.json").read_text()) == runs["printed"]
    policy = load_policy(d / "policy.json")
    assert policy.kind == "smtm" and policy.metric.calibration is not None  # as run: calibration filled in
    assert set(policy.metric.calibration) == set(policy.metric.thresholds)


def _figures(html: str) -> int:
    return html.count('class="plotly-graph-div"')


def test_report_is_self_contained_with_one_figure_per_section(runs):
    html = (runs["sim"] / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in html
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js is inline: the report works offline
    assert _figures(html) == 4  # table, latency CDF, exit histogram, cache over time
    assert "Engram: smtm on small.parquet" in html and "537 frames, 2 videos" in html
    cmp = (runs["cmp"] / "report.html").read_text()
    cache_kinds = [n for n in PRESETS if preset(n, EXITS).kind in ("smtm", "oracle", "foggycache")]
    assert len(cache_kinds) >= 3 and _figures(cmp) == 3 + len(cache_kinds)  # + cache over time for each
    for name in PRESETS:
        assert f'"name":"{name}"' in cmp or f'"{name}"' in cmp


def test_compare_out_writes_every_policy(runs):
    d = runs["cmp"]
    metrics = json.loads((d / "metrics.json").read_text())
    assert [m["policy"] for m in metrics] == ["smtm", *(p for p in PRESETS if p != "smtm")]  # SMTM first
    for name in PRESETS:
        assert load_policy(d / f"policy-{name}.json").name == name
    timeline = json.loads((d / "timeline.json").read_text())
    assert timeline["otherData"]["policy"] == "smtm"


# -------------------------------------------------------------------------------------------- timeline


@pytest.fixture(scope="module")
def timeline(runs):
    doc = json.loads((runs["sim"] / "timeline.json").read_text())
    return doc["traceEvents"] if isinstance(doc, dict) else doc


def test_timeline_is_chrome_trace_event_json(timeline):
    assert isinstance(timeline, list) and timeline
    for ev in timeline:
        assert ev["ph"] in ("X", "i", "M") and isinstance(ev["pid"], int) and isinstance(ev["name"], str)
        if ev["ph"] == "X":
            assert isinstance(ev["ts"], (int, float)) and isinstance(ev["tid"], int)
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] > 0 and ev["ts"] >= 0
        if ev["ph"] == "i":
            assert isinstance(ev["ts"], (int, float)) and ev["s"] in ("t", "p", "g")


def test_one_track_per_processor_and_a_camera(timeline, profile_doc):
    names = {ev["tid"]: ev["args"]["name"] for ev in timeline if ev["ph"] == "M" and ev["name"] == "thread_name"}
    procs = [n for n in names.values() if n.startswith("processor ")]
    assert procs == [f"processor {profile_doc['device']['default_processor']}"]
    assert "camera" in names.values()
    camera = next(t for t, n in names.items() if n == "camera")
    arrivals = [ev for ev in timeline if ev.get("tid") == camera and ev["ph"] == "i"]
    assert len(arrivals) == 537  # every frame arrives (or is dropped) on the camera track
    slices = [ev for ev in timeline if ev["ph"] == "X"]
    assert {ev["tid"] for ev in slices} == {t for t, n in names.items() if n.startswith("processor ")}


def test_slices_per_block_follow_the_profile(timeline, profile_doc, runs):
    blocks = [b["name"] for b in profile_doc["blocks"]]
    proc = profile_doc["device"]["default_processor"]
    median_us = {b["name"]: b["latency"][proc]["median_ms"] * 1000 for b in profile_doc["blocks"]}
    per_frame = defaultdict(list)
    exits = {}
    for ev in timeline:
        if ev["ph"] == "X":
            per_frame[ev["args"]["frame"]].append(ev)
        elif ev["ph"] == "i" and ev["name"].startswith("exit "):
            exits[ev["args"]["frame"]] = ev["name"].removeprefix("exit ")
    assert len(per_frame) == 537
    hist = runs["printed"]["exit_histogram"]
    assert len(exits) == 537 - hist["full"]
    for e, count in hist.items():
        if e != "full":
            assert sum(1 for x in exits.values() if x == e) == count, e
    total_us = 0.0
    for frame, evs in per_frame.items():
        ran = [ev["name"] for ev in evs if ev["cat"] == "block"]
        last = blocks.index(exits[frame]) if frame in exits else len(blocks) - 1
        assert ran == blocks[: last + 1], frame  # every block up to the exit, in order, once
        for ev in evs:
            if ev["cat"] == "block":
                assert ev["dur"] == pytest.approx(median_us[ev["name"]], abs=1e-3)
        assert all(ev["cat"] in ("block", "lookup", "update") for ev in evs)
        total_us += sum(ev["dur"] for ev in evs)
    # The slices add up to the simulated service time.
    assert total_us / 537 / 1000 == pytest.approx(runs["printed"]["mean_latency_ms"], rel=1e-6)
    # One processor: its slices never overlap.
    slices = sorted((ev for evs in per_frame.values() for ev in evs), key=lambda ev: ev["ts"])
    for a, b in zip(slices, slices[1:]):
        assert b["ts"] >= a["ts"] + a["dur"] - 2e-3


# ---------------------------------------------------------------------------------------------- browser


@pytest.mark.slow
def test_report_renders_its_plots_in_a_headless_browser(runs, tmp_path):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)} on PATH)")
    report = runs["sim"] / "report.html"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", report.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    figures = _figures(report.read_text())
    assert figures == 4
    assert len(re.findall(r'class="main-svg"', dom)) >= figures, "plotly drew nothing"
    # Every figure's div got its own drawing.
    chunks = dom.split("plotly-graph-div")[1:]
    assert len(chunks) == figures
    assert all('class="main-svg"' in c for c in chunks)


@pytest.fixture(scope="module")
def small_presets():
    from simulator.cli import run_presets
    from simulator_helpers import SMALL_CALIBRATION_VIDEOS, SMALL_VIDEOS, shipped_calibration, shipped_device, shipped_workload

    w = shipped_workload().select_videos(SMALL_VIDEOS)
    calib = shipped_calibration().select_videos(SMALL_CALIBRATION_VIDEOS)
    dev = shipped_device()
    return w, dev, run_presets(dev, w, calib)


@pytest.mark.parametrize("name", PRESETS)
def test_every_policy_timeline_adds_up_to_its_service_times(small_presets, name):
    from simulator.engines import NOT_PROCESSED
    from simulator.timeline import build_events

    w, dev, results = small_presets
    r = next(r for r in results if r.policy.name == name)
    events = build_events(r, w, dev, max_frames=None)
    e = r.engine
    per_frame = defaultdict(list)
    for ev in events:
        if ev["ph"] == "X":
            per_frame[ev["args"]["frame"]].append(ev)
    processed = np.flatnonzero(e.exit_pos != NOT_PROCESSED)
    assert sorted(per_frame) == list(processed)
    t0 = w.arrival_s[0]
    for i in processed:
        evs = per_frame[i]
        service_us = (e.compute_ms[i] + e.lookup_ms[i] + e.update_ms[i]) * 1000
        assert sum(ev["dur"] for ev in evs) == pytest.approx(service_us, abs=0.01), i
        assert evs[0]["ts"] == pytest.approx((r.des.start_s[i] - t0) * 1e6, abs=0.01)
        ran = [ev["name"] for ev in evs if ev["cat"] == "block"]
        assert ran == list(dev.blocks[: len(ran)]), i  # a prefix of the model, in order
    slices = sorted((ev for evs in per_frame.values() for ev in evs), key=lambda ev: ev["ts"])
    for a, b in zip(slices, slices[1:]):
        assert b["ts"] >= a["ts"] + a["dur"] - 2e-3
