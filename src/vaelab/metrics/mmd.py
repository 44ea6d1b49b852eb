"""Squared maximum mean discrepancy (MMD²) with Gaussian kernels at bandwidths set by the data.

MMD²(P, Q) = E k(X, X') + E k(Y, Y') - 2 E k(X, Y) is zero exactly when P = Q (the Gaussian
kernel is characteristic) and grows as they differ at the scale of the kernel. One bandwidth
sees only one scale, so it is evaluated at several: sigma = factor * s, where s is the median
pairwise Euclidean distance of the *real* sample (the "median heuristic"), so the metric does
not depend on the units of the data, and both a generated-vs-real and a real-vs-real
comparison use the same kernels.

Conventions: ``k(u, v) = exp(-|u - v|^2 / (2 sigma^2))``; the **unbiased** U-statistic
estimator (Gretton et al. 2012, eq. 3): within-sample means leave out ``i == j``, so the
expected value is exactly MMD² and a perfect generator scores 0 on average, with estimates
slightly *below* zero half of the time. The summary is the **mean** over the bandwidths, which
is itself the unbiased MMD² of the averaged kernel ``(1/K) sum_k k_sigma_k`` (still a
characteristic kernel with ``k(u, u) = 1``), so it lies in [0, 2] like each term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vaelab.metrics._inputs import ArrayLike, MetricInputError, as_pair, as_sample
from vaelab.metrics._pairwise import pairwise_sums

#: bandwidths as multiples of the median pairwise distance of the real sample
DEFAULT_FACTORS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
#: the median pairwise distance is estimated on at most this many points
MEDIAN_MAX_POINTS = 2000


@dataclass(frozen=True)
class MMDResult:
    """Unbiased MMD² per bandwidth; ``bandwidths[i] = factors[i] * scale``."""

    factors: tuple[float, ...]
    bandwidths: tuple[float, ...]
    values: tuple[float, ...]
    #: the median pairwise distance of the real sample the bandwidths are relative to
    scale: float

    @property
    def mean(self) -> float:
        """The summary: mean MMD² over the bandwidths (the MMD² of the averaged kernel)."""
        return float(np.mean(self.values))


def median_pairwise_distance(points: ArrayLike, *, max_points: int = MEDIAN_MAX_POINTS,
                             seed: int = 0) -> float:
    """Median Euclidean distance over all pairs of distinct points of ``points``.

    Above ``max_points`` points it is estimated on a random subsample of ``max_points`` of
    them drawn with ``numpy.random.default_rng(seed)`` (deterministic); 2000 points give
    about 2 million pairs, plenty for a median.
    """
    arr = as_sample("points", points, min_points=2)
    if len(arr) > max_points:
        rng = np.random.default_rng(seed)
        arr = arr[np.sort(rng.choice(len(arr), size=max_points, replace=False))]
    from scipy.spatial.distance import pdist  # on use: see metrics/c2st.py

    median = float(np.median(pdist(arr)))
    if median <= 0.0:
        raise MetricInputError(
            "the median pairwise distance of the sample is 0 (more than half the pairs are "
            "duplicates): no data scale to set kernel bandwidths from")
    return median


def _check_factors(factors: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(f) for f in factors)
    if not out or not all(np.isfinite(f) and f > 0 for f in out):
        raise MetricInputError(f"factors must be a non-empty list of positive numbers, "
                               f"got {factors!r}")
    return out


def mmd2_gaussian(x: ArrayLike, y: ArrayLike, *,
                  factors: Sequence[float] = DEFAULT_FACTORS, scale: float | None = None,
                  seed: int = 0) -> MMDResult:
    """Unbiased MMD² between ``x`` (generated, ``[n, d]``) and ``y`` (real, ``[m, d]``).

    Gaussian kernels with ``sigma = factor * scale`` for each factor; ``scale`` defaults to
    :func:`median_pairwise_distance` of ``y`` (with ``seed``). Sizes may differ (n, m >= 2).
    Chunked over rows (bounded memory).
    """
    a, b = as_pair(x, y, min_points=2)
    facs = _check_factors(factors)
    if scale is None:
        scale = median_pairwise_distance(b, seed=seed)
    elif not (np.isfinite(scale) and scale > 0):
        raise MetricInputError(f"scale must be a positive number, got {scale!r}")
    bandwidths = tuple(f * float(scale) for f in facs)
    gammas = [1.0 / (2.0 * s * s) for s in bandwidths]
    n, m = len(a), len(b)
    # k(u, u) = 1, so each within-sample diagonal contributes exactly n (resp. m).
    kxx = (pairwise_sums(a, None, gammas=gammas) - n) / (n * (n - 1))
    kyy = (pairwise_sums(b, None, gammas=gammas) - m) / (m * (m - 1))
    kxy = pairwise_sums(a, b, gammas=gammas) / (n * m)
    values = kxx + kyy - 2.0 * kxy
    return MMDResult(factors=facs, bandwidths=bandwidths,
                     values=tuple(float(v) for v in values), scale=float(scale))
