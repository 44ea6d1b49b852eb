"""Figure plumbing shared by every plot: Agg canvases only (no pyplot, no display needed)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaelab.fileio import atomic_write


def new_figure(width: float, height: float, ncols: int = 1,
               layout: str = "constrained") -> tuple[Figure, list]:
    """A figure of ``ncols`` axes in a row. ``layout="compressed"`` for axes of a fixed
    aspect (equal scales): plain constrained layout leaves their outer labels cut off."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Save atomically (a half-written PNG is never left behind)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".")))
    return path
