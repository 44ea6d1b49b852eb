"""Training curves from the metrics rows."""

from __future__ import annotations

from matplotlib.figure import Figure

from vaelab.plots.style import new_figure


def draw_loss_curves(metrics: list[dict[str, float]], title: str = "") -> Figure:
    """Left: loss, reconstruction (MSE) and KLD, log scale. Right: -ELBO in nats per point."""
    fig, (ax_loss, ax_elbo) = new_figure(11.0, 4.0, ncols=2)
    steps = [m["step"] for m in metrics]
    for key, label in (("loss", "loss"), ("reconstruction", "reconstruction (MSE)"),
                       ("kld", "KLD (nats)")):
        ax_loss.plot(steps, [m[key] for m in metrics], label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("seed loss = MSE + kld_weight x KLD (interval means)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3, which="both")
    ax_elbo.plot(steps, [m["neg_elbo"] for m in metrics], color="tab:purple")
    ax_elbo.set_xlabel("step")
    ax_elbo.set_ylabel("nats per point")
    ax_elbo.set_title("-ELBO of the implied Gaussian decoder (train batches)")
    ax_elbo.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
