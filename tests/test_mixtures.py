"""The FFJORD toy sets of ``vaelab.data.mixtures``: sampling, exact densities, entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from vaelab.data.mixtures import (
    MIXTURE_SOURCES,
    Checkerboard,
    Circles,
    EightGaussians,
    Rings,
)

NAMES = sorted(MIXTURE_SOURCES)
SMOOTH = ["8gaussians", "circles", "rings"]

# Regression values of the default entropies (module docstring); the independent checks below
# (grid sum, Monte Carlo) are what make them right, these pin them against silent changes.
ENTROPY = {"8gaussians": 2.831880406, "circles": 3.268135712, "rings": 2.623182770,
           "checkerboard": math.log(32.0)}

# Grids for the integral checks: half-width (holds all mass: >= 9 noise std beyond the outer
# ring / centre) and step (<= std/12 of the narrowest component).
GRID = {"8gaussians": (7.0, 0.02), "circles": (6.0, 0.02), "rings": (4.2, 0.0064)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid(half: float, step: float) -> torch.Tensor:
    t = torch.arange(-half, half + step / 2, step, dtype=torch.float64)
    gx, gy = torch.meshgrid(t, t, indexing="ij")
    return torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1)


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes_and_defaults(name):
    cls = MIXTURE_SOURCES[name]
    src = cls()
    assert cls.name == name and src.dim == 2 and src.has_density
    expected = {"8gaussians": 0.5, "circles": 0.08, "rings": 0.08, "checkerboard": None}
    assert src.noise == expected[name]


def test_noise_scales():
    assert EightGaussians().sigma == pytest.approx(0.5 / 1.414, rel=1e-15)
    assert Circles().std == pytest.approx(0.24, rel=1e-15)
    assert Rings(noise=0.1).std == 0.1


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_and_seeding(name):
    src = MIXTURE_SOURCES[name]()
    global_state = torch.get_rng_state()
    x = src.sample(1000, _gen(3))
    assert x.shape == (1000, 2) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert torch.equal(x, src.sample(1000, _gen(3)))
    assert not torch.equal(x, src.sample(1000, _gen(4)))
    # only the given generator is drawn from
    assert torch.equal(torch.get_rng_state(), global_state)
    # consecutive draws from one generator differ
    g = _gen(3)
    assert not torch.equal(src.sample(10, g), src.sample(10, g))


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_shape_dtype(name):
    src = MIXTURE_SOURCES[name]()
    x = src.sample(50, _gen(0))
    lp = src.log_prob(x)
    assert lp.shape == (50,) and lp.dtype == torch.float64 and lp.device.type == "cpu"
    assert torch.isfinite(lp).all()
    with pytest.raises(ValueError):
        src.log_prob(torch.zeros(5, 3))


@pytest.mark.parametrize("name", SMOOTH)
def test_density_integrates_to_one_and_grid_entropy(name):
    """Trapezoid sum of p and of -p log p on a box holding all the mass.

    The integrands are smooth and decay to ~0 at the box edge, so the trapezoid rule converges
    geometrically (error ~ exp(-2 pi^2 std^2 / step^2) < 1e-100 with step <= std/12), and the
    mass outside the box (>= 9 std away) is < 1e-18: the sums are exact to float rounding. The
    tolerance 1e-6 is far above that yet far below any real mistake (a wrong constant or
    scale shifts the mass by O(1)).
    """
    src = MIXTURE_SOURCES[name]()
    half, step = GRID[name]
    lp = src.log_prob(_grid(half, step))
    p = torch.exp(lp)
    assert float(p.sum()) * step**2 == pytest.approx(1.0, abs=1e-6)
    assert float(-(p * lp).sum()) * step**2 == pytest.approx(src.entropy(), abs=1e-6)


def test_checkerboard_integrates_to_one():
    """Midpoint rule with cells of side 0.05: no midpoint is on a square's edge, every cell
    lies inside or outside the support, so the sum is exactly 1 up to rounding."""
    step = 0.05
    t = torch.arange(-5 + step / 2, 5, step, dtype=torch.float64)
    gx, gy = torch.meshgrid(t, t, indexing="ij")
    lp = Checkerboard().log_prob(torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1))
    assert float(torch.exp(lp).sum()) * step**2 == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_entropy_matches_monte_carlo(name):
    src = MIXTURE_SOURCES[name]()
    lp = src.log_prob(src.sample(200_000, _gen(11)))
    assert torch.isfinite(lp).all()
    mc = float(-lp.mean())
    se = float(lp.std()) / math.sqrt(lp.numel())
    assert abs(mc - src.entropy()) < 4 * se + 1e-9
    assert src.entropy() == pytest.approx(ENTROPY[name], abs=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_entropy_error_and_cache(name):
    src = MIXTURE_SOURCES[name]()
    h = src.entropy()
    assert 0.0 <= src.entropy_stderr() < 2e-3
    assert MIXTURE_SOURCES[name]().entropy() == h  # cached / deterministic
    if name == "checkerboard":
        assert src.entropy_stderr() == 0.0


def test_8gaussians_entropy_below_separated_limit():
    for noise in (0.2, 0.5):
        src = EightGaussians(noise=noise)
        separated = math.log(8) + math.log(2 * math.pi * math.e * src.sigma**2)
        # overlap can only lower the entropy; for small noise it vanishes
        assert src.entropy() < separated + 1e-12
        if noise == 0.2:
            assert src.entropy() == pytest.approx(separated, abs=1e-9)
        else:
            assert separated - src.entropy() > 1e-3


@pytest.mark.parametrize("noise", [None, 0.3, 2.0])
def test_8gaussians_matches_torch_distributions(noise):
    src = EightGaussians(noise=noise)
    s = src.noise / 1.414
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 4 * torch.stack((torch.cos(ang), torch.sin(ang)), dim=1) / 1.414
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.full((8,), 1 / 8, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(centres, s), 1),
    )
    x = torch.cat((src.sample(500, _gen(5)).double(), 4 * torch.randn(200, 2, generator=_gen(6),
                                                                      dtype=torch.float64)))
    torch.testing.assert_close(src.log_prob(x), mix.log_prob(x), rtol=1e-12, atol=1e-10)


def _angle_quadrature_log_prob(x: np.ndarray, radii, s: float) -> np.ndarray:
    """log p by a periodic trapezoid rule over the angle of each circle (spectrally exact)."""
    theta = np.linspace(0.0, 2 * np.pi, 4096, endpoint=False)
    out = []
    for pt in x:
        terms = []
        for r in radii:
            d2 = (pt[0] - r * np.cos(theta)) ** 2 + (pt[1] - r * np.sin(theta)) ** 2
            terms.append(logsumexp(-d2 / (2 * s**2)) - math.log(theta.size))
        out.append(logsumexp(terms) - math.log(len(radii)) - math.log(2 * math.pi * s**2))
    return np.array(out)


@pytest.mark.parametrize(("cls", "noise"), [(Circles, None), (Circles, 0.2), (Rings, None),
                                            (Rings, 0.3)])
def test_circle_density_matches_angle_quadrature(cls, noise):
    src = cls(noise=noise)
    rng = np.random.default_rng(0)
    r = np.array([0.0, 0.1, 0.4, 0.75, 1.1, 1.5, 1.9, 2.25, 2.6, 3.0, 3.3, 4.5, 6.0])
    phi = rng.uniform(0, 2 * np.pi, r.size)
    x = np.column_stack((r * np.cos(phi), r * np.sin(phi)))
    expected = _angle_quadrature_log_prob(x, src.radii, src.std)
    got = src.log_prob(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_circle_radii():
    assert Circles.radii == (3.0, 1.5)
    assert Rings.radii == (3.0, 2.25, 1.5, 0.75)


@pytest.mark.parametrize("name", SMOOTH)
def test_component_frequencies(name):
    """Each component gets its equal share of the points (5 binomial std)."""
    src = MIXTURE_SOURCES[name]()
    x = src.sample(80_000, _gen(2)).double()
    if name == "8gaussians":
        comp = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)) % 8
    else:
        r = torch.hypot(x[:, 0], x[:, 1])
        comp = torch.argmin((r[:, None] - torch.tensor(src.radii)).abs(), dim=1)
    k = 8 if name == "8gaussians" else len(src.radii)
    counts = torch.bincount(comp.long(), minlength=k).double()
    p = 1 / k
    assert counts.numel() == k
    assert ((counts - x.shape[0] * p).abs() < 5 * math.sqrt(x.shape[0] * p * (1 - p))).all()


@pytest.mark.parametrize("name", SMOOTH)
def test_far_points_finite(name):
    src = MIXTURE_SOURCES[name]()
    x = torch.tensor([[1e3, -1e3], [-1e6, 3e5], [0.0, 0.0], [1e-300, 0.0]], dtype=torch.float64)
    lp = src.log_prob(x)
    assert torch.isfinite(lp).all()
    assert lp[0] < -1e5 and lp[1] < lp[0]


def test_checkerboard_support():
    src = Checkerboard()
    inside = torch.tensor([[-3.0, -3.0], [-1.0, -1.0], [1.0, 1.0], [3.0, 3.0], [-3.0, 1.0],
                           [1.0, -3.0], [-1.0, 3.0], [3.0, -1.0], [-4.0, -4.0], [3.999, 3.999]])
    outside = torch.tensor([[-3.0, -1.0], [-1.0, -3.0], [1.0, 3.0], [3.0, 1.0], [4.0, 3.0],
                            [3.0, 4.0], [-4.5, -3.0], [1e3, -1e3], [5.0, 5.0], [-1.0, 1.0]])
    torch.testing.assert_close(src.log_prob(inside),
                               torch.full((10,), math.log(1 / 32), dtype=torch.float64))
    assert torch.isneginf(src.log_prob(outside)).all()


def test_checkerboard_samples_inside_and_uniform():
    x = Checkerboard().sample(160_000, _gen(8))
    assert torch.isfinite(Checkerboard().log_prob(x)).all()
    assert (x >= -4).all() and (x < 4).all()
    cell = torch.floor(x.double() / 2).long() + 2  # 0..3
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double()
    occupied = counts[counts > 0]
    assert occupied.numel() == 8
    n, p = x.shape[0], 1 / 8
    assert ((occupied - n * p).abs() < 5 * math.sqrt(n * p * (1 - p))).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_backend(name):
    with pytest.raises(ValueError):
        MIXTURE_SOURCES[name](backend="sklearn")


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("noise", [0.0, -0.1, math.nan, math.inf])
def test_bad_noise(name, noise):
    with pytest.raises(ValueError):
        MIXTURE_SOURCES[name](noise=noise)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_checkerboard_rejects_noise(noise):
    with pytest.raises(ValueError):
        Checkerboard(noise=noise)


def test_checkerboard_float32_edge(monkeypatch):
    """u = 1 - 2^-24 (the largest float32 below 1) makes ``1 + u`` round to 2.0 in float32;
    the sampler must still keep every point inside its square."""
    real_rand = torch.rand

    def top_rand(*size, generator=None, device=None, **kw):
        return torch.full_like(real_rand(*size, generator=generator, device=device),
                               1 - 2.0**-24)

    monkeypatch.setattr(torch, "rand", top_rand)
    assert torch.tensor(1.0) + torch.tensor(1 - 2.0**-24) == 2.0  # the rounding is real
    x = Checkerboard().sample(64, _gen(1))
    assert torch.isfinite(Checkerboard().log_prob(x)).all()
    assert (x < 4).all()
