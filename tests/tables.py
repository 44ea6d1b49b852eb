"""Test helper: a small user's table written as a CSV file, the same rows from the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_table(path: Path, rows: int, seed: int) -> Path:
    """``rows`` rows of three columns ``a,b,c`` (normal, gamma(2), uniform(-1, 1): unlike
    scales and shapes, as a user's columns are) drawn from ``seed``, written to ``path``."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=rows), rng.gamma(2.0, size=rows),
                         rng.uniform(-1, 1, size=rows)])
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    return path
