"""Generated samples of several runs beside the true data, on shared axes.

Two columns: one scatter panel per point set (:func:`draw_comparison`). More: a pair plot per
point set (:func:`draw_pairs`): every pair of the chosen columns as a scatter below the
diagonal, each column's histogram on it (the true data's as a grey outline on every panel's).
The columns are named by the data's own names (a data file's header); at most
:data:`MAX_PAIR_COLUMNS` are drawn at once (:func:`select_columns`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaelab.errors import ConfigError
from vaelab.plots.style import new_figure

#: the most columns a pair plot draws (their pairs: 15 panels per point set)
MAX_PAIR_COLUMNS = 6


def select_columns(spec: str | None, names: list[str]) -> tuple[list[int], str]:
    """The 0-based columns to draw and a note for the user ("" when all are drawn).

    ``spec``: comma-separated column names or 0-based indices (a name wins over an index),
    2 to :data:`MAX_PAIR_COLUMNS` distinct ones; None: every column, or the first
    :data:`MAX_PAIR_COLUMNS` of more. A bad ``spec`` raises :class:`ConfigError` naming it.
    """
    dim = len(names)
    if dim < 2:
        raise ConfigError(f"compare draws data of 2 or more columns; this run's data has {dim}")
    if spec is None:
        if dim <= MAX_PAIR_COLUMNS:
            return list(range(dim)), ""
        return list(range(MAX_PAIR_COLUMNS)), (
            f"showing the first {MAX_PAIR_COLUMNS} of {dim} columns "
            f"({', '.join(names[:MAX_PAIR_COLUMNS])}); --columns NAME,NAME,... picks others")
    items = [item.strip() for item in spec.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"--columns {spec!r}: an empty column name (give NAME,NAME or "
                          "0-based indices, e.g. 0,3)")
    chosen: list[int] = []
    for item in items:
        if item in names:
            if names.count(item) > 1:
                raise ConfigError(f"--columns: the data has {names.count(item)} columns named "
                                  f"{item!r}; give its 0-based index instead")
            index = names.index(item)
        elif item.lstrip("-").isdigit():
            index = int(item)
            if not 0 <= index < dim:
                raise ConfigError(f"--columns: index {index} is out of range (0-based, the "
                                  f"data has {dim} columns: {', '.join(names)})")
        else:
            raise ConfigError(f"--columns: no column named {item!r} (columns: "
                              f"{', '.join(names)})")
        if index in chosen:
            raise ConfigError(f"--columns: column {names[index]!r} is given twice")
        chosen.append(index)
    if not 2 <= len(chosen) <= MAX_PAIR_COLUMNS:
        raise ConfigError(f"--columns: give 2 to {MAX_PAIR_COLUMNS} columns, not "
                          f"{len(chosen)}")
    return chosen, ""


def _limits(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the true data's 0.1% and 99.9% quantiles, padded by 8%."""
    lo, hi = np.quantile(real, 0.001, axis=0), np.quantile(real, 0.999, axis=0)
    pad = 0.08 * np.where(hi > lo, hi - lo, 1.0)
    return lo - pad, hi + pad


def _share_inside(real: np.ndarray, samples: list[tuple[str, np.ndarray]], lo: np.ndarray,
                  hi: np.ndarray) -> float:
    every = np.concatenate([real, *(s for _, s in samples)])
    return float(np.all((every >= lo) & (every <= hi), axis=1).mean())


def draw_comparison(real: np.ndarray, samples: list[tuple[str, np.ndarray]],
                    title: str = "", columns: tuple[str, str] = ("x0", "x1")) -> Figure:
    """One panel for the real points, then one per ``(label, points)``; same limits for all,
    so that smearing between a distribution's modes is visible at a glance. The points have
    two columns, named ``columns`` on the axes."""
    panels = [("true data", real), *samples]
    lo, hi = _limits(real)
    shown = _share_inside(real, samples, lo, hi)
    # equal scales show a shape undistorted; columns of very different spreads (a user's
    # file: a price and a ratio) get square panels instead, or one would be a sliver
    span = hi - lo
    equal = bool(max(span) <= 3 * min(span))
    dot = float(np.clip(7500 / len(real), 1.5, 8.0))
    fig, axes = new_figure(4.2 * len(panels), 4.4, ncols=len(panels),
                              layout="compressed")
    for ax, (name, pts) in zip(axes, panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=dot, alpha=0.35, color="tab:blue", linewidths=0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal" if equal else "auto", adjustable="box")
        if not equal:
            ax.set_box_aspect(1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(columns[0])
        ax.set_ylabel(columns[1])
    fig.suptitle((title + "  " if title else "") + f"({len(real)} points each; "
                 f"{100 * shown:.1f}% of all points inside the axes)", fontsize=10)
    return fig


def draw_pairs(real: np.ndarray, samples: list[tuple[str, np.ndarray]], columns: list[str],
               title: str = "", note: str = "") -> Figure:
    """A pair plot of ``real`` and of each ``(label, points)``, side by side, on the same
    per-column limits: below the diagonal column j against column i (i < j), on it column i's
    histogram (density; the true data's as a grey outline on each). ``columns`` names the
    ``C >= 3`` columns the arrays hold; ``note`` goes under the title (e.g. which columns of
    how many are shown)."""
    panels = [("true data", real), *samples]
    c = real.shape[1]
    if len(columns) != c:
        raise ValueError(f"{len(columns)} column names for {c} columns")
    lo, hi = _limits(real)
    shown = _share_inside(real, samples, lo, hi)
    cell = 1.55
    fig = Figure(figsize=(cell * c * len(panels) + 0.4 * len(panels), cell * c + 1.0),
                 layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels), wspace=0.02))
    n_bins = int(np.clip(np.sqrt(len(real)), 10, 40))
    bins = [np.linspace(lo[i], hi[i], n_bins + 1) for i in range(c)]
    # few points: larger, less transparent dots, so that a held-out set of 100 is visible
    dot, alpha = float(np.clip(4000 / len(real), 0.8, 6.0)), 0.3 if len(real) > 2000 else 0.6
    for sub, (name, pts) in zip(subfigs, panels, strict=True):
        sub.suptitle(name, fontsize=10)
        grid = sub.add_gridspec(c, c)
        for row in range(c):
            for col in range(row + 1):
                ax = sub.add_subplot(grid[row, col])
                if row == col:
                    ax.hist(pts[:, col], bins=bins[col], density=True, color="tab:blue",
                            alpha=0.6)
                    if pts is not real:
                        ax.hist(real[:, col], bins=bins[col], density=True, histtype="step",
                                color="0.35", linewidth=0.8)
                    ax.set_yticks([])
                else:
                    ax.scatter(pts[:, col], pts[:, row], s=dot, alpha=alpha, color="tab:blue",
                               linewidths=0)
                    ax.set_ylim(lo[row], hi[row])
                ax.set_xlim(lo[col], hi[col])
                ax.tick_params(labelsize=6, length=2)
                if row == c - 1:
                    ax.set_xlabel(columns[col], fontsize=8)
                else:
                    ax.tick_params(labelbottom=False)
                if col == 0 and row > 0:
                    ax.set_ylabel(columns[row], fontsize=8)
                elif row != col:
                    ax.tick_params(labelleft=False)
    head = (title + "  " if title else "") + (f"({len(real)} points each; "
                                             f"{100 * shown:.1f}% of all points inside the "
                                             "axes; diagonal: histograms, grey: true data)")
    fig.suptitle(head + (f"\n{note}" if note else ""), fontsize=10)
    return fig
