"""Energy distance (Székely & Rizzo): ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

It is zero exactly when the two distributions are equal (in any dimension), needs no
bandwidth, and is in the units of the data (a distance). It is twice the MMD² of the
distance-induced kernel ``k(u, v) = (|u| + |v| - |u - v|) / 2`` (Sejdinovic et al. 2013), a
kernel with no length scale, so it weighs large-scale differences (shifts, spread, mode
weights) more than the fine structure the small-bandwidth MMD terms see.

Conventions: we report the quantity above itself - the **squared** energy distance, the
"energy statistic" - *not* its square root (``scipy.stats.energy_distance`` returns the square
root, in 1-D only), because the unbiased estimate can be slightly negative and is additive.
By default the within-sample means are **U-statistics** (pairs ``i != j`` only, divided by
``n (n - 1)``), so the estimate is unbiased and a perfect generator scores 0 on average;
``unbiased=False`` gives the V-statistic (all ``n^2`` pairs), which is >= 0 and whose square
root equals scipy's value in 1-D.
"""

from __future__ import annotations

from vaelab.metrics._inputs import ArrayLike, as_pair
from vaelab.metrics._pairwise import pairwise_sums


def energy_distance(x: ArrayLike, y: ArrayLike, *, unbiased: bool = True) -> float:
    """Squared energy distance between ``x`` (generated, ``[n, d]``) and ``y`` (real, ``[m, d]``).

    Sizes may differ (n, m >= 2). Chunked over rows (bounded memory).
    """
    a, b = as_pair(x, y, min_points=2)
    n, m = len(a), len(b)
    dxx = float(pairwise_sums(a, None, distance=True)[0])  # zero diagonal
    dyy = float(pairwise_sums(b, None, distance=True)[0])
    dxy = float(pairwise_sums(a, b, distance=True)[0])
    nx, ny = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return 2.0 * dxy / (n * m) - dxx / nx - dyy / ny
