"""Training curves from the metrics rows, in nats per point, named by the run's objective."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vaelab.config import RunConfig
from vaelab.describe import objective_short, prior_short
from vaelab.plots.style import new_figure


def curve_series(metrics: list[dict[str, float]],
                 config: RunConfig | None = None) -> dict[str, Any]:
    """The curves to draw, in nats per point, with their labels (shared with the report).

    Every objective's ``neg_elbo`` column is the -ELBO in nats and ``kld`` the KL in nats, so
    the reconstruction term in nats is ``neg_elbo - kld`` whatever the loss (for the seed's
    MSE loss the ``reconstruction`` column is an MSE in squared data units, not nats). The
    loss itself is in nats for the IWAE and Gaussian objectives only.
    """
    steps = np.array([m["step"] for m in metrics], dtype=float)
    neg_elbo = np.array([m["neg_elbo"] for m in metrics], dtype=float)
    kld = np.array([m["kld"] for m in metrics], dtype=float)
    loss = np.array([m["loss"] for m in metrics], dtype=float)
    name = config.loss.name if config is not None else "seed_mse"
    prior = f"p(z) = {prior_short(config)}" if config is not None else "p(z)"
    objective = objective_short(config) if config is not None else "training loss"
    top: list[tuple[str, np.ndarray]] = [("-ELBO", neg_elbo)]
    if name == "iwae":
        top.insert(0, (f"{objective}: the loss", loss))
    elif name == "gaussian" and config is not None and config.loss.kld_weight != 1:
        top.insert(0, (f"{objective}: the loss", loss))
    if name == "seed_mse":
        w = config.loss.kld_weight if config is not None else 1.0
        top_title = (f"objective: {objective}, drawn as the -ELBO it equals "
                     f"(loss / {w:g} + const)")
    else:
        top_title = f"objective: {objective}"
    return {
        "steps": steps,
        "objective": top,
        "objective_title": top_title,
        "terms": [("reconstruction -E_q log p(x|z)", neg_elbo - kld),
                  (f"KL(q(z|x) || {prior.removeprefix('p(z) = ')})", kld)],
        "terms_title": "-ELBO = reconstruction + KL",
    }


def _focus(ax: Any, series: list[np.ndarray]) -> None:
    """Clip the y range to the curves after their first tenth: the first rows (random
    weights) are often hundreds of nats above the rest and would flatten every later change."""
    values = np.concatenate([s[len(s) // 10:] for s in series if len(s)])
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return
    lo, hi = float(values.min()), float(values.max())
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)


def draw_loss_curves(metrics: list[dict[str, float]], title: str = "",
                     config: RunConfig | None = None) -> Figure:
    """Left: the objective (and the -ELBO) in nats per point. Right: the -ELBO's two terms,
    reconstruction and KL, in nats per point. Interval means over training batches."""
    s = curve_series(metrics, config)
    fig, (ax_obj, ax_terms) = new_figure(11.0, 4.2, ncols=2)
    for (label, values), color in zip(s["objective"], ("tab:blue", "tab:purple"),
                                      strict=False):
        ax_obj.plot(s["steps"], values, label=label, color=color)
    for (label, values), color in zip(s["terms"], ("tab:green", "tab:orange"), strict=True):
        ax_terms.plot(s["steps"], values, label=label, color=color)
    _focus(ax_obj, [v for _, v in s["objective"]])
    _focus(ax_terms, [v for _, v in s["terms"]])
    ax_obj.set_title(s["objective_title"], fontsize=10)
    ax_terms.set_title(s["terms_title"], fontsize=10)
    for ax in (ax_obj, ax_terms):
        ax.set_xlabel("training step")
        ax.set_ylabel("nats per point (train batches)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
