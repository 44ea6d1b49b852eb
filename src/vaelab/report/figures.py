"""The report's interactive figures, built with plotly (zoom, pan, hover for values).

Each function returns a plotly figure; the page (:mod:`vaelab.report.page`) inlines them as
JSON and draws them with the plotly.js it inlines once. Only SVG trace types (``scatter``,
``heatmap``) are used, never WebGL ones, so that a page opens the same in every browser,
headless ones included. Point clouds are the display frames' own (a batch of real points,
its posterior z, the fixed prior draws decoded): a few thousand points per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vaelab.config import RunConfig
from vaelab.describe import prior_short
from vaelab.frames import Frame
from vaelab.plots.curves import curve_series
from vaelab.plots.panels import run_limits

TEMPLATE = "plotly_white"
#: the browser draws every point it is given: more than this per panel is thinned, evenly
MAX_POINTS = 2000
_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _xy(points: Any, limit: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The first two columns as float32 (a 1-D set against zero), thinned to ``limit``."""
    arr = np.asarray(points, dtype=np.float32)
    if len(arr) > limit:
        arr = arr[np.linspace(0, len(arr) - 1, limit).astype(int)]
    if arr.shape[1] == 1:
        return arr[:, 0], np.zeros(len(arr), dtype=np.float32)
    return arr[:, 0], arr[:, 1]


def _first_two(name: str, dim: int, names: Sequence[str] | None = None) -> tuple[str, str]:
    """The names of the first two columns: ``names`` (a data file's) or ``{name}0, {name}1``
    (the second empty for 1-D data)."""
    if names is not None and len(names) == dim:
        return names[0], names[1] if dim > 1 else ""
    return f"{name}0", f"{name}1" if dim > 1 else ""


def _columns_note(name: str, dim: int, names: Sequence[str] | None = None) -> str:
    first, second = _first_two(name, dim, names)
    return f" (columns {first}, {second} of {dim})" if dim > 2 else ""


def panels_figure(frames: Sequence[Frame], config: RunConfig,
                  columns: Sequence[str] | None = None) -> go.Figure:
    """The seed's three panels (real batch | posterior z | generated), one frame per
    display step, with a slider over the steps and a play button; it opens on the last.
    ``columns``: the data's column names (:attr:`vaelab.runs.Run.columns`), for its axes."""
    limits = run_limits(list(frames))
    last = frames[-1]
    data_dim, latent_dim = last.data.shape[1], last.posterior_z.shape[1]
    xl, yl = _first_two("x", data_dim, columns)
    titles = (f"real points (a batch of {len(last.data)})"
              f"{_columns_note('x', data_dim, columns)}",
              f"posterior z ~ q(z|x) of the batch{_columns_note('z', latent_dim)}",
              f"generated: decoder means of z ~ {prior_short(config)} "
              f"({len(last.generated)})")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.07)

    def traces(frame: Frame) -> list[go.Scatter]:
        out = []
        for points, color, name in ((frame.data, _COLORS[0], "real"),
                                    (frame.posterior_z, _COLORS[1], "posterior z"),
                                    (frame.generated, _COLORS[2], "generated")):
            x, y = _xy(points)
            out.append(go.Scatter(x=x, y=y, mode="markers", name=name, showlegend=False,
                                  marker={"size": 3, "color": color, "opacity": 0.6},
                                  hovertemplate="(%{x:.3f}, %{y:.3f})<extra>" + name +
                                  "</extra>"))
        return out

    for col, trace in enumerate(traces(last), start=1):
        fig.add_trace(trace, row=1, col=col)
    names = [str(f.step) for f in frames]
    fig.frames = [go.Frame(data=traces(f), name=name, traces=[0, 1, 2])
                  for f, name in zip(frames, names, strict=True)]
    x0, x1, y0, y1 = limits.data
    for col, (xr, yr, x_title, y_title) in enumerate(((
            (x0, x1), (y0, y1), xl, yl),
            ((-limits.latent, limits.latent), (-limits.latent, limits.latent), "z0",
             "z1" if latent_dim > 1 else ""),
            ((x0, x1), (y0, y1), xl, yl)), start=1):
        axis = "" if col == 1 else str(col)
        fig.update_xaxes(range=list(xr), title_text=x_title, row=1, col=col)
        fig.update_yaxes(range=list(yr), title_text=y_title, row=1, col=col,
                         scaleanchor=f"x{axis}", scaleratio=1)
    instant = {"mode": "immediate", "frame": {"duration": 0, "redraw": False},
               "transition": {"duration": 0}}
    fig.update_layout(
        template=TEMPLATE, height=470, margin={"t": 60, "b": 110, "l": 50, "r": 20},
        font={"size": 11},
        sliders=[{"active": len(frames) - 1, "pad": {"t": 50}, "len": 0.9, "x": 0.1,
                  "currentvalue": {"prefix": "step ", "font": {"size": 13}},
                  "steps": [{"label": name, "method": "animate",
                             "args": [[name], instant]} for name in names]}],
        updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": -0.17,
                      "xanchor": "left", "yanchor": "top", "direction": "left",
                      "buttons": [
                          {"label": "play", "method": "animate",
                           "args": [None, {"mode": "immediate", "fromcurrent": False,
                                           "frame": {"duration": 400, "redraw": False},
                                           "transition": {"duration": 0}}]},
                          {"label": "pause", "method": "animate",
                           "args": [[None], instant]}]}],
    )
    return fig


def curves_figure(metrics: list[dict[str, float]], config: RunConfig) -> go.Figure:
    """Training curves in nats per point: the objective and the -ELBO | its two terms."""
    s = curve_series(metrics, config)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(s["objective_title"], s["terms_title"]),
                        horizontal_spacing=0.1)
    colors = iter(_COLORS)
    for col, series in ((1, s["objective"]), (2, s["terms"])):
        for label, values in series:
            fig.add_trace(go.Scatter(x=s["steps"], y=values, mode="lines", name=label,
                                     line={"color": next(colors)},
                                     hovertemplate="step %{x}: %{y:.4f} nats<extra>" + label +
                                     "</extra>"), row=1, col=col)
        fig.update_xaxes(title_text="training step", row=1, col=col)
        fig.update_yaxes(title_text="nats per point (train batches)", row=1, col=col,
                         range=_focus([v for _, v in series]))
    fig.update_layout(template=TEMPLATE, height=400, font={"size": 11},
                      margin={"t": 50, "b": 50, "l": 60, "r": 20},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _focus(series: list[np.ndarray]) -> list[float] | None:
    """A y range over the curves after their first tenth (double-click shows it all)."""
    values = np.concatenate([np.asarray(v)[len(v) // 10:] for v in series if len(v)])
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    lo, hi = float(values.min()), float(values.max())
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    return [lo - pad, hi + pad]


def density_figure(grid: dict[str, Any], span: float = 12.0) -> go.Figure:
    """The true log p(x) beside the model's (IWAE, K samples), on one colour scale: the top
    ``span`` nats. Hover shows the value at each grid point."""
    panels = [(f"model log p(x) (IWAE, K = {grid['k']})", grid["model_logp"])]
    if grid.get("true_logp") is not None:
        panels.insert(0, ("true log p(x)", grid["true_logp"]))
    finite = [np.nanmax(np.where(np.isfinite(p), p, np.nan)) for _, p in panels]
    top = float(max(finite))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels],
                        horizontal_spacing=0.08)
    xs = np.asarray(grid["gx"][0], dtype=np.float32)
    ys = np.asarray(grid["gy"][:, 0], dtype=np.float32)
    for col, (name, values) in enumerate(panels, start=1):
        shown = np.where(np.isfinite(values), values, top - span).astype(np.float32)
        fig.add_trace(go.Heatmap(
            x=xs, y=ys, z=np.clip(shown, top - span, top), zmin=top - span, zmax=top,
            colorscale="Viridis", showscale=col == len(panels),
            colorbar={"title": {"text": "log p(x), nats"}},
            hovertemplate="x0 %{x:.3f}, x1 %{y:.3f}: %{z:.3f} nats<extra>" + name +
            "</extra>"), row=1, col=col)
        axis = "" if col == 1 else str(col)
        fig.update_xaxes(title_text="x0", row=1, col=col, constrain="domain")
        fig.update_yaxes(title_text="x1", row=1, col=col, scaleanchor=f"x{axis}",
                         scaleratio=1, constrain="domain")
    fig.update_layout(template=TEMPLATE, height=430, font={"size": 11},
                      margin={"t": 50, "b": 50, "l": 50, "r": 20})
    return fig


def convergence_figure(result: dict[str, Any]) -> go.Figure:
    """Each estimator's mean log p(x) against K (± its Monte-Carlo spread), the y range on
    the bounds and the truth; and its mean error (or spread) per point against K."""
    has_truth = result.get("true_mean") is not None
    err_key = "mean_abs_error" if has_truth else "mc_std"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"mean estimate over {result['n_points']} points (± MC std)",
        "mean |estimate − true log p(x)| per point" if has_truth
        else "Monte-Carlo std per point"))
    colors = {"elbo": _COLORS[4], "iwae": _COLORS[0], "prior-mc": _COLORS[2]}
    rows = result["rows"]
    for name in dict.fromkeys(r["estimator"] for r in rows):
        mine = [r for r in rows if r["estimator"] == name]
        ks = [r["k"] for r in mine]
        color = colors.get(name, _COLORS[3])
        fig.add_trace(go.Scatter(
            x=ks, y=[r["mean"] for r in mine], name=name, legendgroup=name,
            error_y={"type": "data", "array": [r["mc_std"] for r in mine]},
            mode="lines+markers", line={"color": color},
            hovertemplate="K = %{x}: %{y:.4f} nats<extra>" + name + "</extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=ks, y=[r[err_key] for r in mine], name=name, legendgroup=name, showlegend=False,
            mode="lines+markers", line={"color": color},
            hovertemplate="K = %{x}: %{y:.4f} nats<extra>" + name + "</extra>"), row=1, col=2)
    if has_truth:
        fig.add_hline(y=result["true_mean"], line_dash="dash", line_color="black", row=1, col=1,
                      annotation_text="true mean log p(x)")
    anchor = [r["mean"] for r in rows if r["estimator"] != "prior-mc"]
    if has_truth:
        anchor.append(result["true_mean"])
    y_range = None
    if anchor:
        lo, hi = min(anchor), max(anchor)
        width = max(hi - lo, 0.05)
        y_range = [lo - 0.5 * width, hi + 0.5 * width]
    fig.update_xaxes(type="log", title_text="K (samples per point)")
    fig.update_yaxes(title_text="mean log p(x), nats per point", range=y_range, row=1, col=1)
    fig.update_yaxes(type="log", title_text="nats per point", row=1, col=2)
    fig.update_layout(template=TEMPLATE, height=400, font={"size": 11},
                      margin={"t": 50, "b": 50, "l": 60, "r": 20})
    return fig


def samples_figure(real: Any, samples: Sequence[tuple[str, Any]], same_axes: bool) -> go.Figure:
    """Real points, then each run's generated points, side by side (linked zoom when the runs
    share their data)."""
    panels = [("real points", real), *samples]
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[n for n, _ in panels],
                        horizontal_spacing=0.05, vertical_spacing=0.12 if rows > 1 else 0.1,
                        shared_xaxes="all" if same_axes else False,
                        shared_yaxes="all" if same_axes else False)
    for i, (name, points) in enumerate(panels):
        x, y = _xy(points)
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, showlegend=False,
                                 marker={"size": 3, "color": _COLORS[0 if i == 0 else 2],
                                         "opacity": 0.55},
                                 hovertemplate="(%{x:.3f}, %{y:.3f})<extra>" + name +
                                 "</extra>"), row=row, col=col)
        fig.update_xaxes(title_text="x0", row=row, col=col)
        fig.update_yaxes(title_text="x1", row=row, col=col, scaleratio=1,
                         scaleanchor="x" if i == 0 or same_axes else f"x{i + 1}")
    fig.update_layout(template=TEMPLATE, height=330 * rows + 40, font={"size": 11},
                      margin={"t": 40, "b": 40, "l": 50, "r": 20})
    return fig


def compare_curves_figure(curves: Sequence[tuple[str, list[dict[str, float]]]]) -> go.Figure:
    """Each run's -ELBO (train batches) against the step, on one axis."""
    fig = go.Figure()
    everything = []
    for i, (name, metrics) in enumerate(curves):
        steps = np.array([m["step"] for m in metrics], dtype=float)
        values = np.array([m["neg_elbo"] for m in metrics], dtype=float)
        everything.append(values)
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=name,
                                 line={"color": _COLORS[i % len(_COLORS)]},
                                 hovertemplate="step %{x}: %{y:.4f} nats<extra>" + name +
                                 "</extra>"))
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="-ELBO, nats per point (train batches)",
                     range=_focus(everything) if everything else None)
    fig.update_layout(template=TEMPLATE, height=380, font={"size": 11},
                      margin={"t": 30, "b": 50, "l": 60, "r": 20})
    return fig
