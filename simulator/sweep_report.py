"""The sweep's plotly page: the Pareto front (speed-up vs accuracy loss, coloured by energy), every trial,
the baselines and the oracle on the same tuning videos, and the chosen policy highlighted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engram.fileio import write_text_atomic


def pareto_page(path: Path, records: list[tuple[int, dict, dict]], front: list[int], chosen: int | None,
                references: list[dict[str, Any]], title: str, max_loss: float) -> Path:
    import plotly.graph_objects as go

    from simulator.sweep import feasible

    fig = go.Figure()
    ok = [r for r in records if feasible(r[2])]
    bad = [r for r in records if not feasible(r[2])]
    on_front = [r for r in ok if r[0] in front]

    def pts(rs):  # noqa: ANN001, ANN202
        return ([r[2]["speedup"] for r in rs], [r[2]["accuracy_loss_pt"] for r in rs],
                [f"trial {r[0]}<br>{r[2]['mean_latency_ms']:.3f} ms, {r[2]['active_energy_mj_per_frame']:.3f} mJ, "
                 f"{r[2]['memory_bytes'] / 1024:.0f} KiB" for r in rs])

    if bad:
        x, y, t = pts(bad)
        fig.add_trace(go.Scatter(x=x, y=y, text=t, mode="markers", name="infeasible trials",
                                 marker={"color": "lightgrey", "size": 6}, hoverinfo="text"))
    if ok:
        x, y, t = pts(ok)
        fig.add_trace(go.Scatter(x=x, y=y, text=t, mode="markers", name="feasible trials", hoverinfo="text",
                                 marker={"size": 8, "color": [r[2]["active_energy_mj_per_frame"] for r in ok],
                                         "colorscale": "Viridis", "colorbar": {"title": "mJ/frame"}, "showscale": True}))
    if on_front:
        on_front.sort(key=lambda r: r[2]["speedup"])
        x, y, t = pts(on_front)
        fig.add_trace(go.Scatter(x=x, y=y, text=t, mode="lines", name="Pareto front (3 objectives, projected)",
                                 line={"color": "black", "dash": "dot"}, hoverinfo="text"))
    for m in references:
        fig.add_trace(go.Scatter(x=[m["speedup"]], y=[m["accuracy_loss_pt"]], mode="markers+text", name=m["policy"],
                                 text=[m["policy"]], textposition="top center",
                                 marker={"symbol": "diamond", "size": 12}))
    if chosen is not None:
        c = next(r for r in records if r[0] == chosen)
        fig.add_trace(go.Scatter(x=[c[2]["speedup"]], y=[c[2]["accuracy_loss_pt"]], mode="markers", name=f"chosen (trial {chosen})",
                                 marker={"symbol": "star", "size": 20, "color": "red", "line": {"width": 1, "color": "black"}}))
    fig.add_hline(y=max_loss, line={"color": "red", "dash": "dash"}, annotation_text=f"max loss {max_loss:g} pt")
    # Trials far over the loss limit would squash the interesting band: show it, the rest stays a zoom away.
    losses = [r[2]["accuracy_loss_pt"] for r in ok] + [m["accuracy_loss_pt"] for m in references]
    low = min([-1.0, *losses]) - 0.5
    fig.update_layout(title=title, xaxis_title="speed-up over no cache", yaxis_title="accuracy loss (points)", height=700,
                      yaxis={"range": [low, max(3.0, 3.0 * max_loss)]},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0})
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    write_text_atomic(path, html)
    return path
