"""The FFJORD toy sets moons / 2spirals / pinwheel and their exact log-densities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats
from sklearn.datasets import make_moons

from vaelab.data.curves import (
    CURVE_SOURCES,
    Moons,
    Pinwheel,
    TwoSpirals,
    _grid_entropy,
    _log_ndtr_diff,
)

NAMES = sorted(CURVE_SOURCES)


def _grid(box: tuple[float, float, float, float], h: float) -> torch.Tensor:
    xs = torch.arange(box[0], box[1] + h / 2, h, dtype=torch.float64)
    ys = torch.arange(box[2], box[3] + h / 2, h, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)


def _test_points(src, seed: int) -> np.ndarray:
    """30 points spread over [-6, 6]^2 (log p down to ~ -600) and 10 points from p."""
    rng = np.random.default_rng(seed)
    near = src.sample(10, torch.Generator().manual_seed(seed)).double().numpy()
    return np.concatenate([rng.uniform(-6, 6, (30, 2)), near])


# --- independent references: adaptive scipy quadrature of the defining 1-D integrals -------

def _ref_moons(y: np.ndarray, noise: float) -> float:
    s, total, logs = 2 * noise, 0.0, []
    for (cx, cy), sg in zip(Moons.centers, Moons.signs, strict=True):
        def d2(t, cx=cx, cy=cy, sg=sg):
            return (y[0] - cx - sg * 2 * np.cos(t)) ** 2 + (y[1] - cy - sg * 2 * np.sin(t)) ** 2
        shift = d2(np.linspace(0, math.pi, 20001)).min()  # keeps exp() away from underflow
        edges = np.linspace(0, math.pi, 41)
        total = sum(integrate.quad(lambda t, d2=d2, c=shift: math.exp(-(d2(t) - c) / (2 * s * s)),
                                   a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
                    for a, b in zip(edges[:-1], edges[1:], strict=True))
        logs.append(math.log(total) - shift / (2 * s * s))
    # 1/2 per moon, 1/pi density of t, Gaussian normaliser
    return (float(np.logaddexp(*logs)) - math.log(2 * math.pi)
            - math.log(2 * math.pi * s * s))


def _ref_spirals(y: np.ndarray, noise: float) -> float:
    s, w, top = noise, 0.5 / 3, 3 * math.pi

    def log_box(x, a):  # log[(uniform on [a, a + w]) * N(0, s^2)](x), upper tail by symmetry
        hi, lo = (x - a) / s, (x - a - w) / s
        hi, lo = np.where(lo > 0, -lo, hi), np.where(lo > 0, -hi, lo)
        lhi, llo = special.log_ndtr(hi), special.log_ndtr(lo)
        return lhi + np.log(-np.expm1(llo - lhi)) - math.log(w)

    def log_dens(n, sg):
        g = np.array([-n * np.cos(n), n * np.sin(n)]) / 3
        a = g if sg > 0 else -g - w
        return np.log(2 * n / top**2) + log_box(y[0], a[0]) + log_box(y[1], a[1])

    logs = []
    for sg in (1, -1):
        shift = log_dens(np.linspace(1e-9, top, 20001), sg).max()
        edges = np.linspace(0, top, 101)
        total = sum(integrate.quad(lambda n, sg=sg, c=shift: math.exp(log_dens(n, sg) - c),
                                   a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
                    for a, b in zip(edges[:-1], edges[1:], strict=True))
        logs.append(math.log(total) + shift)
    return float(np.logaddexp(*logs)) - math.log(2)


# --- construction --------------------------------------------------------------------------

def test_registry_and_attributes():
    assert set(CURVE_SOURCES) == {"moons", "2spirals", "pinwheel"}
    for name, cls in CURVE_SOURCES.items():
        src = cls()
        assert src.name == name and src.dim == 2 and src.has_density
        assert src.noise == 0.1
    assert Moons(noise=0.05).noise == 0.05 and Pinwheel(0.2).tangential_std == 0.2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kwargs", [{"backend": "sklearn"}, {"noise": 0}, {"noise": -0.1},
                                    {"noise": float("nan")}, {"noise": float("inf")},
                                    {"noise": "abc"}])
def test_bad_arguments_raise(name, kwargs):
    with pytest.raises(ValueError):
        CURVE_SOURCES[name](**kwargs)


# --- sampling ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_and_seeding(name):
    src = CURVE_SOURCES[name]()
    a = src.sample(1000, torch.Generator().manual_seed(7))
    b = src.sample(1000, torch.Generator().manual_seed(7))
    c = src.sample(1000, torch.Generator().manual_seed(8))
    assert a.shape == (1000, 2) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    first, second = src.sample(500, g), src.sample(500, g)  # the generator advances
    assert not torch.equal(first, second)


def test_moons_matches_sklearn():
    """Same law as FFJORD's make_moons(noise=0.1) * 2 + (-1, -0.2) (two-sample KS tests)."""
    ours = Moons().sample(20000, torch.Generator().manual_seed(0)).double().numpy()
    ref = make_moons(20000, noise=0.1, random_state=0)[0] * 2 + np.array([-1.0, -0.2])
    for f in (lambda p: p[:, 0], lambda p: p[:, 1], lambda p: p[:, 0] + p[:, 1],
              lambda p: np.hypot(p[:, 0] + 1, p[:, 1] + 0.2)):
        assert stats.ks_2samp(f(ours), f(ref)).pvalue > 1e-3


def test_2spirals_matches_ffjord_formula():
    """Same law as FFJORD's numpy code (independently written here), two-sample KS tests."""
    rng = np.random.default_rng(0)
    n = np.sqrt(rng.random((10000, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(n) * n + rng.random((10000, 1)) * 0.5
    d1y = np.sin(n) * n + rng.random((10000, 1)) * 0.5
    ref = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    ref += rng.standard_normal(ref.shape) * 0.1
    ours = TwoSpirals().sample(20000, torch.Generator().manual_seed(0)).double().numpy()
    for f in (lambda p: p[:, 0], lambda p: p[:, 1], lambda p: np.hypot(p[:, 0], p[:, 1])):
        assert stats.ks_2samp(f(ours), f(ref)).pvalue > 1e-3


# --- densities -----------------------------------------------------------------------------

_GRID_LOG_PROBS: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}


def _on_grid(name: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(grid points, log p on them, spacing h) of a set at its own noise: computed once per
    set, for the two tests below (pinwheel's quadrature is the costly part)."""
    if name not in _GRID_LOG_PROBS:
        src = CURVE_SOURCES[name]()
        box, h = src._entropy_grid()
        pts = _grid(box, h)
        _GRID_LOG_PROBS[name] = (pts, src.log_prob(pts), h)
    return _GRID_LOG_PROBS[name]


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name):
    """Grid sum of p over a box holding all but < 1e-14 of the mass. p is smooth at the
    scale of its smallest std (>= 0.1 >= 2h), so the grid sum converges spectrally (measured
    |mass - 1| < 1e-15 for moons/2spirals and 2e-8 for pinwheel at h = 0.05); the quadrature of
    log p is good to < 1e-6 relative. 1e-5 is a safe bound that still catches any slip in a
    constant, a Jacobian, a mixture weight or a missing preimage."""
    _, lp, h = _on_grid(name)
    assert torch.isfinite(lp).all()
    mass = float(lp.exp().sum()) * h * h
    assert abs(mass - 1.0) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name,noise", [("moons", 0.05), ("2spirals", 0.05), ("pinwheel", 0.2)])
def test_density_integrates_to_one_other_noise(name, noise):
    src = CURVE_SOURCES[name](noise=noise)
    box, h = src._entropy_grid()
    mass = float(src.log_prob(_grid(box, h)).exp().sum()) * h * h
    assert abs(mass - 1.0) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_smooth_expectation_matches_samples(name):
    """The density's shape, not just its mass: E[phi] from p on the grid vs the sample mean,
    for a smooth window phi (a soft quadrant, so the grid sum stays spectrally accurate)."""
    src = CURVE_SOURCES[name]()

    def phi(x):
        return torch.sigmoid((x[:, 0] - 0.3) / 0.1) * torch.sigmoid((x[:, 1] + 0.1) / 0.1)

    pts, lp, h = _on_grid(name)
    expect = float((lp.exp() * phi(pts)).sum()) * h * h
    vals = phi(src.sample(100_000, torch.Generator().manual_seed(3)).double())
    assert 0.05 < expect < 0.95
    assert abs(float(vals.mean()) - expect) < 4 * float(vals.std()) / math.sqrt(100_000)


@pytest.mark.parametrize("name", NAMES)
def test_mean_log_prob_matches_entropy(name):
    src = CURVE_SOURCES[name]()
    h = src.entropy()
    assert src.entropy_stderr() < 2e-3
    lp = src.log_prob(src.sample(40_000, torch.Generator().manual_seed(11)))
    se = float(lp.std()) / math.sqrt(lp.numel())
    assert abs(float(lp.mean()) + h) < 4 * se + src.entropy_stderr()


def test_entropy_values_and_cache():
    expected = {"moons": 2.393879, "2spirals": 2.645450, "pinwheel": 2.317788}
    for name, value in expected.items():
        src = CURVE_SOURCES[name]()
        assert src.entropy() == pytest.approx(value, abs=1e-5)
        assert CURVE_SOURCES[name]().entropy() == src.entropy()  # cached per (class, noise)


def test_grid_entropy_of_a_gaussian():
    """The entropy routine on a closed form: H(N(0, s^2 I)) = 1 + log(2 pi s^2)."""
    s = 0.3

    def log_prob(x):
        return -(x**2).sum(1) / (2 * s * s) - math.log(2 * math.pi * s * s)

    h, err = _grid_entropy(log_prob, (-3.0, 3.0, -3.0, 3.0), 0.05)
    assert h == pytest.approx(1 + math.log(2 * math.pi * s * s), abs=1e-8)
    assert err < 1e-5


@pytest.mark.parametrize("name,ref", [("moons", _ref_moons), ("2spirals", _ref_spirals)])
def test_quadrature_accuracy_against_scipy_quad(name, ref):
    src = CURVE_SOURCES[name]()
    pts = _test_points(src, seed=5)
    ours = src.log_prob(torch.from_numpy(pts)).numpy()
    with np.errstate(all="ignore"):
        want = np.array([ref(p, src.noise) for p in pts])
    assert want.min() < -100  # the set reaches far into the tails
    assert np.abs(ours - want).max() < 1e-5


def test_quadrature_accuracy_other_noise():
    """Other noise levels: < 1e-5 nats wherever log p > -1000 (the documented range)."""
    for src, ref in ((Moons(noise=0.05), _ref_moons), (TwoSpirals(noise=0.2), _ref_spirals),
                     (TwoSpirals(noise=0.05), _ref_spirals)):
        pts = _test_points(src, seed=6)[::2]
        want = np.array([ref(p, src.noise) for p in pts])
        keep = want > -1000
        assert keep.sum() >= 10
        err = np.abs(src.log_prob(torch.from_numpy(pts)).numpy() - want)
        assert err[keep].max() < 1e-5


def test_log_ndtr_diff_is_stable():
    """log(Phi(hi) - Phi(lo)) against 50-digit mpmath, from the far lower to the far upper tail."""
    mpmath = pytest.importorskip("mpmath")
    hi = torch.tensor([-300.0, -40.0, -3.0, 0.5, 0.9, 3.0, 8.0, 40.0, 300.0],
                      dtype=torch.float64)
    for width in (5.0 / 3.0, 1e-3, 20.0):
        got = _log_ndtr_diff(hi, hi - width)
        assert torch.isfinite(got).all()
        for h, g in zip(hi.tolist(), got.tolist(), strict=True):
            lo = h - width  # Phi(h) - Phi(lo) = Phi(-lo) - Phi(-h): no cancellation near 1
            with mpmath.workdps(50):
                if lo > 0:
                    want = mpmath.log(mpmath.ncdf(-lo) - mpmath.ncdf(-h))
                else:
                    want = mpmath.log(mpmath.ncdf(h) - mpmath.ncdf(lo))
            assert g == pytest.approx(float(want), rel=1e-11, abs=1e-11)


@pytest.mark.parametrize("name", NAMES)
def test_far_points_are_finite(name):
    src = CURVE_SOURCES[name]()
    x = torch.tensor([[1e3, -1e3], [-1e4, 50.0], [30.0, 5.0], [0.0, 0.0]])
    lp = src.log_prob(x)
    assert lp.dtype == torch.float64 and lp.shape == (4,)
    assert torch.isfinite(lp).all()
    assert lp[1] < lp[0] < lp[2] < -1000 < lp[3]


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_chunking_and_input_types(name):
    src = CURVE_SOURCES[name]()
    x = src.sample(300, torch.Generator().manual_seed(2))
    full = src.log_prob(x)
    src._chunk = 7
    assert torch.allclose(src.log_prob(x.double()), full, rtol=0, atol=1e-10)
    assert src.log_prob(x[:0]).shape == (0,)
    with pytest.raises(ValueError):
        src.log_prob(torch.zeros(3, 3))


# --- pinwheel's change of variables -------------------------------------------------------

def test_pinwheel_jacobian_matches_autograd():
    src = Pinwheel()
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.normal([1, 0], [0.6, 0.5], (25, 2)))
    feats = torch.cat([feats, torch.tensor([[2.0, -1.0], [3.0, 0.4], [-1.0, 2.0]],
                                           dtype=torch.float64)])
    for f in feats:
        for k in range(5):
            kk = torch.tensor([float(k)], dtype=torch.float64)
            jac = torch.autograd.functional.jacobian(lambda v, kk=kk: src.forward(v[None], kk)[0],
                                                     f)
            want = math.log(abs(float(torch.linalg.det(jac))))
            assert float(src.log_abs_det(f[None])[0]) == pytest.approx(want, abs=1e-10)


def test_pinwheel_forward_is_ffjord_einsum():
    """forward() is FFJORD's 2 * einsum('ti,tij->tj', f, R) with R = [[c, -s], [s, c]]."""
    src = Pinwheel()
    f = torch.tensor([[1.2, 0.05], [0.7, -0.1]], dtype=torch.float64)
    k = torch.tensor([0.0, 3.0], dtype=torch.float64)
    a = 2 * np.pi * k.numpy() / 5 + 0.25 * np.exp(f[:, 0].numpy())
    rot = np.stack([np.cos(a), -np.sin(a), np.sin(a), np.cos(a)]).T.reshape(-1, 2, 2)
    want = 2 * np.einsum("ti,tij->tj", f.numpy(), rot)
    np.testing.assert_allclose(src.forward(f, k).numpy(), want, rtol=0, atol=1e-14)


def test_pinwheel_inverse_recovers_features():
    src = Pinwheel()
    g = torch.Generator().manual_seed(4)
    f = torch.randn(2000, 2, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.1])
    f[:, 0] += 1.0
    k = torch.randint(0, 5, (2000,), generator=g).double()
    y = src.forward(f, k)
    idx, kk, pre = src.preimages(y)
    # every preimage maps back onto its point ...
    assert torch.allclose(src.forward(pre, kk.double()), y[idx], rtol=0, atol=1e-9)
    # ... and the generating (f, k) is among them
    match = (kk.double() == k[idx]) & ((pre - f[idx]).norm(dim=1) < 1e-9)
    assert torch.bincount(idx[match], minlength=2000).eq(1).all()


def test_pinwheel_finds_all_roots_beyond_a_fold():
    """Where 1 + rate exp(f0) f1 < 0 the map folds: three preimages in one class, all found."""
    src = Pinwheel()
    f = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    assert 1 + 0.25 * math.exp(2.0) * -1.0 < 0
    y = src.forward(f, torch.tensor([2.0], dtype=torch.float64))
    _, k, pre = src.preimages(y)
    mine = pre[k == 2]
    assert mine.shape[0] == 3
    assert torch.allclose(src.forward(mine, torch.full((3,), 2.0, dtype=torch.float64)),
                          y.expand(3, 2), rtol=0, atol=1e-9)
    assert (mine - f).norm(dim=1).min() < 1e-9


def test_pinwheel_root_finding_against_finer_grid():
    """The bracketing grid misses nothing: 16x more cells give the same log p."""
    src = Pinwheel()
    pts = torch.from_numpy(_test_points(src, seed=9))  # |y| <= 8.5: the exact range
    fine = Pinwheel()
    fine.cells = 16 * src.cells
    fine.bisect_steps = src.bisect_steps + 4
    assert (src.log_prob(pts) - fine.log_prob(pts)).abs().max() < 1e-9
