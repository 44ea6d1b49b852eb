"""Exact log-densities of the Swiss rolls: quadrature accuracy, normalisation, entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from vaelab.data.swiss_roll import (
    HEIGHT,
    T_MAX,
    T_MIN,
    SwissRoll2D,
    SwissRoll3D,
    height_log_prob,
    roll_log_prob,
)

S = 0.3


def _reference(p, s=S):
    """log p(x) by scipy's adaptive quad on 300 sub-intervals, exponent shifted for range."""
    tt = np.linspace(T_MIN, T_MAX, 100_001)
    d2min = np.min((p[0] - tt * np.cos(tt)) ** 2 + (p[1] - tt * np.sin(tt)) ** 2)

    def f(t):
        d2 = (p[0] - t * math.cos(t)) ** 2 + (p[1] - t * math.sin(t)) ** 2
        return math.exp(-(d2 - d2min) / (2 * s * s))

    edges = np.linspace(T_MIN, T_MAX, 301)
    total = sum(quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
                for a, b in zip(edges[:-1], edges[1:], strict=True))
    return math.log(total / (3 * math.pi)) - math.log(2 * math.pi * s * s) - d2min / (2 * s * s)


def _test_points():
    pts = SwissRoll2D().sample(40, torch.Generator().manual_seed(3)).double()
    special = torch.tensor([[0.0, 0.0], [T_MIN, 0.0], [-T_MIN, 0.0], [T_MAX, 0.0],
                            [T_MAX + 0.5, 0.3], [30.0, -30.0], [200.0, 50.0]],
                           dtype=torch.float64)  # centre, both ends, beyond, far away
    return torch.cat([pts, special])


def test_quadrature_matches_adaptive_reference_to_1e_minus_3_nats():
    x = _test_points()
    ours = roll_log_prob(x, S)
    ref = torch.tensor([_reference(p.tolist()) for p in x], dtype=torch.float64)
    assert (ours - ref).abs().max().item() < 1e-3
    finer = roll_log_prob(x, S, panels_per_width=4, nodes=12)
    assert (ours - finer).abs().max().item() < 1e-6
    assert torch.isfinite(ours).all()


def test_density_integrates_to_one():
    """A grid sum at spacing h = noise / 2: for a density smooth at the scale of its noise
    the sum's error is of order exp(-2 pi^2 noise^2 / h^2) ~ 1e-34, far below the bound."""
    xs = np.linspace(-13.5, 16.5, 201)
    ys = np.linspace(-13.0, 15.5, 191)
    gx, gy = np.meshgrid(xs, ys)
    logp = roll_log_prob(torch.from_numpy(np.column_stack((gx.ravel(), gy.ravel()))), S)
    mass = np.exp(logp.numpy()).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_entropy_matches_monte_carlo_of_the_density():
    src = SwissRoll2D(noise=S)
    h, se = src.entropy(), src.entropy_stderr()
    assert se < 2e-3
    x = src.sample(40_000, torch.Generator().manual_seed(9))
    logp = src.log_prob(x)
    mc_se = logp.std().item() / math.sqrt(len(logp))
    assert -logp.mean().item() == pytest.approx(h, abs=4 * math.hypot(mc_se, se))


def test_more_noise_more_entropy_and_no_density_without_noise():
    assert SwissRoll2D(noise=0.5).entropy() > SwissRoll2D(noise=0.3).entropy()
    with pytest.raises(ValueError, match="noise"):
        SwissRoll2D(noise=0.0).log_prob(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        SwissRoll2D().log_prob(torch.zeros(3, 3))


def test_height_factor_integrates_to_one_and_3d_density_factorises():
    y = np.linspace(-5, HEIGHT + 5, 200_001)
    h = np.exp(height_log_prob(torch.from_numpy(y), S).numpy())
    assert np.trapezoid(h, y) == pytest.approx(1.0, abs=1e-6)
    assert h[np.argmin(np.abs(y - 10.0))] == pytest.approx(1 / HEIGHT, rel=1e-9)
    assert np.isfinite(height_log_prob(torch.tensor([-50.0, 80.0]), S).numpy()).all()
    src = SwissRoll3D(noise=S)
    x = src.sample(500, torch.Generator().manual_seed(2)).double()
    expected = roll_log_prob(x[:, [0, 2]], S) + height_log_prob(x[:, 1], S)
    assert torch.allclose(src.log_prob(x), expected)
    assert x.shape == (500, 3) and 0 - 2 < x[:, 1].min() and x[:, 1].max() < HEIGHT + 2


def test_3d_entropy_matches_monte_carlo():
    src = SwissRoll3D(noise=S)
    x = src.sample(40_000, torch.Generator().manual_seed(4))
    logp = src.log_prob(x)
    mc_se = logp.std().item() / math.sqrt(len(logp))
    assert -logp.mean().item() == pytest.approx(src.entropy(), abs=4 * mc_se + 2e-3)
