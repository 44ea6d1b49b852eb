"""k-NN precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models").

Each sample estimates the support ("manifold") of its distribution as the union of balls
around its points, the radius of each ball being the distance from that point to its k-th
nearest neighbour **in the same sample, the point itself excluded** (k = 3 by default, as in
the paper). Then:

- **precision** = share of generated points inside the real manifold: how much of what the
  generator makes is realistic (low when it spreads mass where there is no data);
- **recall** = share of real points inside the generated manifold: how much of the data the
  generator covers (low when it drops modes).

A point is inside when its distance to some ball centre is ``<=`` that ball's radius (the
paper's convention). Both are in [0, 1]; even a perfect generator stays below 1 at finite n
(its floor; about 0.95-0.99 for k = 3 on smooth 2-D densities), so compare with the
real-vs-real value. Only the support matters, not the density on it: a generator with the
right support but wrong mode weights can score perfectly here - the MMD, energy distance
and C2ST catch that.

Radii come from :class:`sklearn.neighbors.NearestNeighbors`; ball membership from
:meth:`sklearn.neighbors.KDTree.query_radius`, which takes one radius per ball. Both use a
KD-tree up to d = 15 (no ``[n, m]`` distance matrix). Above that KD-trees degrade and brute
force wins: sklearn's brute-force neighbours, and blocks of the distance matrix from
``torch.cdist`` compared with the radii (bounded memory). This is the switch sklearn's
``algorithm="auto"`` makes too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from vaelab.metrics import _pairwise
from vaelab.metrics._inputs import ArrayLike, as_pair, check_positive_int

#: default neighbourhood size (the paper's choice)
DEFAULT_K = 3
#: ball centres queried at a time (bounds the memory for the neighbour lists)
QUERY_CHUNK = 2048
#: KD-trees up to this dimension, brute force above it (sklearn's "auto" rule)
KD_TREE_MAX_DIM = 15


class PrecisionRecall(NamedTuple):
    """k-NN precision (realism of generated points) and recall (coverage of the real ones)."""

    precision: float
    recall: float


def knn_radii(points: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Per point, the distance to its k-th nearest *other* point of ``points`` (``[n, d]``,
    float64, n > k). Duplicated points count as distinct neighbours at distance 0."""
    from sklearn.neighbors import NearestNeighbors  # on use: see metrics/c2st.py

    algorithm = "kd_tree" if points.shape[1] <= KD_TREE_MAX_DIM else "brute"
    # kneighbors() without X leaves each point out of its own neighbour list.
    dist, _ = NearestNeighbors(n_neighbors=k, algorithm=algorithm).fit(points).kneighbors()
    return dist[:, k - 1]


def inside_manifold(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean mask over ``queries``: within ``radii[j]`` of ``centres[j]`` for some j."""
    if queries.shape[1] > KD_TREE_MAX_DIM:
        return _inside_brute_force(queries, centres, radii)
    from sklearn.neighbors import KDTree  # on use: see metrics/c2st.py

    tree = KDTree(queries)
    inside = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(centres), QUERY_CHUNK):
        stop = start + QUERY_CHUNK
        hits = tree.query_radius(centres[start:stop], r=radii[start:stop])
        inside[np.concatenate(hits).astype(np.intp, copy=False)] = True
    return inside


def _inside_brute_force(queries: np.ndarray, centres: np.ndarray,
                        radii: np.ndarray) -> np.ndarray:
    tq, tc, tr = (torch.from_numpy(np.ascontiguousarray(a)) for a in (queries, centres, radii))
    rows = max(1, _pairwise.BLOCK_ENTRIES // len(centres))
    inside = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), rows):
        dist = _pairwise.cdist(tq[start:start + rows], tc)
        inside[start:start + rows] = (dist <= tr).any(dim=1).numpy()
    return inside


def knn_precision_recall(x: ArrayLike, y: ArrayLike, *, k: int = DEFAULT_K) -> PrecisionRecall:
    """k-NN precision and recall of ``x`` (generated, ``[n, d]``) against ``y`` (real).

    Sizes may differ; each sample needs at least ``k + 2`` points.
    """
    k = check_positive_int("k", k)
    gen, real = as_pair(x, y, min_points=k + 2)
    precision = inside_manifold(gen, real, knn_radii(real, k)).mean()
    recall = inside_manifold(real, gen, knn_radii(gen, k)).mean()
    return PrecisionRecall(precision=float(precision), recall=float(recall))
