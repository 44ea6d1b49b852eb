"""Four FFJORD toy sets (rtqichen/ffjord ``lib/toy_data.py``) with exact log-densities.

All four are 2-D, in FFJORD's own units (no standardisation). ``log_prob`` is float64, in nats,
all constants included, and computed in log space (``logsumexp`` over components), so a point
far from the data gets a large negative but finite value; only the checkerboard is ``-inf``
(outside its support).

**8gaussians** (``noise`` = s, default 0.5). Centres ``c_k = 4 (cos a_k, sin a_k)``,
``a_k = k * 45 deg``, k = 0..7; a point is ``(c_k + s * N(0, I)) / 1.414`` (FFJORD divides by
exactly 1.414, not sqrt 2). So p is an equal mixture of 8 Gaussians with centres at distance
4/1.414 = 2.829 from the origin and std ``sigma = s / 1.414`` (0.3536 by default):
``log p(x) = logsumexp_k(-|x - c_k/1.414|^2 / (2 sigma^2)) - log 8 - log(2 pi sigma^2)``.

**circles** (``noise`` = 0.08 before scaling). ``make_circles(factor=0.5, noise=0.08) * 3``:
radius R = 3 or 1.5 with probability 1/2 each, uniform angle, isotropic Gaussian noise of std
``s = 3 * noise`` = 0.24.

**rings** (``noise`` = 0.08, added after scaling). Radii ``3 * (1, 0.75, 0.5, 0.25)``,
probability 1/4 each, uniform angle, isotropic Gaussian noise of std ``s = noise`` = 0.08.

A uniform-angle circle of radius R blurred by N(0, s^2 I) has the closed form (integrate the
Gaussian over the angle)
``p_R(x) = exp(-(r^2 + R^2) / (2 s^2)) I0(r R / s^2) / (2 pi s^2)``, r = |x|, evaluated as
``log p_R = -(r - R)^2 / (2 s^2) + log i0e(r R / s^2) - log(2 pi s^2)`` with the exponentially
scaled Bessel function ``i0e(v) = exp(-v) I0(v)`` (``torch.special.i0e``, Cephes, relative
error ~1e-16, the same algorithm as ``scipy.special.i0e``); circles and rings take the
``logsumexp`` over their radii. These densities are exact up to float64 rounding.

**checkerboard** (no noise). ``x1 = 4u - 2``, ``x2 = u' - 2b + (floor(x1) mod 2)``, u, u'
~ U(0, 1), b ~ Bernoulli(1/2), then both times 2: uniform on the 8 squares of side 2 in
[-4, 4)^2 whose cell indices ``floor(x1 / 2)``, ``floor(x2 / 2)`` have equal parity. Density
1/32 inside (log = -3.4657), ``-inf`` outside; squares are closed below and open above.
Entropy exactly ``log 32`` = 3.465736.

Sampling difference from FFJORD / scikit-learn: those place the points of one batch on fixed
``linspace`` angles and split the batch into fixed component counts (n/2 per circle, n/4 per
ring); here every point is i.i.d. -- its component is drawn uniformly at random and its angle
is ``2 pi U(0, 1)`` -- so the source is exactly the mixture whose density is given above. The
8gaussians set also draws its centre at random (as FFJORD does). Draws use only the
``torch.Generator`` passed in.

Entropies (default noise; cached per (set, noise); ``entropy_stderr`` returns a numerical
error estimate -- the change when the quadrature is refined twofold, floored at 1e-12 -- not a
Monte Carlo standard error; checkerboard returns 0.0, its entropy being exact):

* 8gaussians: H = 2.831880 nats. By the 8-fold rotational symmetry of p,
  ``H = E_{x ~ N(c_0, sigma^2 I)}[-log p(x)]``, integrated with the trapezoid rule on a square
  grid of step sigma/16 over ``c_0 +- 12 sigma`` (385^2 nodes). The integrand is smooth
  and Gaussian-weighted, so the rule converges geometrically: the change from step sigma/8 is
  ~4e-16 and the weight outside the box < 1e-31. (The well-separated limit
  log 8 + log(2 pi e sigma^2) = 2.838179 is 0.0063 higher: neighbouring components, 6.1 sigma
  apart, overlap a little.)
* circles: H = 3.268136 nats; rings: H = 2.623183 nats. Both are radially symmetric, so
  ``H = -int_0^inf f(r) log f(r) 2 pi r dr`` on [0, R_max + 12 s], by composite 16-node
  Gauss-Legendre with panels of width <= s/4; halving the panel count changes H by
  < 1e-15.

All three were cross-checked against an independent plain 2-D grid sum of -p log p (step
0.01, 0.01, 0.004): agreement to 2e-15 nats; the same grids integrate p to 1 within 1e-15.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.data.base import DataSource, device_constant, polar_points

#: FFJORD's divisor for 8gaussians (exactly 1.414, not sqrt 2)
GAUSS_DIVISOR = 1.414
GAUSS_RADIUS = 4.0
CIRCLES_RADII = (3.0, 1.5)
CIRCLES_SCALE = 3.0
RINGS_RADII = (3.0, 2.25, 1.5, 0.75)
CHECKER_SCALE = 2.0
CHECKER_LOG_DENSITY = -math.log(32.0)

#: (class name, noise) -> (entropy, numerical-error estimate)

# quadrature settings of the entropies (see the module docstring)
_GRID_STEPS_PER_SIGMA = 16
_GRID_HALF_WIDTH_SIGMAS = 12
_GL_NODES = 16
_RADIAL_TAIL_SIGMAS = 12.0
_PANELS_PER_SIGMA = 4


def _check_backend(backend: str) -> None:
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' for this data set, got {backend!r}")


def _resolve_noise(noise: float | None, default: float) -> float:
    noise = default if noise is None else float(noise)
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise must be a finite number > 0 (the density needs it), got {noise}")
    return noise


def _as_points(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {tuple(x.shape)}")
    return x


def _gauss_centres() -> torch.Tensor:
    """The 8 centres after the division by 1.414, float64 ``[8, 2]``."""
    a = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return GAUSS_RADIUS * torch.stack((torch.cos(a), torch.sin(a)), dim=1) / GAUSS_DIVISOR


def gauss_mixture_log_prob(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p(x) of the equal mixture of 8 Gaussians of std ``sigma``: float64 ``[N]``."""
    d2 = torch.cdist(x, _gauss_centres()).pow(2)  # [N, 8]
    return (torch.logsumexp(-d2 / (2 * sigma**2), dim=1) - math.log(8.0)
            - math.log(2 * math.pi * sigma**2))


def ring_mixture_log_prob(r: torch.Tensor, radii: tuple[float, ...], s: float) -> torch.Tensor:
    """log density at distance ``r`` (float64) of an equal mixture of noisy circles.

    Each circle: ``-(r - R)^2 / (2 s^2) + log i0e(r R / s^2) - log(2 pi s^2)``.
    """
    big_r = torch.tensor(radii, dtype=torch.float64)
    r = r.unsqueeze(-1)
    comp = (-(r - big_r).pow(2) / (2 * s**2)
            + torch.log(torch.special.i0e(r * big_r / s**2)))
    return (torch.logsumexp(comp, dim=-1) - math.log(len(radii))
            - math.log(2 * math.pi * s**2))


def _sample_rings(n: int, radii: tuple[float, ...], s: float, generator: torch.Generator,
                  device: torch.device | str) -> torch.Tensor:
    k = torch.randint(0, len(radii), (n,), generator=generator, device=device)
    theta = 2 * math.pi * torch.rand(n, generator=generator, device=device)
    big_r = device_constant(radii, device)[k]
    x = polar_points(big_r, theta)
    return x + s * torch.randn(n, 2, generator=generator, device=device)


def _gauss_entropy_at(sigma: float, steps_per_sigma: int) -> float:
    """E_{N(c_0, sigma^2 I)}[-log p] by the trapezoid rule on c_0 +- 12 sigma."""
    m = _GRID_HALF_WIDTH_SIGMAS * steps_per_sigma
    t = torch.arange(-m, m + 1, dtype=torch.float64) / steps_per_sigma  # in units of sigma
    w1 = torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi) / steps_per_sigma  # 1-D weights
    w1[0] *= 0.5
    w1[-1] *= 0.5
    gx, gy = torch.meshgrid(t, t, indexing="ij")
    pts = _gauss_centres()[0] + sigma * torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1)
    weights = (w1[:, None] * w1[None, :]).reshape(-1)
    return float(-(weights * gauss_mixture_log_prob(pts, sigma)).sum())


def _radial_entropy_at(radii: tuple[float, ...], s: float, panels_per_sigma: int) -> float:
    """-int_0^inf f log f 2 pi r dr by composite Gauss-Legendre on [0, R_max + 12 s]."""
    upper = max(radii) + _RADIAL_TAIL_SIGMAS * s
    n_panels = math.ceil(upper / s * panels_per_sigma)
    nodes, wts = np.polynomial.legendre.leggauss(_GL_NODES)
    edges = np.linspace(0.0, upper, n_panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    r = ((edges[:-1, None] + edges[1:, None]) / 2 + half * nodes[None, :]).reshape(-1)
    w = (half * wts[None, :]).reshape(-1)
    log_f = ring_mixture_log_prob(torch.from_numpy(r), radii, s)
    integrand = torch.exp(log_f) * log_f * (2 * math.pi) * torch.from_numpy(r)
    return float(-(torch.from_numpy(w) * integrand).sum())


def _with_error(fine: float, coarse: float) -> tuple[float, float]:
    """(value, error estimate): the change under a twofold refinement, floored at 1e-12."""
    return fine, max(abs(fine - coarse), 1e-12)


class EightGaussians(DataSource):
    """FFJORD ``8gaussians``: 8 equal Gaussians on a circle of radius 4/1.414."""

    name = "8gaussians"
    dim = 2
    has_density = True

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        _check_backend(backend)
        self.noise = _resolve_noise(noise, 0.5)
        self.backend = backend
        #: std of each component after the division by 1.414
        self.sigma = self.noise / GAUSS_DIVISOR

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        k = torch.randint(0, 8, (n,), generator=generator, device=device)
        a = k.to(torch.float32) * (math.pi / 4)
        centre = polar_points(torch.full((), GAUSS_RADIUS, device=device), a)
        z = torch.randn(n, 2, generator=generator, device=device)
        return (centre + self.noise * z) / GAUSS_DIVISOR

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return gauss_mixture_log_prob(_as_points(x), self.sigma)

    def _compute_entropy(self) -> tuple[float, float]:
        return _with_error(_gauss_entropy_at(self.sigma, _GRID_STEPS_PER_SIGMA),
                           _gauss_entropy_at(self.sigma, _GRID_STEPS_PER_SIGMA // 2))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self.noise})"


class _RingSource(DataSource):
    """Shared code of circles and rings: an equal mixture of noisy uniform-angle circles."""

    dim = 2
    has_density = True
    radii: tuple[float, ...] = ()

    def __init__(self, noise: float | None, default: float, backend: str) -> None:
        _check_backend(backend)
        self.noise = _resolve_noise(noise, default)
        self.backend = backend

    @property
    def std(self) -> float:
        """Standard deviation of the isotropic noise in the data's units."""
        raise NotImplementedError

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        return _sample_rings(n, self.radii, self.std, generator, device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_points(x)
        return ring_mixture_log_prob(torch.hypot(x[:, 0], x[:, 1]), self.radii, self.std)

    def _compute_entropy(self) -> tuple[float, float]:
        return _with_error(_radial_entropy_at(self.radii, self.std, _PANELS_PER_SIGMA),
                           _radial_entropy_at(self.radii, self.std, _PANELS_PER_SIGMA // 2))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self.noise})"


class Circles(_RingSource):
    """FFJORD ``circles``: ``make_circles(factor=0.5, noise) * 3`` (radii 3 and 1.5)."""

    name = "circles"
    radii = CIRCLES_RADII

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        super().__init__(noise, 0.08, backend)

    @property
    def std(self) -> float:
        return CIRCLES_SCALE * self.noise


class Rings(_RingSource):
    """FFJORD ``rings``: radii 3, 2.25, 1.5, 0.75, noise std ``noise`` after scaling."""

    name = "rings"
    radii = RINGS_RADII

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        super().__init__(noise, 0.08, backend)

    @property
    def std(self) -> float:
        return self.noise


class Checkerboard(DataSource):
    """FFJORD ``checkerboard``: uniform on 8 squares of side 2 in [-4, 4)^2, density 1/32."""

    name = "checkerboard"
    dim = 2
    has_density = True

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        if noise is not None:
            raise ValueError(f"checkerboard has no noise parameter, got noise={noise}")
        _check_backend(backend)
        self.noise = None
        self.backend = backend

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        u = torch.rand(n, 2, generator=generator, device=device)
        b = torch.randint(0, 2, (n,), generator=generator, device=device).to(torch.float32)
        x1 = 4 * u[:, 0] - 2
        lo2 = torch.remainder(torch.floor(x1), 2) - 2 * b  # lower edge of x2's unit cell
        x2 = lo2 + u[:, 1]
        # float32 rounding of lo2 + u (u < 1) can land exactly on lo2 + 1: keep it inside
        x2 = torch.minimum(x2, torch.nextafter(lo2 + 1, lo2))
        return CHECKER_SCALE * torch.stack((x1, x2), dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(_as_points(x) / CHECKER_SCALE)  # unit cells, indices -2..1 inside
        inside = ((cell >= -2) & (cell <= 1)).all(dim=1)
        inside &= torch.remainder(cell[:, 0] - cell[:, 1], 2) == 0
        out = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
        out[inside] = CHECKER_LOG_DENSITY
        return out

    def _compute_entropy(self) -> tuple[float, float]:
        return math.log(32.0), 0.0  # exact: uniform on an area of 32

    def __repr__(self) -> str:
        return "Checkerboard()"


MIXTURE_SOURCES: dict[str, type] = {
    "8gaussians": EightGaussians,
    "circles": Circles,
    "rings": Rings,
    "checkerboard": Checkerboard,
}
