"""The simulated timeline as Chrome trace-event JSON (opens in Perfetto or chrome://tracing).

One track per processor with a slice per block a frame ran, a slice per cache lookup (or exit head) and per
cache update, and an instant marker where a frame exits; a camera track marks arrivals and dropped frames.
Times are microseconds of simulated time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engram.fileio import write_text_atomic
from simulator.engines import FULL, INPUT, NOT_PROCESSED

PID = 1
CAMERA_TID = 0
PROC_TID = 1


def _x(name: str, cat: str, ts: float, dur: float, tid: int, args: dict | None = None) -> dict:
    ev = {"name": name, "cat": cat, "ph": "X", "ts": round(ts, 3), "dur": round(max(dur, 0.001), 3), "pid": PID, "tid": tid}
    if args:
        ev["args"] = args
    return ev


def build_events(result, workload, device, max_frames: int | None = 3000) -> list[dict]:
    eng, des = result.engine, result.des
    proc = device.processor(result.policy.processor)
    events: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": PID, "args": {"name": f"{device.name}: {result.policy.name}"}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": CAMERA_TID, "args": {"name": "camera"}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": PROC_TID, "args": {"name": f"processor {proc.name}"}},
    ]
    n = len(workload) if max_frames is None else min(len(workload), max_frames)
    t0 = float(workload.arrival_s[0]) if len(workload) else 0.0
    block_names = device.blocks
    exit_block = {e: device.exit_block_index(e) for e in result.enabled}
    for i in range(n):
        arrive = (workload.arrival_s[i] - t0) * 1e6
        if des.dropped[i] or eng.exit_pos[i] == NOT_PROCESSED:
            events.append({"name": "dropped", "ph": "i", "s": "t", "ts": arrive, "pid": PID, "tid": CAMERA_TID,
                           "args": {"frame": i}})
            continue
        events.append({"name": "frame", "ph": "i", "s": "t", "ts": arrive, "pid": PID, "tid": CAMERA_TID,
                       "args": {"frame": i, "truth": int(workload.true_class[i])}})
        t = (des.start_s[i] - t0) * 1e6
        pos = int(eng.exit_pos[i])
        if pos == INPUT:
            for e, ms in eng.lookup_breakdown(i) or [("input", float(eng.lookup_ms[i]))]:
                events.append(_x("input-cache lookup", "lookup", t, ms * 1000, PROC_TID, {"frame": i}))
                t += ms * 1000
            events.append({"name": "reuse", "ph": "i", "s": "t", "ts": t, "pid": PID, "tid": PROC_TID,
                           "args": {"frame": i, "answer": int(eng.answer[i])}})
            continue
        probe = eng.lookup_ms[i] if eng.kind == "foggycache" else eng.input_ms[i]
        if probe > 0:  # the input-level probe that missed, before the model
            events.append(_x("input-cache lookup", "lookup", t, probe * 1000, PROC_TID, {"frame": i}))
            t += probe * 1000
        lookups = dict(eng.lookup_breakdown(i)) if pos != FULL or eng.lookup_ms[i] > 0 else {}
        last_block = len(block_names) - 1 if pos == FULL else exit_block[result.enabled[pos]]
        if eng.kind == "deepcache":
            scale = eng.compute_ms[i] / max(1e-12, float(np.sum(proc.block_ms)))
            if eng.lookup_ms[i] > 0:
                events.append(_x("block matching", "reuse", t, eng.lookup_ms[i] * 1000, PROC_TID, {"frame": i}))
                t += eng.lookup_ms[i] * 1000
        else:
            scale = 1.0
        for b in range(last_block + 1):
            dur = proc.block_ms[b] * scale * 1000
            events.append(_x(block_names[b], "block", t, dur, PROC_TID, {"frame": i}))
            t += dur
            name = block_names[b]
            if name in lookups:
                events.append(_x(f"lookup {name}", "lookup", t, lookups[name] * 1000, PROC_TID,
                                 {"frame": i, "entries": int(eng.entries[i])}))
                t += lookups[name] * 1000
        if pos >= 0:
            events.append({"name": f"exit {result.enabled[pos]}", "ph": "i", "s": "t", "ts": t, "pid": PID,
                           "tid": PROC_TID, "args": {"frame": i, "answer": int(eng.answer[i]), "level": int(eng.level[i])}})
        if eng.update_ms[i] > 0:
            events.append(_x("cache update", "update", t, eng.update_ms[i] * 1000, PROC_TID,
                             {"frame": i, "class": int(eng.answer[i])}))
    return events


def write_timeline(path: str | Path, result, workload, device, max_frames: int | None = 3000) -> Path:
    events = build_events(result, workload, device, max_frames)
    doc = {"traceEvents": events, "displayTimeUnit": "ms",
           "otherData": {"policy": result.policy.name, "frames": min(len(workload), max_frames or len(workload))}}
    write_text_atomic(path, json.dumps(doc, separators=(",", ":")))
    return Path(path)
