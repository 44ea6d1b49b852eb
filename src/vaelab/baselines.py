"""Classical density estimators as baselines for the VAEs: a Gaussian mixture and a KDE.

Both are fitted to a sample of training points and scored exactly as vaelab scores a VAE:
:meth:`Baseline.log_prob` is the natural log-density in nats per point, in the data's own units
(no standardisation), with every normalising constant (scikit-learn's ``score_samples``), so
``mean(log p_true - log p_baseline)`` over test points is the same KL(p || model) estimate as
``nll_gap`` of :func:`vaelab.evaluation.evaluate`; :meth:`Baseline.sample` feeds the same
sample metrics.

- :func:`fit_gmm` - ``GaussianMixture`` (full covariances), the number of components chosen by
  BIC;
- :func:`fit_kde` - ``KernelDensity`` (Gaussian kernel), the bandwidth chosen by K-fold
  cross-validated log-likelihood.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity

from vaelab.errors import VaelabError

#: stop the BIC search after this many consecutive component counts without a new best BIC
BIC_PATIENCE = 5
#: the default KDE bandwidth grid, in units of the mean per-dimension standard deviation
KDE_RELATIVE_GRID = np.logspace(-2, 0, 20)


class BaselineInputError(VaelabError, ValueError):
    """Points a baseline cannot use: not a finite 2-D numeric array, or too few rows."""


@dataclass
class Baseline:
    """A fitted classical density estimator, scored like a VAE.

    ``name`` is ``"gmm"`` or ``"kde"``; ``params`` the chosen hyper-parameter
    (``{"components": 12}`` / ``{"bandwidth": 0.21}``); ``selection`` the scores behind the
    choice (BIC per component count / mean CV log-likelihood per bandwidth); ``fit_seconds``
    the wall time of the selection and the final fit.
    """

    name: str
    params: dict[str, Any]
    fit_seconds: float
    estimator: GaussianMixture | KernelDensity
    dim: int
    selection: dict[str, Any] = field(default_factory=dict)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x) per point: ``[N, D]`` -> float64 ``[N]``, nats, all constants included."""
        arr = _check_points(x, "x", min_rows=1)
        if arr.shape[1] != self.dim:
            raise BaselineInputError(f"x has {arr.shape[1]} columns but the {self.name} "
                                     f"baseline was fitted to {self.dim}-dimensional points")
        return np.asarray(self.estimator.score_samples(arr), dtype=np.float64)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` points drawn from the fitted density, ``[n, D]`` float64, fixed by ``seed``."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise BaselineInputError(f"n must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        if isinstance(self.estimator, GaussianMixture):
            return _sample_gmm(self.estimator, int(n), rng)
        return _sample_kde(self.estimator, int(n), rng)


def fit_gmm(points: np.ndarray, max_components: int = 30, seed: int = 0) -> Baseline:
    """A full-covariance Gaussian mixture, its number of components chosen by BIC.

    Counts 1, 2, ... ``max_components`` (at most the number of points) are fitted in turn with
    ``random_state=seed``; to save time the search stops once :data:`BIC_PATIENCE` (5)
    consecutive counts have not improved on the best BIC so far, and the best mixture found
    is kept.
    """
    arr = _check_points(points, "points")
    if isinstance(max_components, bool) or not isinstance(max_components, (int, np.integer)) \
            or max_components < 1:
        raise BaselineInputError(f"max_components must be a positive integer, "
                                 f"got {max_components!r}")
    t0 = time.perf_counter()
    best: GaussianMixture | None = None
    best_bic = np.inf
    bics: dict[int, float] = {}
    since_best = 0
    for k in range(1, min(int(max_components), len(arr)) + 1):
        gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed)
        gmm.fit(arr)
        bic = float(gmm.bic(arr))
        bics[k] = bic
        if bic < best_bic:
            best, best_bic, since_best = gmm, bic, 0
        else:
            since_best += 1
            if since_best >= BIC_PATIENCE:
                break
    assert best is not None
    seconds = time.perf_counter() - t0
    return Baseline("gmm", {"components": int(best.n_components)}, seconds, best,
                    arr.shape[1], {"bic": bics})


def fit_kde(points: np.ndarray, bandwidths: np.ndarray | None = None, seed: int = 0,
            cv: int = 5, max_cv_points: int = 5000) -> Baseline:
    """A Gaussian kernel density estimate, its bandwidth chosen by K-fold CV log-likelihood.

    scikit-learn's ``KernelDensity`` has one isotropic bandwidth for all dimensions (no
    per-dimension scaling or full bandwidth matrix); that is the baseline measured here.
    The default grid is 20 log-spaced values from 0.01 to 1 times the mean per-dimension
    standard deviation of ``points``. For speed the ``cv``-fold search runs on at most
    ``max_cv_points`` points (a subset drawn with ``seed``); the final KDE holds all points.
    """
    arr = _check_points(points, "points")
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise BaselineInputError(f"cv must be an integer >= 2, got {cv!r}")
    if isinstance(max_cv_points, bool) or not isinstance(max_cv_points, (int, np.integer)) \
            or max_cv_points < 2:
        raise BaselineInputError(f"max_cv_points must be an integer >= 2, got {max_cv_points!r}")
    if bandwidths is None:
        scale = float(arr.std(axis=0).mean())
        if scale <= 0:
            raise BaselineInputError("points have zero spread: no bandwidth grid can be set")
        grid = KDE_RELATIVE_GRID * scale
    else:
        grid = np.asarray(bandwidths, dtype=np.float64).ravel()
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
            raise BaselineInputError("bandwidths must be a non-empty array of positive numbers")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    cv_points = arr if len(arr) <= max_cv_points else \
        arr[np.sort(rng.choice(len(arr), size=int(max_cv_points), replace=False))]
    folds = KFold(n_splits=min(int(cv), len(cv_points)), shuffle=True, random_state=seed)
    search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=folds)
    search.fit(cv_points)
    bandwidth = float(search.best_params_["bandwidth"])
    kde = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(arr)
    seconds = time.perf_counter() - t0
    # GridSearchCV scores a fold by its total log-likelihood: per point, for the record
    fold_size = len(cv_points) / folds.get_n_splits()
    cv_scores = {float(h): float(s) / fold_size
                 for h, s in zip(grid, search.cv_results_["mean_test_score"], strict=True)}
    return Baseline("kde", {"bandwidth": bandwidth}, seconds, kde, arr.shape[1],
                    {"grid": [float(h) for h in grid], "cv_log_likelihood": cv_scores,
                     "cv_points": len(cv_points), "folds": folds.get_n_splits()})


def _check_points(points: Any, name: str, min_rows: int = 2) -> np.ndarray:
    """``points`` as a C-contiguous float64 ``[n, d]`` array, or a one-line ValueError."""
    arr = np.asarray(points)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating)
                                 or np.issubdtype(arr.dtype, np.integer)):
        raise BaselineInputError(f"{name} must be a numeric (float) array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise BaselineInputError(f"{name} must be a 2-D array [n, d], got shape {arr.shape}")
    if len(arr) < min_rows:
        raise BaselineInputError(f"{name} needs at least {min_rows} rows, got {len(arr)}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise BaselineInputError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def _sample_gmm(gmm: GaussianMixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """Component by the weights, then mean + Cholesky factor @ standard normal."""
    comp = rng.choice(len(gmm.weights_), size=n, p=gmm.weights_ / gmm.weights_.sum())
    z = rng.standard_normal((n, gmm.means_.shape[1]))
    chol = np.linalg.cholesky(gmm.covariances_)  # [K, D, D]
    return gmm.means_[comp] + np.einsum("nij,nj->ni", chol[comp], z)


def _sample_kde(kde: KernelDensity, n: int, rng: np.random.Generator) -> np.ndarray:
    """A training point chosen uniformly, plus Gaussian noise of the bandwidth."""
    data = np.asarray(kde.tree_.data)
    idx = rng.integers(0, len(data), size=n)
    return data[idx] + kde.bandwidth_ * rng.standard_normal((n, data.shape[1]))
