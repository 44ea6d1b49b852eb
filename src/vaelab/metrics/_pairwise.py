"""Chunked sums of functions of all pairwise Euclidean distances, in float64 with torch.

The MMD and the energy distance both reduce to sums over every pair ``(i, j)`` of a kernel of
``|a_i - b_j|``. The ``[n, m]`` distance matrix is never held: rows are taken in blocks of about
:data:`BLOCK_ENTRIES` entries (a few MB, cache-friendly), each block comes from
``torch.cdist`` and is reduced in place. A sample against itself is done over the upper block
triangle only (half the work), using symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: entries per distance block (2**19 float64 = 4 MiB); smaller blocks measured faster on CPU
BLOCK_ENTRIES = 1 << 19
#: up to this d, distances are computed directly (most accurate); above it, through a matrix
#: product (BLAS, |a|^2 + |b|^2 - 2 a.b), which is much faster in high dimension
DIRECT_MAX_DIM = 32


def cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]``, float64 in, float64 out."""
    mode = ("donot_use_mm_for_euclid_dist" if a.shape[1] <= DIRECT_MAX_DIM
            else "use_mm_for_euclid_dist")
    return torch.cdist(a, b, compute_mode=mode)


def _block_sums(dist: torch.Tensor, gammas: Sequence[float], distance: bool,
                buf: torch.Tensor) -> torch.Tensor:
    """Per statistic, the sum over the block; ``dist`` is overwritten by its square."""
    out = []
    if distance:
        out.append(dist.sum())
    if gammas:
        sq = dist.square_()
        work = buf[: sq.numel()].view(sq.shape)
        for gamma in gammas:
            torch.mul(sq, -gamma, out=work)
            out.append(work.exp_().sum())
    return torch.stack(out)


def pairwise_sums(a: np.ndarray, b: np.ndarray | None, *, gammas: Sequence[float] = (),
                  distance: bool = False) -> np.ndarray:
    """Sums over all ordered pairs ``(i, j)`` of ``exp(-gamma |a_i - b_j|^2)`` for each gamma
    in ``gammas``, then (when ``distance``) of ``|a_i - b_j|``, as one float64 array.

    ``b=None`` means ``a`` against itself; the sums then include the diagonal ``i == j``.
    """
    if not gammas and not distance:
        raise ValueError("nothing to sum: give gammas and/or distance=True")
    ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    symmetric = b is None
    tb = ta if symmetric else torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))
    n, m = ta.shape[0], tb.shape[0]
    rows = max(1, BLOCK_ENTRIES // m)
    buf = torch.empty(rows * m, dtype=torch.float64)
    total = torch.zeros(len(gammas) + int(distance), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        if not symmetric:
            total += _block_sums(cdist(ta[start:stop], tb), gammas, distance, buf)
            continue
        # rows [start, stop) against columns [start, m): the square block on the diagonal
        # once, the rectangle right of it twice (it stands for its mirror image below).
        block = cdist(ta[start:stop], tb[start:])
        block[:, : stop - start].fill_diagonal_(0.0)  # self-distances exactly 0 in either mode
        square = _block_sums(block[:, : stop - start].clone(), gammas, distance, buf)
        total += 2.0 * _block_sums(block, gammas, distance, buf) - square
    return total.numpy()
