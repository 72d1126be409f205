"""Self-contained plotly HTML report of one or more simulated runs.

Sections: the comparison table; latency CDF per policy; exit-point histogram per policy; for cache
policies, hit rate and cache size over time with scene changes (and video boundaries) marked.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from engram.fileio import write_text_atomic
from simulator.engines import INPUT, NOT_PROCESSED

TABLE_COLUMNS = [
    ("policy", "policy", "{}"), ("speed-up", "speedup", "{:.2f}x"), ("mean ms", "mean_latency_ms", "{:.3f}"),
    ("p99 ms", "p99_latency_ms", "{:.3f}"), ("accuracy", "accuracy", "{:.2%}"),
    ("loss (pt)", "accuracy_loss_pt", "{:+.2f}"), ("oracle share", "oracle_share", "{:.0%}"),
    ("input", ("hit_rate", "input"), "{:.1%}"), ("hot hits", ("hit_rate", "hot"), "{:.1%}"), ("cold hits", ("hit_rate", "cold"), "{:.1%}"),
    ("active mJ/frame", "active_energy_mj_per_frame", "{:.3f}"), ("total mJ/frame", "energy_mj_per_frame", "{:.1f}"), ("cache KiB", "cache_bytes", "{:.1f}"),
    ("dropped", "dropped", "{}"),
]


def cell(metrics: dict, key, fmt: str) -> str:
    v = metrics
    for k in key if isinstance(key, tuple) else (key,):
        v = v.get(k) if isinstance(v, dict) else None
    if v is None:
        return "-"
    if key == "cache_bytes":
        v = v / 1024
    return fmt.format(v)


def table_figure(results) -> go.Figure:
    header = [c[0] for c in TABLE_COLUMNS]
    rows = [[cell(r.metrics, key, fmt) for _, key, fmt in TABLE_COLUMNS] for r in results]
    fig = go.Figure(go.Table(header={"values": header, "align": "left"},
                             cells={"values": list(map(list, zip(*rows))) if rows else [], "align": "left"}))
    fig.update_layout(title="Comparison (same trace, same profile)", height=120 + 30 * len(results), margin={"t": 40})
    return fig


def latency_cdf(results) -> go.Figure:
    fig = go.Figure()
    for r in results:
        e = r.engine
        done = e.exit_pos != NOT_PROCESSED
        lat = np.sort((e.compute_ms + e.lookup_ms + e.update_ms)[done])
        if len(lat) > 2000:  # keep the page light: 2000 quantiles draw the same curve
            q = np.linspace(0, 1, 2000)
            lat, y = np.quantile(lat, q), q
        else:
            y = np.arange(1, len(lat) + 1) / max(1, len(lat))
        fig.add_trace(go.Scatter(x=lat, y=y, mode="lines", name=r.policy.name))
    fig.update_layout(title="Per-frame latency (service, without queueing): CDF", xaxis_title="latency (ms)",
                      yaxis_title="share of frames", height=420)
    return fig


def exit_histogram(results) -> go.Figure:
    fig = go.Figure()
    for r in results:
        hist = r.metrics["exit_histogram"]
        total = max(1, sum(hist.values()))
        fig.add_trace(go.Bar(x=list(hist), y=[v / total for v in hist.values()], name=r.policy.name))
    fig.update_layout(title="Where frames leave the network", xaxis_title="exit point ('full': ran every block)",
                      yaxis_title="share of processed frames", barmode="group", height=420)
    return fig


def cache_over_time(result, workload, window: int = 50) -> go.Figure:
    e = result.engine
    done = e.exit_pos != NOT_PROCESSED
    t = workload.arrival_s - workload.arrival_s[0]
    hit = ((e.level >= 0) | (e.exit_pos == INPUT)).astype(float)  # answered without the full model's answer
    kernel = np.ones(window) / window
    rate = np.convolve(np.where(done, hit, np.nan_to_num(hit)), kernel, mode="same")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t[done], y=rate[done], mode="lines",
                             name=f"hit rate, cache or input ({window}-frame mean)"))
    fig.add_trace(go.Scatter(x=t[done], y=e.entries[done], mode="lines", name="cache entries", yaxis="y2",
                             line={"dash": "dot"}))
    for i in e.scene_changes:
        fig.add_vline(x=float(t[i]), line={"color": "firebrick", "width": 1})
    for i in np.flatnonzero(workload.new_video):
        fig.add_vline(x=float(t[i]), line={"color": "grey", "width": 1, "dash": "dash"})
    fig.update_layout(title=f"{result.policy.name}: hit rate and cache size over time "
                            "(red: scene change acted on; dashed grey: new video)",
                      xaxis_title="time (s)", yaxis={"title": "hit rate", "range": [0, 1.05]},
                      yaxis2={"title": "entries", "overlaying": "y", "side": "right", "rangemode": "tozero"}, height=420)
    return fig


def write_report(path: str | Path, results, workload, device, title: str, notes: list[str] | None = None) -> Path:
    figs = [table_figure(results), latency_cdf(results), exit_histogram(results)]
    for r in results:
        if r.policy.kind in ("smtm", "oracle", "foggycache"):
            figs.append(cache_over_time(r, workload))
    body = "\n".join(f.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}) for f in figs)
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in (notes or []))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1200px}} .note{{color:#555}}</style></head>
<body><h1>{html.escape(title)}</h1>
<ul class="note"><li>trace: {html.escape(workload.source)} ({len(workload)} frames, {len(set(workload.video.tolist()))} videos)</li>
<li>profile: {html.escape(device.source)} (device {html.escape(device.name)}, model {html.escape(device.model_name)})</li>{note_html}</ul>
{body}
</body></html>
"""
    write_text_atomic(path, page)
    return Path(path)
