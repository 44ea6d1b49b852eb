"""The seed's display: ground-truth samples | posterior z | generated samples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure

from vaelab.frames import Frame
from vaelab.plots.style import new_figure


class Limits(NamedTuple):
    """Axis ranges fixed for a whole run, so frames can be compared."""

    data: tuple[float, float, float, float]  # x0 min, x0 max, x1 min, x1 max
    latent: float  # the latent panel spans [-latent, latent] on both axes


def run_limits(frames: list[Frame]) -> Limits:
    """Data limits from the true points of all frames (+10%); latent from the posteriors."""
    data = torch.cat([f.data for f in frames]).numpy()
    lo, hi = np.percentile(data, 0.2, axis=0), np.percentile(data, 99.8, axis=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    z = torch.cat([f.posterior_z for f in frames]).abs().numpy()
    latent = float(np.clip(np.percentile(z, 99.5) * 1.1, 3.5, 10.0))
    if data.shape[1] < 2:  # 1-D data: draw against a zero second coordinate
        return Limits((float(lo[0]), float(hi[0]), -1.0, 1.0), latent)
    return Limits((float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])), latent)


class _Columns(NamedTuple):
    x: str
    y: str
    note: str  # what a title adds when only two of the columns are drawn


def _columns(name: str, dim: int, names: Sequence[str] | None = None) -> _Columns:
    """Axis labels for the first two coordinates (a 1-D set is drawn against zero): ``names``
    (a data file's column names) when given, else ``{name}0``, ``{name}1``."""
    first = list(names) if names is not None and len(names) == dim else [
        f"{name}{i}" for i in range(min(dim, 2))]
    if dim == 1:
        return _Columns(first[0], "(none: 1-D)", "")
    note = f"\n(columns {first[0]}, {first[1]} of {dim})" if dim > 2 else ""
    return _Columns(first[0], first[1], note)


def _xy(points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    arr = points.numpy()
    if arr.shape[1] == 1:
        return arr[:, 0], np.zeros(len(arr))
    return arr[:, 0], arr[:, 1]


class PanelFigure:
    """The seed's display as one reusable figure: :meth:`show` swaps in a frame's points.

    Laying out a figure costs far more than drawing points, so the layout is computed once
    (on the first draw) and frozen; each further frame only moves the scatter points.
    """

    def __init__(self, limits: Limits, title: str = "", n_data: int = 0, n_gen: int = 0, *,
                 data_dim: int = 2, latent_dim: int = 2, prior: str = "N(0, I)",
                 columns: Sequence[str] | None = None) -> None:
        self.title = title
        fig, (ax_data, ax_z, ax_gen) = new_figure(12.0, 4.6, ncols=3, layout="compressed")
        x0, x1, y0, y1 = limits.data
        style = dict(s=4, alpha=0.6, linewidths=0)
        empty = np.empty((0, 2))
        self.data = ax_data.scatter(empty[:, 0], empty[:, 1], color="tab:blue", **style)
        self.z = ax_z.scatter(empty[:, 0], empty[:, 1], color="tab:green", **style)
        self.gen = ax_gen.scatter(empty[:, 0], empty[:, 1], color="tab:red", **style)
        data_cols, z_cols = _columns("x", data_dim, columns), _columns("z", latent_dim)
        ax_data.set_title(f"ground truth (batch of {n_data}){data_cols.note}", fontsize=10)
        ax_z.set_title(f"posterior z ~ q(z|x) of the batch{z_cols.note}", fontsize=10)
        ax_gen.set_title(f"generated ({n_gen}): decoder means\nof z ~ {prior}"
                         f"{data_cols.note}", fontsize=10)
        for ax, cols in ((ax_data, data_cols), (ax_z, z_cols), (ax_gen, data_cols)):
            ax.set_xlabel(cols.x)
            ax.set_ylabel(cols.y)
        for ax in (ax_data, ax_gen):
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
        ax_z.set_xlim(-limits.latent, limits.latent)
        ax_z.set_ylim(-limits.latent, limits.latent)
        for ax in (ax_data, ax_z, ax_gen):
            ax.set_aspect("equal", adjustable="box")
            ax.grid(alpha=0.25)
        self.suptitle = fig.suptitle(f"{title}step 0", fontsize=11)
        self.figure = fig
        self._moving = (self.data, self.z, self.gen, self.suptitle)
        self._frozen = False

    def _set(self, frame: Frame) -> None:
        self.data.set_offsets(np.column_stack(_xy(frame.data)))
        self.z.set_offsets(np.column_stack(_xy(frame.posterior_z)))
        self.gen.set_offsets(np.column_stack(_xy(frame.generated)))
        self.suptitle.set_text(f"{self.title}step {frame.step}")

    def _freeze_layout(self) -> None:
        if not self._frozen:
            self.figure.canvas.draw()  # constrained layout runs here, once
            self.figure.set_layout_engine("none")
            self._frozen = True

    def show(self, frame: Frame) -> Figure:
        """Put ``frame`` on the figure (the first two coordinates of each point set)."""
        self._set(frame)
        self._freeze_layout()
        return self.figure

    def render_frames(self, frames: list[Frame], dpi: int) -> Iterator[np.ndarray]:
        """RGB images of ``frames`` at ``dpi``, by blitting: the axes are drawn once, then
        only the points and the step label are redrawn for each frame."""
        self._freeze_layout()
        fig, canvas = self.figure, self.figure.canvas
        fig.set_dpi(dpi)
        for artist in self._moving:
            artist.set_animated(True)
        try:
            canvas.draw()
            background = canvas.copy_from_bbox(fig.bbox)
            for frame in frames:
                self._set(frame)
                canvas.restore_region(background)
                for artist in self._moving:
                    fig.draw_artist(artist)
                yield np.asarray(canvas.buffer_rgba())[..., :3].copy()
        finally:
            for artist in self._moving:
                artist.set_animated(False)


def draw_panels(frame: Frame, limits: Limits, title: str = "", prior: str = "N(0, I)",
                columns: Sequence[str] | None = None) -> Figure:
    """One frame of the seed's display, as a figure of its own; ``columns``: the data's
    column names (:attr:`vaelab.runs.Run.columns`), for its axes."""
    return PanelFigure(limits, title, len(frame.data), len(frame.generated),
                       data_dim=frame.data.shape[1], latent_dim=frame.posterior_z.shape[1],
                       prior=prior, columns=columns).show(frame)
