"""Input checks shared by the sample metrics: ``[n, d]`` float64 arrays, finite, matching d.

Every metric accepts a numpy array, a torch tensor (any device, any float dtype; detached and
copied to the CPU) or anything ``numpy.asarray`` understands, and computes in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaelab.errors import VaelabError

#: what the metrics accept as a sample: ``[n, d]`` points
ArrayLike = Any


class MetricInputError(VaelabError, ValueError):
    """A sample a metric cannot use: not ``[n, d]``, not finite, too few points, wrong d.

    A :class:`ValueError` (what plain Python callers expect) and a
    :class:`~vaelab.errors.VaelabError` (what the CLI reports as a user error).
    """


def as_sample(name: str, points: ArrayLike, *, min_points: int = 2) -> np.ndarray:
    """``points`` as a C-contiguous float64 ``[n, d]`` array, checked; ``name`` is for messages."""
    if isinstance(points, torch.Tensor):
        points = points.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name} must be a numeric [n, d] array: {exc}") from exc
    if arr.ndim != 2:
        raise MetricInputError(
            f"{name} must be a 2-D array of shape [n, d], got shape {tuple(arr.shape)}")
    n, d = arr.shape
    if d < 1:
        raise MetricInputError(f"{name} must have at least one column (d >= 1), got d = {d}")
    if n < min_points:
        raise MetricInputError(f"{name} needs at least {min_points} points, got {n}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise MetricInputError(f"{name} contains {bad} NaN or infinite value(s)")
    return np.ascontiguousarray(arr)


def as_pair(x: ArrayLike, y: ArrayLike, *, min_points: int = 2,
            names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Both samples checked by :func:`as_sample`, and of the same dimension d."""
    a = as_sample(names[0], x, min_points=min_points)
    b = as_sample(names[1], y, min_points=min_points)
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(
            f"{names[0]} and {names[1]} must have the same dimension d, "
            f"got {a.shape[1]} and {b.shape[1]}")
    return a, b


def subsample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows drawn without replacement, kept in their original order; all rows if
    ``len(points) <= n`` (then ``rng`` is not used)."""
    if len(points) <= n:
        return points
    keep = np.sort(rng.choice(len(points), size=n, replace=False))
    return points[keep]


def check_positive_int(name: str, value: int) -> int:
    """``value`` as an int >= 1, or :class:`MetricInputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MetricInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
