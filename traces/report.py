"""A self-contained HTML page (plotly.js inlined, works offline) with a trace's class-frequency curve and
its working set over time."""

from __future__ import annotations

import html
from os import PathLike
from typing import Any

import numpy as np

from engram.fileio import write_text_atomic
from traces.format import LabelTrace
from traces.stats import class_counts, working_set

# Enough points for the eye; keeps the page small on long traces.
MAX_POINTS = 20000


def build_figure(trace: LabelTrace, stats: dict[str, Any], window_s: float):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    counts = class_counts(trace)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    ranks = np.arange(1, order.size + 1)
    names = [trace.meta.class_names[c] for c in order]

    ws = working_set(trace, window_s)
    # One time axis across videos: each video starts where the previous one ended.
    t = np.empty(len(trace))
    offset = 0.0
    for _, s, e in trace.video_bounds():
        t[s:e] = trace.time_s[s:e] - trace.time_s[s] + offset
        offset = t[e - 1] + 1.0 / trace.meta.fps
    step = max(1, len(trace) // MAX_POINTS)
    idx = np.arange(0, len(trace), step)
    vids = [trace.video_names[v] for v in trace.video[idx]]

    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14, subplot_titles=(
        f"Class frequency ({order.size} classes seen; top 10% hold {stats['top10pct_share']:.1%} of frames, "
        f"Gini {stats['gini']:.2f})",
        f"Working set: distinct classes in the last {window_s:g} s (videos back to back)"))
    fig.add_trace(go.Scatter(x=ranks, y=counts[order], mode="lines+markers", marker={"size": 4},
                             text=names, hovertemplate="rank %{x}: %{text}<br>%{y} frames<extra></extra>",
                             name="frames per class"), row=1, col=1)
    fig.add_trace(go.Scattergl(x=t[idx] / 60.0, y=ws[idx], mode="lines", text=vids,
                               hovertemplate="%{text}<br>%{x:.1f} min: %{y} classes<extra></extra>",
                               name="working set"), row=2, col=1)
    fig.update_xaxes(type="log", title_text="class rank", row=1, col=1)
    fig.update_yaxes(type="log", title_text="frames", row=1, col=1)
    fig.update_xaxes(title_text="trace time (min)", row=2, col=1)
    fig.update_yaxes(title_text="classes", rangemode="tozero", row=2, col=1)
    fig.update_layout(height=900, showlegend=False, template="plotly_white",
                      margin={"l": 70, "r": 30, "t": 60, "b": 50})
    return fig


def render_html(trace: LabelTrace, stats: dict[str, Any], window_s: float, title: str) -> str:
    fig = build_figure(trace, stats, window_s)
    plot = fig.to_html(include_plotlyjs=True, full_html=False, config={"displaylogo": False})
    rd = stats["reuse_distance"]
    rows = [
        ("videos / frames", f"{stats['videos']} / {stats['frames']:,} at {stats['fps']:g} fps "
                            f"({stats['duration_s'] / 3600:.2f} h annotated)"),
        ("classes seen / vocabulary", f"{stats['classes']['seen']} / {stats['classes']['vocabulary']}"),
        ("top 10% of classes hold", f"{stats['top10pct_share']:.1%} of frames"),
        ("Gini coefficient", f"{stats['gini']:.3f}"),
        ("P(class_t = class_t-1)", "n/a" if stats["p_same_as_previous"] is None else f"{stats['p_same_as_previous']:.3f}"),
        ("mean run length", f"{stats['mean_run_length_frames']:.1f} frames"),
        ("reuse distance (class changes)", f"median {rd['on_change']['p50']}, p90 {rd['on_change']['p90']}; "
                                           f"first sightings {rd['cold_share']:.1%} of frames"),
        ("LRU hit rate by cache size", ", ".join(f"{k}: {v:.1%}" for k, v in rd["lru_hit_rate"].items())),
        (f"working set ({window_s:g} s)", f"mean {stats['working_set']['mean']:.1f}, p90 {stats['working_set']['p90']}, "
                                          f"max {stats['working_set']['max']}"),
    ]
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    meta = trace.meta
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:3px 12px;border-bottom:1px solid #eee}} th{{font-weight:600}}
.small{{color:#666;font-size:90%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="small">{html.escape(meta.source)}<br>License: {html.escape(meta.license)}<br>{html.escape(meta.attribution)}<br>
Primary object rule ({html.escape(meta.primary_rule.name)}): {html.escape(meta.primary_rule.description)}</p>
<table>{table}</table>
{plot}
</body></html>
"""


def write_report(trace: LabelTrace, stats: dict[str, Any], window_s: float, out: str | PathLike[str], title: str) -> None:
    write_text_atomic(out, render_html(trace, stats, window_s, title))
