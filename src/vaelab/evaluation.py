"""Measuring a trained model against the truth: test log-likelihood, the gap to the true
entropy, sample metrics with their floors, and how the estimators converge.

All log-densities are nats per data point in the data's own units. The test set is never the
training data: for a built-in source it is a fresh draw from a random stream of its own
(``Seeds.evaluation``), for a data file it is the held-out ``data.test_fraction`` of the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vaelab.data import build_source
from vaelab.data.base import DataSource
from vaelab.data.files import FileSource, as_float32, read_points, split_points
from vaelab.devices import derive_seeds, make_generator
from vaelab.errors import VaelabError
from vaelab.estimators import log_density

if TYPE_CHECKING:
    from vaelab.models import BaseVAE
    from vaelab.runs import Run


@dataclass
class TestData:
    """Points to evaluate on, and where they came from."""

    points: torch.Tensor  # [N, D] float32, CPU
    reference: torch.Tensor | None  # an independent real sample of the same size (floors)
    source: DataSource | None  # the true distribution, when the run's data is built in
    origin: str  # a sentence for reports
    train: torch.Tensor | None = None  # a file run's training rows (the baselines' fit)


def run_source(run: Run, data_path: str | Path | None = None) -> DataSource:
    """The data ``run`` was trained on: its built-in source, or its data file (at
    ``data_path`` if the file has moved), checked against the fingerprint the run keeps
    (:func:`vaelab.data.provenance.check_data`): other data is one clear error, never used
    silently."""
    from vaelab.data.files import load_source
    from vaelab.data.provenance import check_data
    from vaelab.data.registry import is_file_name
    from vaelab.errors import DataFileError

    name = run.config.data.name
    if data_path is not None:
        if not is_file_name(name):
            raise VaelabError(f"--data points a data file's run to its moved file; this run "
                              f"was trained on the built-in source {name!r}")
        source: DataSource = load_source(data_path)
        hint = "point --data to the file the run was trained on"
    else:
        try:
            source = build_source(run.config.data)
        except DataFileError as exc:
            if Path(name).exists():  # there but refused (its contents): no move to follow
                raise
            raise DataFileError(f"{exc}; if the run's data file moved, point to it with "
                                f"--data NEW_PATH") from None
        hint = "the file changed since; restore it, or point --data to the original"
    if run.path is not None:
        check_data(run.path, source, hint)
    return source


def test_data(run: Run, n: int = 10_000, seed: int = 0,
              input_path: str | Path | None = None,
              data_path: str | Path | None = None) -> TestData:
    """The test set for ``run``: ``input_path`` if given, else fresh data or the held-out
    split of its data file (``data_path``: where that file is now, if it moved). A data
    file that is gone is replaced by the held-out rows the run keeps, where it keeps them
    (:func:`vaelab.data.provenance.kept_heldout`); without the training rows there are no
    baselines."""
    from vaelab.data.provenance import kept_heldout
    from vaelab.data.registry import is_file_name

    name = run.config.data.name
    gone = (data_path is None and is_file_name(name) and not Path(name).exists()
            and run.path is not None)
    kept = kept_heldout(run.path) if gone else None
    if kept is not None and input_path is None:
        pts = torch.as_tensor(kept, dtype=torch.float32)
        return TestData(pts, None, None, f"the {len(pts)} held-out rows this run keeps (its "
                        f"data file {name} is gone; --data NEW_PATH also scores the "
                        "baselines and the sample metrics)")
    source = run_source(run, data_path)
    true = source if source.has_density else None
    train_t = None
    if isinstance(source, FileSource):
        train, test = split_points(source.points, run.config.data.test_fraction,
                                   seed=run.config.train.seed)
        test_t = torch.as_tensor(test, dtype=torch.float32)
        train_t = torch.as_tensor(train, dtype=torch.float32)
    if input_path is not None:
        pts = torch.from_numpy(as_float32(input_path, read_points(input_path)))
        _check_dim(run, pts)
        return TestData(pts, None, true, f"{len(pts)} points from {input_path}", train_t)
    if train_t is not None:
        m = min(len(test_t), len(train_t))
        return TestData(test_t[:m], train_t[:m], None,
                        f"the {len(test_t)} held-out points of {source.name}"
                        + (f" (first {m} used)" if m < len(test_t) else ""), train_t)
    g = make_generator(derive_seeds(seed).evaluation)
    pts = source.sample(n, g).cpu()
    ref = source.sample(n, g).cpu()
    return TestData(pts, ref, true, f"{n} fresh points from {source.name} "
                    f"(evaluation seed {seed}, never seen in training)")


def _check_dim(run: Run, pts: torch.Tensor) -> None:
    if pts.shape[1] != run.model.in_channels:
        raise VaelabError(f"the input has {pts.shape[1]} columns but the model was trained on "
                          f"{run.model.in_channels}-dimensional data")


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    se = v.std().item() / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return v.mean().item(), se


#: training rows the baselines are fitted on, at most (a seeded subset above it): the
#: GaussianMixture's BIC search and the KernelDensity's cross-validation grow with the rows
BASELINE_ROWS = 20_000
#: the GaussianMixture's largest component count (its BIC search stops earlier by itself)
BASELINE_MAX_COMPONENTS = 100
#: the baselines' keys in a report, and their names in words
BASELINE_NAMES = {"gaussian_mixture": "GaussianMixture", "kernel_density": "KernelDensity"}


def baseline_report(train: torch.Tensor, x: torch.Tensor, logq: torch.Tensor,
                    seed: int = 0) -> dict[str, Any]:
    """A GaussianMixture (full covariances, components by BIC) and a KernelDensity (bandwidth
    by 5-fold CV) fitted on ``train`` (a seeded subset of :data:`BASELINE_ROWS` at most) and
    scored on ``x`` as the model is (``logq``: the model's log q(x) per point), in nats per
    row of the data's own units. Per baseline: its ``nll``, and ``model_minus_baseline``, the
    paired mean of NLL_model - NLL_baseline over the same rows (> 0: the baseline fits them
    better), with standard errors; ``best`` names the lowest NLL; ``verdict`` says it."""
    import numpy as np

    from vaelab.baselines import fit_gmm, fit_kde

    rows = train.double().numpy()
    if len(rows) > BASELINE_ROWS:
        rows = rows[np.random.default_rng(seed).choice(len(rows), BASELINE_ROWS, replace=False)]
    x64 = x.double().numpy()
    model_nll = -logq.double()
    out: dict[str, Any] = {"fitted_on": f"{len(rows)} training rows of the run", "units":
                           "nats per row"}
    for key, fitted in (("gaussian_mixture", fit_gmm(rows, BASELINE_MAX_COMPONENTS, seed)),
                        ("kernel_density", fit_kde(rows, seed=seed))):
        nll_b = -torch.from_numpy(fitted.log_prob(x64))
        nll, nll_se = _mean_se(nll_b)
        diff, diff_se = _mean_se(model_nll - nll_b)
        out[key] = {"nll": nll, "nll_stderr": nll_se, "model_minus_baseline": diff,
                    "model_minus_baseline_stderr": diff_se, "params": fitted.params,
                    "fit_seconds": round(fitted.fit_seconds, 3)}
    best_key = min(BASELINE_NAMES, key=lambda b: out[b]["nll"])
    best = out[best_key]
    margin, se = best["model_minus_baseline"], best["model_minus_baseline_stderr"]
    name = BASELINE_NAMES[best_key]
    if margin > 2 * se:
        out["best"] = best_key
        out["verdict"] = (f"the {name} fits these rows better than the model, by "
                          f"{margin:.4f} ± {se:.4f} nats per row: the model has not learned "
                          f"all these rows support (train longer, or larger)")
    elif margin < -2 * se:
        out["best"] = "model"
        out["verdict"] = (f"the model fits these rows best, {-margin:.4f} ± {se:.4f} nats per "
                          f"row better than the better baseline ({name})")
    else:
        out["best"] = "tie"
        out["verdict"] = (f"the model and the {name} fit these rows equally well, within "
                          f"twice the standard error ({margin:+.4f} ± {se:.4f} nats per row)")
    return out


def trained_rows(run: Run, train: torch.Tensor) -> torch.Tensor:
    """The rows of a file's training split that ``run`` trained on: all but those it set
    aside to choose its weights by (``train.validation``), which it never fitted."""
    from vaelab.training.validation import split_validation

    fraction = run.config.train.validation or 0.0
    return split_validation(train, fraction, derive_seeds(run.config.train.seed).validation)[0]


def training_rows_report(model: BaseVAE, train: torch.Tensor, held_nll: torch.Tensor, k: int,
                         seed: int = 0) -> dict[str, Any]:
    """The model's NLL (IWAE, ``k`` samples) on as many of its ``train`` rows as it was scored
    on held-out rows (``held_nll``, nats per row; a seeded subset), and the held-out NLL minus
    it, with standard errors (unpaired: different rows). Near 0 the model fits fresh rows as
    well as the rows it saw; clearly above 0 it has partly memorised its training rows, and
    only the held-out figure measures it (``verdict`` says which)."""
    n = min(len(held_nll), len(train))
    g = torch.Generator().manual_seed(seed)
    rows = train[torch.randperm(len(train), generator=g)[:n]]
    seen_nll = -log_density(model, rows, "iwae", k=k, seed=seed)
    nll, nll_se = _mean_se(seen_nll)
    held, held_se = _mean_se(held_nll)
    diff, diff_se = held - nll, math.hypot(held_se, nll_se)
    if diff > 2 * diff_se:
        verdict = (f"the model fits its training rows better than held-out ones, by {diff:.4f} "
                   f"± {diff_se:.4f} nats per row: it has partly memorised them, so the "
                   "held-out NLL is the one to trust, and more rows would lower it")
    else:
        verdict = ("the model fits held-out rows as well as its training rows (within twice "
                   "the standard error): no sign of memorising them")
    return {"n": n, "of": len(train), "nll": nll, "nll_stderr": nll_se,
            "held_out_minus_training": diff, "held_out_minus_training_stderr": diff_se,
            "verdict": verdict}


def format_params(params: dict[str, Any]) -> str:
    """A baseline's chosen hyper-parameters in words: ``components 12``, ``bandwidth 0.21``."""
    return ", ".join(f"{p} {v:.3g}" if isinstance(v, float) else f"{p} {v}"
                     for p, v in params.items())


def evaluate(run: Run, n: int = 10_000, k: int = 1000, seed: int = 0,
             input_path: str | Path | None = None, metrics: bool = True,
             baselines: bool | None = None,
             data_path: str | Path | None = None) -> dict[str, Any]:
    """Test NLL (IWAE, K = ``k``), ELBO, true entropy, the gap, and sample metrics; for a
    data file's run (``baselines``: None means there, True or False to choose), the same NLL
    of a GaussianMixture and a KernelDensity fitted on the run's training rows
    (:func:`baseline_report`), the reference a file has in place of a true entropy.
    ``data_path``: where the run's data file is now, if it moved (checked by its fingerprint).

    ``nll_gap`` is the paired estimate mean_i [log p(x_i) - log q_hat(x_i)] of NLL - H =
    KL(p || model) (same points, so far less noisy than subtracting two separate means);
    ``nll_minus_entropy`` is the literal difference of the two reported numbers.
    """
    data = test_data(run, n, seed, input_path, data_path)
    x = data.points
    if metrics and data.reference is not None:
        from vaelab.metrics.sample_metrics import min_sample_points

        needed = min_sample_points()
        if len(x) < needed:  # refused before the long part, naming what sets the count
            what = (f"--n {n}: too few test points" if data.train is None else
                    f"the run's held-out set has only {len(x)} points, too few")
            raise VaelabError(f"{what} for the sample metrics, which need at least {needed}: "
                              + (f"give --n {needed} or more, or " if data.train is None
                                 else "") + "pass --no-metrics")
    logq = log_density(run.model, x, "iwae", k=k, seed=seed)
    elbo = log_density(run.model, x, "elbo", k=1, seed=seed)
    nll, nll_se = _mean_se(-logq)
    elbo_mean, elbo_se = _mean_se(elbo)
    report: dict[str, Any] = {
        "data": run.config.data.name, "test_set": data.origin, "n": len(x), "k": k,
        "estimator": "iwae", "units": "nats per data point",
        "nll": nll, "nll_stderr": nll_se, "elbo": elbo_mean, "elbo_stderr": elbo_se,
        "entropy": None, "entropy_stderr": None, "nll_gap": None, "nll_gap_stderr": None,
        "nll_minus_entropy": None,
    }
    if data.source is not None:
        logp = data.source.log_prob(x)
        gap, gap_se = _mean_se(logp - logq)
        h = data.source.entropy()
        h_se = getattr(data.source, "entropy_stderr", lambda: 0.0)()
        report.update(entropy=h, entropy_stderr=h_se, nll_gap=gap, nll_gap_stderr=gap_se,
                      nll_minus_entropy=nll - h, test_cross_entropy=_mean_se(-logp)[0])
    if baselines is None:
        baselines = data.train is not None
    if baselines:
        if data.train is None:
            raise VaelabError("baselines are fitted on a data file's training rows; this run "
                              "was trained on a built-in source (its true entropy is the "
                              "reference)")
        report["baselines"] = baseline_report(data.train, x, logq, seed)
        report["training_rows"] = training_rows_report(run.model, trained_rows(run, data.train),
                                                       -logq, k, seed)
    if metrics and data.reference is not None:
        from vaelab.metrics import sample_report

        generated = run.sample(len(x), seed=seed + 1)
        report["sample_metrics"] = sample_report(generated.numpy(), x.numpy(),
                                                 data.reference.numpy(), seed=seed)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as a few readable lines."""
    def f(key: str) -> str:
        value, se = report.get(key), report.get(f"{key}_stderr")
        if value is None:
            return "n/a"
        return f"{value:.4f} ± {se:.4f}" if se is not None and math.isfinite(se) else \
            f"{value:.4f}"

    lines = [f"test set: {report['test_set']}",
             f"test NLL (IWAE, K={report['k']}): {f('nll')} nats/point",
             f"ELBO:                    {f('elbo')} nats/point",
             f"true entropy H:          {f('entropy')} nats/point",
             f"gap NLL - H (paired):    {f('nll_gap')} nats/point"]
    if report.get("entropy") is None:
        lines[-2:] = ["true entropy H, gap:     n/a (these points have no known density"
                      + ("; the baselines below are the reference)" if "baselines" in report
                         else ")")]
    if report.get("nll_gap") is not None:
        lines.append("  (the gap is KL(p || model) >= 0, the nats per point the model loses "
                     "to the true density: 0 is perfect, its stderr is the noise)")
    if "baselines" in report:
        b = report["baselines"]
        lines.append(f"baselines, fitted on {b['fitted_on']} (no true density for a file):")
        for key, name in BASELINE_NAMES.items():
            r = b[key]
            params = format_params(r["params"])
            lines.append(f"  {name + ' NLL:':<22} {r['nll']:.4f} ± {r['nll_stderr']:.4f} "
                         f"nats/row ({params}); model - it: {r['model_minus_baseline']:+.4f} "
                         f"± {r['model_minus_baseline_stderr']:.4f}")
        lines.append(f"  so {b['verdict']}")
    if "training_rows" in report:
        t = report["training_rows"]
        lines.append(f"training rows (NLL on {t['n']} of the {t['of']} the model trained on): "
                     f"{t['nll']:.4f} ± {t['nll_stderr']:.4f} nats/row; held-out minus it: "
                     f"{t['held_out_minus_training']:+.4f} ± "
                     f"{t['held_out_minus_training_stderr']:.4f}")
        lines.append(f"  so {t['verdict']}")
    if "sample_metrics" in report:
        from vaelab.metrics import format_sample_report

        lines += ["", format_sample_report(report["sample_metrics"])]
    return "\n".join(lines)


def density_grid(run: Run, size: int = 120, k: int = 256,
                 data_path: str | Path | None = None) -> dict[str, Any]:
    """The model's log p(x) (IWAE, ``k`` samples per point) on a ``size`` x ``size`` grid of
    the 2-D data plane, beside the true one where it is known: ``gx``, ``gy`` (coordinates),
    ``model_logp``, ``true_logp`` (None without a known density), ``k``. The grid spans the
    display's axes (the run's frames), else a fresh sample's range."""
    import numpy as np

    from vaelab.estimators import grid_log_density
    from vaelab.plots.panels import run_limits

    if run.model.in_channels != 2:
        raise VaelabError("a density map needs 2-D data")
    source = run_source(run, data_path)
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
    return {"gx": gx, "gy": gy, "model_logp": model_logp, "true_logp": true_logp, "k": k}


def convergence(run: Run, n_points: int = 200, ks: tuple[int, ...] = (1, 10, 100, 1000, 10_000),
                repeats: int = 3, seed: int = 0,
                estimators: tuple[str, ...] = ("elbo", "iwae", "prior-mc")) -> dict[str, Any]:
    """How each estimator of log p(x) behaves as K grows, on ``n_points`` test points.

    For each estimator and K: the mean estimate over points, the Monte-Carlo spread (the
    standard deviation across ``repeats`` independent runs, averaged over points) and, when
    the true density is known, the mean absolute error per point against it.
    """
    data = test_data(run, n_points, seed)
    x = data.points[:n_points]
    origin = data.origin
    if len(x) < len(data.points):  # a file's held-out set, of which --points are used
        origin = f"the first {len(x)} of {origin}"
    elif len(x) < n_points:
        origin = f"{origin} (all of them: fewer than the {n_points} points asked for)"
    truth = data.source.log_prob(x) if data.source is not None else None
    rows = []
    for name in estimators:
        for k in ks:
            est = torch.stack([log_density(run.model, x, name, k=k, seed=seed + 1000 * r)
                               for r in range(repeats)])  # [repeats, n]
            row = {"estimator": name, "k": k, "mean": est.mean().item(),
                   "mc_std": est.std(0).mean().item() if repeats > 1 else float("nan")}
            if truth is not None:
                row["mean_abs_error"] = (est - truth).abs().mean().item()
                row["mean_error"] = (est - truth).mean().item()
            rows.append(row)
    return {"n_points": len(x), "repeats": repeats, "test_set": origin,
            "true_mean": truth.mean().item() if truth is not None else None, "rows": rows}


def format_convergence(result: dict[str, Any]) -> str:
    has_truth = result["true_mean"] is not None
    head = f"{'estimator':<10} {'K':>7} {'mean log p':>11} {'MC std':>9}"
    if has_truth:
        head += f" {'mean error':>11} {'mean |error|':>13}"
    lines = [f"{result['test_set']}; {result['repeats']} repeats per K", head]
    for r in result["rows"]:
        line = f"{r['estimator']:<10} {r['k']:>7} {r['mean']:>11.4f} {r['mc_std']:>9.4f}"
        if has_truth:
            line += f" {r['mean_error']:>11.4f} {r['mean_abs_error']:>13.4f}"
        lines.append(line)
    if has_truth:
        lines.append(f"true mean log p(x) over these points: {result['true_mean']:.4f}")
    return "\n".join(lines)
