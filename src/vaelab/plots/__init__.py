"""Figures: the seed's three panels, the training animation, loss curves."""

from vaelab.plots.curves import draw_loss_curves
from vaelab.plots.panels import Limits, PanelFigure, draw_panels, run_limits
from vaelab.plots.render import render_run

__all__ = ["Limits", "PanelFigure", "draw_loss_curves", "draw_panels", "render_run", "run_limits"]
