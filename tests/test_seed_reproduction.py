"""The full seed preset reproduces the blog's known result (slow: about 20 s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

import vaelab

_T = np.linspace(1.5 * math.pi, 4.5 * math.pi, 200_001)
_SPIRAL = cKDTree(np.column_stack((_T * np.cos(_T), _T * np.sin(_T))))


@pytest.mark.slow
def test_seed_preset_gives_a_roll_smeared_between_the_arms():
    run = vaelab.train(preset="seed", progress=False, device="cpu", figures=False)
    points = run.sample(10_000, seed=0).double().numpy()
    dist = _SPIRAL.query(points)[0]
    off_roll = float(np.mean(dist > 1.0))
    # a recognisable roll: most points on it (real data: 0.1% off the roll) ...
    assert np.median(dist) < 0.5
    # ... with the seed's smear between the arms (the blog's loop: 9-17% over 3 seeds)
    assert 0.03 < off_roll < 0.30
    assert 5.5 < run.metrics[-1]["neg_elbo"] < 6.5  # nats per point, train batches
