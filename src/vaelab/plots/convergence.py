"""How the log p(x) estimators converge with the number of samples K."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from vaelab.plots.style import new_figure

COLORS = {"elbo": "tab:orange", "iwae": "tab:blue", "prior-mc": "tab:red"}


def draw_convergence(result: dict[str, Any]) -> Figure:
    """Left: mean estimate vs K (truth dashed). Right: mean |error| (or MC spread) vs K."""
    has_truth = result["true_mean"] is not None
    fig, (ax_mean, ax_err) = new_figure(11.0, 4.2, ncols=2)
    for name in dict.fromkeys(r["estimator"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["estimator"] == name]
        ks = [r["k"] for r in rows]
        ax_mean.errorbar(ks, [r["mean"] for r in rows], yerr=[r["mc_std"] for r in rows],
                         marker="o", capsize=3, label=name, color=COLORS.get(name))
        err_key = "mean_abs_error" if has_truth else "mc_std"
        ax_err.plot(ks, [r[err_key] for r in rows], marker="o", label=name,
                    color=COLORS.get(name))
    if has_truth:
        ax_mean.axhline(result["true_mean"], color="black", linestyle="--", label="true")
    clipped = _focus_on_bounds(ax_mean, result)
    ax_mean.set_xscale("log")
    ax_mean.set_xlabel("K (samples per point)")
    ax_mean.set_ylabel("mean log p(x), nats/point")
    ax_mean.set_title(f"mean estimate over {result['n_points']} points (± MC std)"
                      + ("\n" + clipped if clipped else ""), fontsize=10)
    ax_mean.legend()
    ax_err.set_xscale("log")
    ax_err.set_yscale("log")
    ax_err.set_xlabel("K (samples per point)")
    ax_err.set_ylabel("nats per point")
    ax_err.set_title("mean |estimate - true log p(x)| per point" if has_truth
                     else "Monte-Carlo std per point", fontsize=10)
    ax_err.legend()
    for ax in (ax_mean, ax_err):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"log p(x) estimators against K, {result['repeats']} repeats per K",
                 fontsize=11)
    return fig


def _focus_on_bounds(ax: Any, result: dict[str, Any]) -> str:
    """Fit the y range to the bounds (ELBO, IWAE), the truth and the prior Monte Carlo's
    estimates near them, so that prior MC at small K (often tens of nats below, with a spread
    as large) does not flatten the rest; returns a note naming what is off the scale."""
    rows = result["rows"]
    anchor = [r["mean"] for r in rows if r["estimator"] != "prior-mc"]
    if result["true_mean"] is not None:
        anchor.append(result["true_mean"])
    if not anchor:
        return ""
    lo, hi = min(anchor), max(anchor)
    width = max(hi - lo, 0.05)
    lo, hi = lo - 0.5 * width, hi + 0.5 * width
    off = [r for r in rows if not lo <= r["mean"] <= hi]
    ax.set_ylim(lo, hi)
    if not off:
        return ""
    shown = ", ".join(f"{r['estimator']} K={r['k']}: {r['mean']:.3g}" for r in off[:3])
    return f"off scale: {shown}" + (f" and {len(off) - 3} more" if len(off) > 3 else "")
