"""Generated samples of several runs beside the true data, on shared axes (2-D data)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from vaelab.plots.style import new_figure


def draw_comparison(real: np.ndarray, samples: list[tuple[str, np.ndarray]],
                    title: str = "") -> Figure:
    """One panel for the real points, then one per ``(label, points)``; same limits for all,
    so that smearing between a distribution's modes is visible at a glance."""
    panels = [("true data", real), *samples]
    every = np.concatenate([real, *(s for _, s in samples)])
    lo, hi = np.quantile(real, 0.001, axis=0), np.quantile(real, 0.999, axis=0)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    shown = np.all((every >= lo) & (every <= hi), axis=1).mean()
    fig, axes = new_figure(4.2 * len(panels), 4.4, ncols=len(panels),
                              layout="compressed")
    for ax, (name, pts) in zip(axes, panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.35, color="tab:blue", linewidths=0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
    fig.suptitle((title + "  " if title else "") + f"({len(real)} points each; "
                 f"{100 * shown:.1f}% of all points inside the axes)", fontsize=10)
    return fig
