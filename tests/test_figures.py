"""Every PNG vaelab writes says what it shows: labelled axes, titles true to the run's
objective and prior, no text overlapping other text or cut off at the figure's edge. The
figures are saved under the tests' artifacts folder for a person to look at."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

import vaelab
from vaelab.evaluation import convergence, density_grid
from vaelab.plots.compare import draw_comparison
from vaelab.plots.convergence import draw_convergence
from vaelab.plots.curves import draw_loss_curves
from vaelab.plots.density import draw_density
from vaelab.plots.panels import draw_panels, run_limits
from vaelab.plots.render import render_run

SMALL = {"steps": 80, "batch_size": 64, "log_every": 20, "frame_every": 40,
         "display_points": 100, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def runs():
    """In-memory runs of the seed preset, the default preset (IWAE, mixture prior) and a
    3-D data set with a 3-D latent, each a few dozen steps."""
    return {"seed": vaelab.train(preset="seed", **SMALL),
            "default": vaelab.train(preset="default", **SMALL),
            "3d": vaelab.train(data="swiss_roll_3d", latent_dim=3, **SMALL)}


def _texts(fig):  # noqa: ANN001, ANN202
    """(kind, text artist) for each drawn text: suptitle, titles, axis labels, tick labels."""
    out = [("suptitle", t) for t in fig.texts if t.get_text()]
    for ax in fig.axes:
        out += [("title", t) for t in (ax.title, ax._left_title, ax._right_title)
                if t.get_text()]
        out += [("label", t) for t in (ax.xaxis.label, ax.yaxis.label) if t.get_text()]
        out += [("text", t) for t in ax.texts if t.get_text()]
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())),
                               (ax.yaxis, sorted(ax.get_ylim()))):
            for tick in axis.get_major_ticks():
                inside = lo - 1e-9 * (hi - lo) <= tick.get_loc() <= hi + 1e-9 * (hi - lo)
                if inside and tick.label1.get_visible() and tick.label1.get_text():
                    out.append(("tick", tick.label1))
    return out


def check_figure(fig, name, artifacts) -> None:  # noqa: ANN001
    """Labelled axes, no overlapping or cut-off text; saves the PNG for review."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.yaxis.label.get_text() or ax.xaxis.label.get_text(), f"{name}: colorbar"
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: an axis without a label"
        assert ax.get_title(), f"{name}: an axes without a title"
    page = fig.bbox
    boxes = [(kind, t.get_text(), t.get_window_extent(renderer)) for kind, t in _texts(fig)]
    for kind, text, box in boxes:
        assert (box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1 and box.x1 <= page.x1 + 1
                and box.y1 <= page.y1 + 1), f"{name}: {kind} {text!r} is cut off"
    for (k1, t1, b1), (k2, t2, b2) in itertools.combinations(boxes, 2):
        if k1 == k2 == "tick":
            continue  # neighbouring tick labels of one axis are matplotlib's to space
        assert not b1.overlaps(b2), f"{name}: {k1} {t1!r} overlaps {k2} {t2!r}"
    fig.savefig(artifacts / f"{name}.png", dpi=100)


@pytest.mark.parametrize("preset", ["seed", "default", "3d"])
def test_panels_and_curves_say_what_they_show(runs, preset, artifacts):
    run = runs[preset]
    frame = run.frames[-1]
    # the default's components by the data's columns: 128 on 2-D data, 16 on 3-D
    prior = {"seed": "N(0, I)", "default": "learned mixture of 128 Gaussians",
             "3d": "learned mixture of 16 Gaussians"}[preset]
    panels = draw_panels(frame, run_limits(run.frames), "vaelab test | ", prior)
    titles = [ax.get_title() for ax in panels.axes]
    assert f"z ~ {prior}" in titles[2]
    if preset == "3d":
        assert "columns x0, x1 of 3" in titles[0] and "columns z0, z1 of 3" in titles[1]
    check_figure(panels, f"panels_{preset}", artifacts)

    curves = draw_loss_curves(run.metrics, f"vaelab {preset}", run.config)
    text = " ".join(t.get_text() for ax in curves.axes for t in [ax.title, *ax.texts]
                    + (ax.get_legend().get_texts() if ax.get_legend() else []))
    if preset != "seed":  # the default preset's objective and prior (3d: the default too)
        assert "IWAE bound (k = 4)" in text and "MSE" not in text
        assert prior in text
    else:
        assert "seed loss MSE + 1 x KLD" in text and "N(0, I)" in text
    assert all("nats" in ax.get_ylabel() for ax in curves.axes)
    check_figure(curves, f"loss_{preset}", artifacts)


def test_render_run_writes_true_titles(runs, tmp_path, artifacts):
    written = render_run(runs["default"], tmp_path)
    assert {p.name for p in written} == {"panels_final.png", "training.gif", "loss.png"}
    for path in written:
        shutil.copy(path, artifacts / f"render_default_{path.name}")


def test_density_and_convergence_figures(runs, artifacts):
    run = runs["default"]
    grid = density_grid(run, size=40, k=16)
    fig = draw_density(grid["gx"], grid["gy"], grid["model_logp"], grid["true_logp"],
                       "vaelab default: log-density", k=grid["k"])
    assert "K = 16" in fig.axes[1].get_title()
    check_figure(fig, "density_default", artifacts)

    result = convergence(run, n_points=20, ks=(1, 10, 100), repeats=2)
    result["rows"].append({**result["rows"][-1], "estimator": "prior-mc", "k": 1,
                           "mean": result["true_mean"] - 100.0})  # far off, as at K = 1
    fig = draw_convergence(result)
    lo, hi = fig.axes[0].get_ylim()
    assert lo > result["true_mean"] - 100.0  # the far estimate does not set the scale ...
    assert "off scale" in fig.axes[0].get_title()  # ... and is named
    check_figure(fig, "convergence_default", artifacts)


def test_comparison_figure(runs, artifacts):
    real = runs["seed"].frames[-1].data.numpy()
    fig = draw_comparison(real, [(name, runs[name].frames[-1].generated.numpy()[:len(real)])
                                 for name in ("seed", "default")], title="swiss_roll")
    check_figure(fig, "compare", artifacts)


def test_the_overlap_check_finds_overlapping_text(artifacts):
    from vaelab.plots.style import new_figure

    fig, (ax,) = new_figure(4, 3)
    ax.plot(np.arange(3))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("a title right where the other text is")
    ax.text(0.5, 1.03, "on the title", transform=ax.transAxes, ha="center")
    with pytest.raises(AssertionError, match="overlaps"):
        check_figure(fig, "should_not_exist", artifacts)
