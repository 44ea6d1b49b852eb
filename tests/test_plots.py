"""Figures: written, well-formed, one GIF frame per display frame, fixed axes."""

from __future__ import annotations

import torch
from PIL import Image

from vaelab.frames import Frame
from vaelab.plots import draw_panels, render_run, run_limits
from vaelab.runs import load_run


def test_render_run_writes_every_figure(tiny_run_dir, tmp_path):
    run = load_run(tiny_run_dir)
    written = render_run(run, tmp_path)
    assert sorted(p.name for p in written) == ["loss.png", "panels_final.png", "training.gif"]
    with Image.open(tmp_path / "training.gif") as gif:
        assert gif.n_frames == len(run.frames) == 3
    with Image.open(tmp_path / "panels_final.png") as png:
        assert png.size[0] > 2 * png.size[1]  # three panels side by side


def test_axes_are_fixed_across_frames():
    g = torch.Generator().manual_seed(0)
    frames = [Frame(s, torch.randn(50, 2, generator=g) * (1 + s), torch.randn(50, 2, generator=g),
                    torch.randn(20, 2, generator=g)) for s in (1, 2)]
    limits = run_limits(frames)
    lims = []
    for f in frames:
        fig = draw_panels(f, limits)
        lims.append([(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes])
    assert lims[0] == lims[1]
