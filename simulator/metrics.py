"""Metrics of one simulated run (definitions in the README and ../shared/BRIEF.md).

- latencies are per processed frame: ``service`` (the frame's own blocks, lookups and cache update) and
  ``queued`` (from arrival to the end of service, waiting included);
- speed-up: mean service latency of plain inference over the policy's, same trace and profile;
- accuracy: top-1 against ground truth over *all* frames; a dropped frame shows the last answer the device
  gave (a camera app keeps displaying it), or counts as wrong before the first answer;
- accuracy loss: plain inference's accuracy minus the policy's, in percentage points;
- oracle share: the policy's speed-up over the oracle's (the oracle uses the policy's cache configuration);
- energy per frame: the frames' active energy plus idle power over the idle time, divided by all frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.engines import FULL, INPUT, NOT_PROCESSED


def shown_answers(answer: np.ndarray, processed: np.ndarray) -> np.ndarray:
    """Answer per frame, dropped frames showing the previous processed frame's answer (-1 before any)."""
    idx = np.where(processed, np.arange(len(answer)), -1)
    idx = np.maximum.accumulate(idx) if len(idx) else idx
    return np.where(idx >= 0, answer[np.maximum(idx, 0)], -1)


def exit_histogram(exit_pos: np.ndarray, enabled: tuple[str, ...]) -> dict[str, int]:
    hist = {e: int(np.count_nonzero(exit_pos == k)) for k, e in enumerate(enabled)}
    if np.any(exit_pos == INPUT):
        hist = {"input": int(np.count_nonzero(exit_pos == INPUT)), **hist}
    hist["full"] = int(np.count_nonzero(exit_pos == FULL))
    return hist


def compute_metrics(engine, des, workload, device, idle_mw: float) -> dict[str, Any]:
    n = len(workload)
    processed = engine.exit_pos != NOT_PROCESSED
    service = (engine.compute_ms + engine.lookup_ms + engine.update_ms)[processed]
    queued = ((des.finish_s - workload.arrival_s) * 1000.0)[processed]
    shown = shown_answers(engine.answer, processed)
    busy_s = float(service.sum()) / 1000.0
    span_s = max(des.end_s - float(workload.arrival_s[0]), busy_s) if n else 0.0
    # The last frame's period counts too (the device idles until the next frame would come).
    span_s += 1.0 / workload.fps if n else 0.0
    active_mj = float(engine.energy_mj[processed].sum())
    idle_mj = idle_mw * max(0.0, span_s - busy_s)
    hits = engine.level[processed]
    m: dict[str, Any] = {
        "frames": n,
        "processed": int(processed.sum()),
        "dropped": int(des.dropped.sum()),
        "mean_latency_ms": float(service.mean()) if len(service) else 0.0,
        "p50_latency_ms": float(np.percentile(service, 50)) if len(service) else 0.0,
        "p99_latency_ms": float(np.percentile(service, 99)) if len(service) else 0.0,
        "mean_latency_queued_ms": float(queued.mean()) if len(queued) else 0.0,
        "p99_latency_queued_ms": float(np.percentile(queued, 99)) if len(queued) else 0.0,
        "accuracy": float(np.mean(shown == workload.true_class)) if n else 0.0,
        "accuracy_vs_model": float(np.mean(shown == workload.prediction)) if n else 0.0,
        "hit_rate": {"hot": float(np.mean(hits == 0)) if len(hits) else 0.0,
                     "cold": float(np.mean(hits == 1)) if len(hits) else 0.0,
                     # answered at the input (FoggyCache's records, a policy's input level): no block ran
                     "input": float(np.mean(engine.exit_pos[processed] == INPUT)) if len(hits) else 0.0},
        "exit_histogram": exit_histogram(engine.exit_pos[processed], engine.enabled),
        "energy_mj_per_frame": (active_mj + idle_mj) / n if n else 0.0,
        "active_energy_mj_per_frame": active_mj / n if n else 0.0,
        "cache_bytes": int(engine.cache_bytes),
        "model_bytes": int(device.model_bytes),
        "memory_bytes": int(device.model_bytes + engine.cache_bytes),
        "scene_changes": len(engine.scene_changes),
    }
    return m
