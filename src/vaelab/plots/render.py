"""Every figure of a run: final panels, the training GIF, the loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from vaelab.fileio import atomic_write
from vaelab.plots.curves import draw_loss_curves
from vaelab.plots.panels import PanelFigure, run_limits
from vaelab.plots.style import save_figure

if TYPE_CHECKING:
    from vaelab.runs import Run

PANELS_FILE = "panels_final.png"
GIF_FILE = "training.gif"
LOSS_FILE = "loss.png"


def render_run(run: Run, out_dir: Path, gif_dpi: int = 80, frame_ms: int = 250) -> list[Path]:
    """Write the figures of ``run`` into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"vaelab {run.config.preset or 'custom'} | "
    written: list[Path] = []
    if run.frames:
        limits = run_limits(run.frames)
        last = run.frames[-1]
        panels = PanelFigure(limits, title, len(last.data), len(last.generated))
        written.append(save_figure(panels.show(last), out_dir / PANELS_FILE))
        images = [Image.fromarray(rgb) for rgb in panels.render_frames(run.frames, gif_dpi)]
        written.append(_write_gif(images, out_dir / GIF_FILE, frame_ms))
    if run.metrics:
        written.append(save_figure(draw_loss_curves(run.metrics, title.rstrip(" |")),
                                   out_dir / LOSS_FILE))
    return written


def _write_gif(images: list[Image.Image], path: Path, frame_ms: int) -> Path:
    frames = [im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for im in images]
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 8]  # linger on the result

    def write(tmp: Path) -> None:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=0)

    atomic_write(path, write)
    return path


DENSITY_FILE = "density.png"


def render_density(run: Run, out_dir: Path | None = None, size: int = 120, k: int = 256) -> Path:
    """The model's log p(x) on a grid beside the true one (2-D data only)."""
    import torch

    from vaelab.data import build_source
    from vaelab.estimators import grid_log_density
    from vaelab.plots.density import draw_density

    source = build_source(run.config.data)
    if run.frames:
        limits = run_limits(run.frames).data
    else:
        ref = source.sample(5000, torch.Generator().manual_seed(0)).numpy()
        lo, hi = ref.min(0), ref.max(0)
        pad = 0.1 * (hi - lo)
        limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    gx, gy, model_logp = grid_log_density(run.model, limits, size=size, k=k)
    true_logp = None
    if source.has_density:
        pts = torch.as_tensor(np.column_stack((gx.ravel(), gy.ravel())))
        true_logp = source.log_prob(pts).numpy().reshape(gx.shape)
    out_dir = out_dir or (run.path / "figures")
    name = run.config.preset or "custom"
    fig = draw_density(gx, gy, model_logp, true_logp, f"vaelab {name}: log-density")
    return save_figure(fig, out_dir / DENSITY_FILE)
