"""The sweep's ``report.html``: its trials compared, from their rows and training curves.

Built from what the sweep recorded (each trial's row and its run's ``metrics.csv``), not
from the loaded runs: the driver imports no torch, and the page comes with the table. It
names the best trial, holds one sortable row per trial (settings, metric, status, reason),
the metric against each searched setting, and the training curves; each trial's own page
(its generated points, density, convergence) is ``vaelab report DIR/trial-NNN``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from vaelab.report.page import Page, Report, esc, table
from vaelab.sweep.records import best_row

#: how many trials' curves the page draws at most (the best ones), so that it stays light
MAX_CURVES = 40
#: plotly's default colours, cycled
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


class _Figure:
    """A plotly figure as plain data (what ``Page.figure`` places): the page draws it with
    plotly.js, and no plotly figure object is built here."""

    def __init__(self, data: list[dict[str, Any]], layout: dict[str, Any]) -> None:
        self.data, self.layout = data, layout

    def to_json(self) -> str:
        return json.dumps({"data": self.data, "layout": self.layout}, default=str)


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _cell(value: Any, number: bool = False) -> str:
    if number and isinstance(value, int | float) and math.isfinite(value):
        return f'<td class="num" data-sort="{value!r}">{esc(_show(value))}</td>'
    return f"<td>{esc(_show(value))}</td>"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sweep_report(out: Path, rows: list[dict[str, Any]], keys: list[str], metric: str,
                 about: str) -> Report:
    """The page of the sweep in ``out``: ``rows`` (every trial's, in trial order), its
    searched ``keys`` and ``metric`` (lower is better); ``about``: a line on how it
    searched."""
    title = f"vaelab sweep {out.name}"
    page = Page(title)
    best = best_row(rows, metric)
    done = [r for r in rows if r.get("status") == "done" and _finite(r.get(metric))]
    counts = ", ".join(f"{sum(r.get('status') == s for r in rows)} {s}"
                       for s in ("done", "failed", "stopped"))
    page.add(f"<h1>{esc(title)}</h1>",
             f'<p class="sub">{len(rows)} trials ({esc(counts)}) · {esc(about)} · ranked by '
             f"<code>{esc(metric)}</code>, lower is better</p>")
    if best is not None:
        settings = ", ".join(f"{k} = {_show(best.get(k))}" for k in keys)
        page.add(f"<p><b>Best: {esc(best['trial'])}</b> ({esc(settings)}): {esc(metric)} "
                 f"{best[metric]:.4f}; its run directory is <code>{esc(best['trial'])}"
                 "</code>.</p>")
    else:
        page.add('<p class="note">No trial finished with a score.</p>')
    headers = ["trial", "status", *keys, metric, "steps", "train s", "trial s", "node",
               "reason"]
    body = []
    for r in rows:
        mark = " (best)" if best is not None and r["trial"] == best["trial"] else ""
        body.append([f"<td>{esc(r['trial'])}{esc(mark)}</td>", _cell(r.get("status")),
                     *(_cell(r.get(k), number=True) for k in keys),
                     _cell(r.get(metric), number=True), _cell(r.get("steps"), number=True),
                     _cell(r.get("seconds"), number=True),
                     _cell(r.get("wall_seconds"), number=True), _cell(r.get("node")),
                     _cell(r.get("reason"))])
    page.add("<h2>The trials</h2>", "<p>Click a column's header to sort by it.</p>",
             table(headers, body, sortable=True))
    if done:
        page.add(f"<h2>{esc(metric)} against each searched setting</h2>", page.figure(
            _settings_figure(done, keys, metric, best),
            f"Each finished trial's {esc(metric)} (lower is better) against the value of each "
            "searched setting; the best trial in red. Hover a point for its trial."))
    curves = _curves(out, sorted(done, key=lambda r: r[metric])[:MAX_CURVES])
    if curves:
        page.add("<h2>Training curves</h2>", page.figure(
            _curves_figure(curves),
            "-ELBO on the training batches, interval means, nats per point, of the "
            + (f"{MAX_CURVES} best trials" if len(done) > MAX_CURVES else "finished trials")
            + " (click a legend entry to hide a trial)."))
    page.add("<p>A trial's own page (its generated points, density and convergence): "
             f"<code>vaelab report {esc(out.name)}/trial-NNN</code>; several side by side: "
             f"<code>vaelab report {esc(out.name)}/trial-000 {esc(out.name)}/trial-001"
             "</code>.</p>")
    return Report(page.render(), title)


def _settings_figure(done: list[dict[str, Any]], keys: list[str], metric: str,
                     best: dict[str, Any] | None) -> _Figure:
    if best is not None:  # drawn last: on top of a trial with the same setting
        done = sorted(done, key=lambda r: r["trial"] == best["trial"])
    n = max(1, len(keys))
    gap = 0.06 if n > 1 else 0.0
    width = (1 - gap * (n - 1)) / n
    data, layout = [], {"height": 380, "margin": {"t": 30}, "showlegend": False,
                        "yaxis": {"title": {"text": metric}}}
    for i, key in enumerate(keys or ["trial"]):
        axis = "" if i == 0 else str(i + 1)
        values = [r.get(key) for r in done]
        numeric = all(_finite(v) for v in values)
        xs = values if numeric else [_show(v) for v in values]
        positive = numeric and all(v > 0 for v in values)
        spread = positive and max(values) / min(values) >= 20
        layout[f"xaxis{axis}"] = {
            "domain": [i * (width + gap), i * (width + gap) + width],
            "title": {"text": key}, "type": "log" if spread else (
                "linear" if numeric else "category")}
        if i:
            layout[f"yaxis{axis}"] = {"anchor": f"x{axis}", "matches": "y",
                                      "showticklabels": False}
        text = [r["trial"] + "<br>" + "<br>".join(f"{k} = {_show(r.get(k))}" for k in keys)
                for r in done]
        colours = ["#d62728" if best is not None and r["trial"] == best["trial"] else "#1f77b4"
                   for r in done]
        data.append({"type": "scatter", "mode": "markers", "x": xs,
                     "y": [r[metric] for r in done], "text": text,
                     "hovertemplate": "%{text}<br>" + metric + " = %{y:.4f}<extra></extra>",
                     "marker": {"size": 9, "color": colours},
                     "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
    return _Figure(data, layout)


def _curves(out: Path, rows: list[dict[str, Any]]) -> list[tuple[str, list[float],
                                                                   list[float]]]:
    """(trial, steps, -ELBO) from each trial's ``metrics.csv`` (a group's: its first
    seed's); a trial without one is left out."""
    found = []
    for r in rows:
        path = out / str(r.get("path") or r["trial"]) / "metrics.csv"
        if not path.is_file():
            seeds = sorted((out / r["trial"]).glob("*/metrics.csv"))
            if not seeds:
                continue
            path = seeds[0]
        steps, values = [], []
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                for line in csv.DictReader(fh):
                    try:
                        step, value = float(line["step"]), float(line["neg_elbo"])
                    except (KeyError, TypeError, ValueError):
                        continue
                    if math.isfinite(value):
                        steps.append(step)
                        values.append(value)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        if steps:
            found.append((r["trial"], steps, values))
    return found


def _curves_figure(curves: list[tuple[str, list[float], list[float]]]) -> _Figure:
    data = [{"type": "scatter", "mode": "lines", "name": name, "x": steps, "y": values,
             "line": {"color": COLOURS[i % len(COLOURS)]}}
            for i, (name, steps, values) in enumerate(curves)]
    lows = sorted(v for _, _, values in curves for v in values[len(values) // 5:])
    layout: dict[str, Any] = {"height": 420, "margin": {"t": 30},
                              "xaxis": {"title": {"text": "step"}},
                              "yaxis": {"title": {"text": "-ELBO (nats per point)"}}}
    if lows:  # the early, large values would flatten the part where trials differ
        top = lows[min(len(lows) - 1, int(0.98 * len(lows)))]
        span = max(top - lows[0], 1e-6)
        layout["yaxis"]["range"] = [lows[0] - 0.1 * span, top + 0.1 * span]
    return _Figure(data, layout)
