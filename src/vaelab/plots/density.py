"""The model's log-density on a grid, beside the true one (2-D data)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from vaelab.plots.style import new_figure


def draw_density(gx: np.ndarray, gy: np.ndarray, model_logp: np.ndarray,
                 true_logp: np.ndarray | None, title: str = "", span: float = 12.0,
                 k: int | None = None) -> Figure:
    """Side-by-side log p(x) maps on one colour scale (the top ``span`` nats; lower values
    are drawn at its bottom colour). ``k``: the IWAE samples per point of the model's map."""
    est = f"IWAE, K = {k}" if k is not None else "IWAE"
    panels = [(f"model log p(x) ({est})", model_logp)]
    if true_logp is not None:
        panels.insert(0, ("true log p(x)", true_logp))
    top = max(float(np.nanmax(p[np.isfinite(p)])) for _, p in panels)
    fig, axes = new_figure(5.2 * len(panels) + 0.8, 4.6, ncols=len(panels),
                              layout="compressed")
    mesh = None
    for ax, (name, values) in zip(axes, panels, strict=True):
        shown = np.where(np.isfinite(values), values, top - span)
        mesh = ax.pcolormesh(gx, gy, np.clip(shown, top - span, top), shading="auto",
                             cmap="viridis", vmin=top - span, vmax=top)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
        ax.set_aspect("equal", adjustable="box")
    fig.colorbar(mesh, ax=axes, label=f"log p(x), nats (top {span:g} shown)", shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
