"""Every figure of a run: final panels, the training GIF, the loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from vaelab.describe import objective_short, prior_short, run_title
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
    cfg = run.config
    title = f"vaelab {cfg.preset or 'custom'}: {objective_short(cfg)} | "
    written: list[Path] = []
    if run.frames:
        limits = run_limits(run.frames)
        last = run.frames[-1]
        panels = PanelFigure(limits, title, len(last.data), len(last.generated),
                             data_dim=last.data.shape[1], latent_dim=last.posterior_z.shape[1],
                             prior=prior_short(cfg), columns=run.columns)
        written.append(save_figure(panels.show(last), out_dir / PANELS_FILE))
        images = [Image.fromarray(rgb) for rgb in panels.render_frames(run.frames, gif_dpi)]
        written.append(_write_gif(images, out_dir / GIF_FILE, frame_ms))
    if run.metrics:
        written.append(save_figure(draw_loss_curves(run.metrics, f"vaelab {run_title(cfg)}",
                                                    cfg), out_dir / LOSS_FILE))
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


def render_density(run: Run, out_dir: Path | None = None, size: int = 120, k: int = 256,
                   grid: dict[str, Any] | None = None) -> Path:
    """Draw the model's log p(x) on a grid beside the true one (2-D data only); ``grid``: a
    :func:`vaelab.evaluation.density_grid` already computed (else it is computed here)."""
    from vaelab.evaluation import density_grid
    from vaelab.plots.density import draw_density

    if grid is None:
        grid = density_grid(run, size=size, k=k)
    out_dir = out_dir or (run.path / "figures")
    fig = draw_density(grid["gx"], grid["gy"], grid["model_logp"], grid["true_logp"],
                       f"vaelab {run_title(run.config)}", k=grid["k"])
    return save_figure(fig, out_dir / DENSITY_FILE)
