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
from vaelab.data.files import FileSource, read_points, split_points
from vaelab.devices import derive_seeds, make_generator
from vaelab.errors import VaelabError
from vaelab.estimators import log_density

if TYPE_CHECKING:
    from vaelab.runs import Run


@dataclass
class TestData:
    """Points to evaluate on, and where they came from."""

    points: torch.Tensor  # [N, D] float32, CPU
    reference: torch.Tensor | None  # an independent real sample of the same size (floors)
    source: DataSource | None  # the true distribution, when the run's data is built in
    origin: str  # a sentence for reports


def test_data(run: Run, n: int = 10_000, seed: int = 0,
              input_path: str | Path | None = None) -> TestData:
    """The test set for ``run``: ``input_path`` if given, else fresh data or the held-out split."""
    source = build_source(run.config.data)
    true = source if source.has_density else None
    if input_path is not None:
        pts = torch.as_tensor(read_points(input_path), dtype=torch.float32)
        _check_dim(run, pts)
        return TestData(pts, None, true, f"{len(pts)} points from {input_path}")
    if isinstance(source, FileSource):
        train, test = split_points(source.points, run.config.data.test_fraction,
                                   seed=run.config.train.seed)
        test_t = torch.as_tensor(test, dtype=torch.float32)
        train_t = torch.as_tensor(train, dtype=torch.float32)
        m = min(len(test_t), len(train_t))
        return TestData(test_t[:m], train_t[:m], None,
                        f"the {len(test_t)} held-out points of {source.name}"
                        + (f" (first {m} used)" if m < len(test_t) else ""))
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


def evaluate(run: Run, n: int = 10_000, k: int = 1000, seed: int = 0,
             input_path: str | Path | None = None, metrics: bool = True) -> dict[str, Any]:
    """Test NLL (IWAE, K = ``k``), ELBO, true entropy, the gap, and sample metrics.

    ``nll_gap`` is the paired estimate mean_i [log p(x_i) - log q_hat(x_i)] of NLL - H =
    KL(p || model) (same points, so far less noisy than subtracting two separate means);
    ``nll_minus_entropy`` is the literal difference of the two reported numbers.
    """
    data = test_data(run, n, seed, input_path)
    x = data.points
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
    if report.get("nll_gap") is not None:
        lines.append("  (the gap is KL(p || model) >= 0, the nats per point the model loses "
                     "to the true density: 0 is perfect, its stderr is the noise)")
    if "sample_metrics" in report:
        from vaelab.metrics import format_sample_report

        lines += ["", format_sample_report(report["sample_metrics"])]
    return "\n".join(lines)


def density_grid(run: Run, size: int = 120, k: int = 256) -> dict[str, Any]:
    """The model's log p(x) (IWAE, ``k`` samples per point) on a ``size`` x ``size`` grid of
    the 2-D data plane, beside the true one where it is known: ``gx``, ``gy`` (coordinates),
    ``model_logp``, ``true_logp`` (None without a known density), ``k``. The grid spans the
    display's axes (the run's frames), else a fresh sample's range."""
    import numpy as np

    from vaelab.estimators import grid_log_density
    from vaelab.plots.panels import run_limits

    if run.model.in_channels != 2:
        raise VaelabError("a density map needs 2-D data")
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
    return {"n_points": len(x), "repeats": repeats, "test_set": data.origin,
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
