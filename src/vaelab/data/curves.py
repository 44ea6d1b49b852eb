"""Three FFJORD toy sets (``lib/toy_data.py`` of rtqichen/ffjord) with exact log-densities.

All three are i.i.d. sources: where FFJORD splits a batch deterministically (``make_moons``'
half/half split and ``linspace`` angles, pinwheel's ``batch_size // 5`` points per class,
2spirals' two equal halves) we draw the branch/class at random with equal probabilities and
the curve parameter from its continuous law. The law of one point is therefore the mixture
FFJORD's batches are drawn from, and it has the density below.

Log-density convention (all three): ``log_prob(x)`` is log p(x) in nats per 2-D point, in
the data's own units, every constant included, computed in float64 in log space
(``logsumexp`` over quadrature nodes / preimages), in chunks of points so memory stays
bounded. Far from the data the value stays finite (it is never NaN or -inf).

``moons`` (default ``noise=0.1``)
    ``make_moons(noise)`` then ``* 2 + (-1, -0.2)``: a moon is picked with probability 1/2,
    ``t ~ U(0, pi)``; outer ``(cos t, sin t)``, inner ``(1 - cos t, 0.5 - sin t)``; plus
    ``noise * N(0, I)``; then the affine map, so the point is
    ``c(t) + 2 noise N(0, I)`` with ``c(t) = (-1, -0.2) + 2 (cos t, sin t)`` (outer) or
    ``(1, 0.8) - 2 (cos t, sin t)`` (inner), noise std ``s = 2 noise`` (0.2).
    Density ``p(y) = 1/2 sum_moon (1/pi) int_0^pi N(y; c(t), s^2 I) dt``, by composite
    Gauss-Legendre quadrature in t (8 nodes per panel, panels of arc length <= s/4; 2016
    nodes at noise 0.1), logsumexp over the nodes.
    Accuracy (against adaptive ``scipy.integrate.quad``, noise 0.05-0.2): < 1e-6 nats
    wherever log p > -1000 (measured max 1e-8), < 1e-4 nats down to log p = -3000; finite
    but less accurate beyond (the Gaussian peak in t gets narrower than a panel).
    Entropy (noise 0.1): 2.393879 nats (2-D grid, see below).

``2spirals`` (default ``noise=0.1``)
    ``n = sqrt(u) 3 pi`` (density ``2 n / (3 pi)^2`` on [0, 3 pi]),
    ``d = (-n cos n + 0.5 u1, n sin n + 0.5 u2)``, ``u, u1, u2 ~ U(0, 1)``; ``d`` or ``-d``
    with probability 1/2; divided by 3; plus ``noise * N(0, I)`` (after the division).
    Given n, the coordinates are independent: uniform of width ``w = 0.5/3`` starting at
    ``a_j`` (``a = g(n)`` for ``d``, ``a = -g(n) - w`` for ``-d``, ``g(n) = (-n cos n,
    n sin n)/3``) convolved with ``N(0, noise^2)``, i.e.
    ``[Phi((x - a)/s) - Phi((x - a - w)/s)] / w``, computed as a stable log-difference of
    ``log_ndtr`` (checked against 50-digit mpmath in both tails). The outer integral over n is
    composite Gauss-Legendre (8 nodes per panel, panels of equal arc length <= noise/2 along
    the curve; 2 x 2464 nodes at noise 0.1), logsumexp over the nodes; nodes whose Gaussian
    factor is below e^-60 of the nearest node's are pruned (exactly negligible,
    and most of the work saved).
    Accuracy (against adaptive ``scipy.integrate.quad``, noise 0.05-0.2): < 1e-6 nats
    wherever log p > -1000 (measured max 1.2e-7), < 2e-4 nats down to log p = -3000; finite
    beyond. Entropy (noise 0.1): 2.645450 nats.

``pinwheel`` (``noise`` = tangential std, default 0.1; radial std 0.3; 5 classes; rate 0.25)
    ``f ~ N((1, 0), diag(0.3^2, noise^2))``, class ``k ~ U{0..4}``,
    ``a = 2 pi k / 5 + rate exp(f0)``, point ``y = 2 f @ R(a)``, ``R = [[cos, -sin],
    [sin, cos]]`` (FFJORD's ``einsum("ti,tij->tj")``: the row vector f times R, i.e. f
    rotated by ``-a``). Change of variables per class: ``|det dy/df| = 4 |1 + rate exp(f0)
    f1|`` (checked against autograd in the tests). Inverse: with ``y/2 = rho (cos phi,
    sin phi)`` and ``f = rho (cos psi, sin psi)`` the preimages solve
    ``G(psi) = psi - 2 pi k/5 - rate exp(rho cos psi) - phi = 0 (mod 2 pi)``. The map is not
    injective everywhere (folds where ``1 + rate exp(f0) f1 = 0``, which need
    ``f1 exp(f0) = -4``, i.e. >= 5.9 standard deviations from the mean of f), so *all*
    roots on the circle are found: G is tabulated on 512 cells of the circle, every cell
    where G crosses a multiple of 2 pi is bisected to machine precision, and
    ``p(y) = sum_k sum_roots (1/5) N(f) / |det|`` in log space. Exact (all roots) for
    ``|y| <= 2 F_MAX = 9.2``: there ``|G'| <= 33`` so no cell holds two crossings, except
    two roots merging at a fold inside one cell (Gaussian factor < e^-17 there). Farther out
    only preimages with ``f0 <= F_MAX = 4.6`` (12 radial std; they carry all but < 1e-32 of
    the mass) and one root per cell are kept: a finite lower bound, where log p < -70
    (measured max over |y| = 9.2: -72).
    Checked: 16x more cells change log p by < 1e-9 for |y| <= 8.5; the mass integrates to 1
    within 2e-8. Entropy (noise 0.1): 2.317788 nats.

Entropies: ``sum -p log p h^2`` on a uniform grid over a box holding all mass but < 1e-14
(8 noise std around the noise-free support), h = 0.05 at the default noise (in general
``min(0.05, sigma / 4)``, ``sigma/2`` for 2spirals, sigma the smallest std in data units).
The densities are smooth at the scale sigma (moons and 2spirals are Gaussian convolutions), so
the grid sum is spectrally accurate (aliasing ~ exp(-2 pi^2 sigma^2 / h^2)): the same grids
integrate p to 1 within 1e-15 (moons, 2spirals) and 2e-8 (pinwheel), and h/2 moves H by
< 1e-6. ``entropy_stderr`` is the (pessimistic) difference from the 2h sub-grid, floored at
1e-6 for the quadrature error of log p: 1e-6, 1e-6, 1.7e-5 nats. Values at the default noise:
moons 2.393879, 2spirals 2.645450, pinwheel 2.317788 nats, agreeing with -mean log p over
200,000 samples within one standard error (~2e-3). Cached per (class, noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from vaelab.data.base import DataSource, device_constant, polar_points
from vaelab.objectives.densities import LOG_2PI

_ELEMENTS = 1 << 21  # (points x nodes) per chunk in log_prob: bounds memory to ~100 MB
_QUAD_ERR = 1e-6  # bound on the log p quadrature error used as floor of entropy_stderr

# Gauss-Legendre nodes/weights on [0, 1], 8 per panel
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_X = torch.from_numpy((_GL_X + 1.0) / 2.0)
_GL_W = torch.from_numpy(_GL_W / 2.0)



def _composite_gl(lo: float, hi: float, panels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log-weights of composite 8-point Gauss-Legendre on [lo, hi] (float64)."""
    return _composite_gl_edges(torch.linspace(lo, hi, panels + 1, dtype=torch.float64))


def _composite_gl_edges(edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite 8-point Gauss-Legendre on the panels between consecutive ``edges``."""
    width = edges[1:] - edges[:-1]
    nodes = (edges[:-1, None] + width[:, None] * _GL_X[None, :]).reshape(-1)
    logw = (width[:, None] * _GL_W[None, :]).log().reshape(-1)
    return nodes, logw


def _as_points(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected points of shape [N, 2], got {tuple(x.shape)}")
    return x


def _scatter_logsumexp(term: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    """``out[i] = logsumexp(term[idx == i])`` for i < n (-inf where idx never equals i)."""
    top = torch.full((n,), -math.inf, dtype=torch.float64)
    top = top.scatter_reduce(0, idx, term, reduce="amax")
    acc = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, torch.exp(term - top[idx]))
    return top + torch.log(acc)


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, stable (Maechler 2012)."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _log_ndtr_diff(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for hi > lo, stable in both tails.

    In the upper tail (lo > 0) it uses Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi), so both
    terms are small numbers whose logs ``log_ndtr`` gives to full precision.
    """
    flip = lo > 0
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return lb + _log1mexp(torch.clamp(la - lb, max=-1e-300))


def _grid_entropy(log_prob: Callable[[torch.Tensor], torch.Tensor],
                  box: tuple[float, float, float, float], h: float) -> tuple[float, float]:
    """H = -sum p log p h^2 on a uniform grid, and |H - H_2h| (error estimate)."""
    x0, x1, y0, y1 = box
    xs = torch.arange(x0, x1 + h / 2, h, dtype=torch.float64)
    ys = torch.arange(y0, y1 + h / 2, h, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    lp = log_prob(torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)).reshape(gx.shape)
    integrand = -lp.exp() * lp
    h_fine = float(integrand.sum()) * h * h
    h_coarse = float(integrand[::2, ::2].sum()) * 4 * h * h
    return h_fine, max(abs(h_fine - h_coarse), _QUAD_ERR)


class _CurveSource(DataSource):
    """Common constructor, validation and entropy caching."""

    dim = 2
    has_density = True
    default_noise = 0.1

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        if backend != "torch":
            raise ValueError(f"backend must be 'torch' for {self.name!r}, got {backend!r}")
        noise = self.default_noise if noise is None else noise
        try:
            value = float(noise)
        except (TypeError, ValueError):
            raise ValueError(f"noise must be a number > 0, got {noise!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"noise must be a finite number > 0, got {noise!r}")
        self.noise = value
        self.backend = backend

    _chunk = 2048  # points per chunk in log_prob

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_points(x)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([self._log_prob_chunk(c) for c in x.split(self._chunk)])

    def _log_prob_chunk(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _entropy_grid(self) -> tuple[tuple[float, float, float, float], float]:
        raise NotImplementedError

    def _compute_entropy(self) -> tuple[float, float]:
        """H(p) in nats by a 2-D grid sum, and its error (grid h vs 2h; module docstring)."""
        box, h = self._entropy_grid()
        return _grid_entropy(self.log_prob, box, h)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self.noise})"


class Moons(_CurveSource):
    """FFJORD ``moons``: ``make_moons(noise=0.1) * 2 + (-1, -0.2)``, i.i.d."""

    name = "moons"
    radius = 2.0
    centers = ((-1.0, -0.2), (1.0, 0.8))  # outer, inner (after the affine map)
    signs = (1.0, -1.0)
    panel_arc = 0.25  # quadrature panel arc length, in noise std

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        super().__init__(noise, backend)
        self.std = 2.0 * self.noise  # noise std after the *2
        panels = max(16, math.ceil(math.pi * self.radius / (self.panel_arc * self.std)))
        t, logw = _composite_gl(0.0, math.pi, panels)
        # both arcs' node positions [2K, 2] and log-weights (1/2 per moon, 1/pi density of t)
        arcs, lws = [], []
        for (cx, cy), sgn in zip(self.centers, self.signs, strict=True):
            arcs.append(torch.stack((cx + sgn * self.radius * t.cos(),
                                     cy + sgn * self.radius * t.sin()), 1))
            lws.append(logw - math.log(math.pi) - math.log(2.0))
        self._nodes = torch.cat(arcs)
        self._logw = torch.cat(lws)
        self._chunk = max(16, _ELEMENTS // self._logw.numel())

    def sample(self, n: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
        inner = torch.rand(n, generator=generator, device=device) < 0.5
        t = math.pi * torch.rand(n, generator=generator, device=device)
        eps = torch.randn(n, 2, generator=generator, device=device)
        c, s = polar_points(torch.ones((), device=device), t).unbind(1)
        x = torch.where(inner, 1.0 - c, c)
        y = torch.where(inner, 0.5 - s, s)
        pts = torch.stack((x, y), 1) + self.noise * eps
        return pts * 2.0 + device_constant((-1.0, -0.2), device)

    def _log_prob_chunk(self, x: torch.Tensor) -> torch.Tensor:
        # log N(x; c(t), s^2 I) at every node, then logsumexp with the quadrature weights
        d2 = (x[:, None, :] - self._nodes[None, :, :]).square().sum(-1)
        log_norm = -LOG_2PI - 2.0 * math.log(self.std)
        return torch.logsumexp(self._logw - d2 / (2.0 * self.std**2), dim=1) + log_norm

    def _entropy_grid(self) -> tuple[tuple[float, float, float, float], float]:
        m = 8.0 * self.std
        return (-3.0 - m, 3.0 + m, -1.2 - m, 1.8 + m), min(0.05, self.std / 4)


class TwoSpirals(_CurveSource):
    """FFJORD ``2spirals``: two interleaved spirals, ``/3``, plus ``noise`` N(0, I), i.i.d."""

    name = "2spirals"
    n_max = 3.0 * math.pi  # 540 degrees
    width = 0.5 / 3.0  # width of the uniform offset after the division by 3
    prune = 60.0
    panel_arc = 0.5  # quadrature panel arc length, in noise std

    def __init__(self, noise: float | None = None, backend: str = "torch") -> None:
        super().__init__(noise, backend)
        # panels of equal arc length <= noise along g(n): arc length S(n) = (n sqrt(1 + n^2)
        # + asinh n) / 6, inverted on a fine table
        table = np.linspace(0.0, self.n_max, 20001)
        arc = (table * np.sqrt(1.0 + table**2) + np.arcsinh(table)) / 6.0
        panels = max(32, math.ceil(arc[-1] / (self.panel_arc * self.noise)))
        edges = torch.from_numpy(np.interp(np.linspace(0.0, arc[-1], panels + 1), arc, table))
        n, logw = _composite_gl_edges(edges)
        g = torch.stack((-n * n.cos(), n * n.sin()), 1) / 3.0
        # lower edges of the uniform boxes for d (+g) and -d (-g - w), [2K, 2]
        self._lower = torch.cat((g, -g - self.width))
        self._centre = self._lower + self.width / 2
        self._half_diag = self.width / math.sqrt(2.0)
        log_pn = torch.log(2.0 * n / self.n_max**2)
        self._logw = torch.cat((logw + log_pn, logw + log_pn)) - math.log(2.0)
        self._chunk = max(16, _ELEMENTS // self._logw.numel())

    def sample(self, n: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
        t = torch.sqrt(torch.rand(n, generator=generator, device=device)) * self.n_max
        u = torch.rand(n, 2, generator=generator, device=device)
        mirror = torch.rand(n, generator=generator, device=device) < 0.5
        d = polar_points(t, t) * device_constant((-1.0, 1.0), device) + 0.5 * u
        d = torch.where(mirror[:, None], -d, d) / 3.0
        return d + self.noise * torch.randn(n, 2, generator=generator, device=device)

    def _log_prob_chunk(self, x: torch.Tensor) -> torch.Tensor:
        s, w = self.noise, self.width
        # Prune: a node whose box distance D_b satisfies D_b^2 > min D_b^2 + 2 s^2 PRUNE has a
        # Gaussian factor < e^-PRUNE of the nearest node's; even times the largest weight
        # ratio and node count (< e^30) its share is < e^-30, far below 1e-6 nats. We test
        # the superset (D_c - r)_+^2 <= min D_c^2 + 2 s^2 PRUNE with the distance D_c to the
        # box centre (D_b <= D_c <= D_b + r, r the half diagonal), which cdist computes fast.
        dc = torch.cdist(x, self._centre)  # [B, K]
        bound = dc.amin(1, keepdim=True).square() + 2.0 * s * s * self.prune
        keep = (dc - self._half_diag).clamp_min(0).square() <= bound
        idx, node = keep.nonzero(as_tuple=True)
        hi = (x[idx] - self._lower[node]) / s  # [P, 2]
        term = self._logw[node] + _log_ndtr_diff(hi, hi - w / s).sum(1)
        return _scatter_logsumexp(term, idx, x.shape[0]) - 2.0 * math.log(w)

    def _entropy_grid(self) -> tuple[tuple[float, float, float, float], float]:
        r = math.pi + self.width + 8.0 * self.noise
        # p is a convolution with N(0, noise^2 I): the grid sum's aliasing error is below
        # exp(-2 pi^2 noise^2 / h^2) = e^-79 at h = noise / 2
        return (-r, r, -r, r), min(0.05, self.noise / 2)


class Pinwheel(_CurveSource):
    """FFJORD ``pinwheel``: 5 sheared Gaussian arms, class drawn uniformly, i.i.d."""

    name = "pinwheel"
    radial_std = 0.3
    num_classes = 5
    rate = 0.25
    #: preimages with f0 > F_MAX (12 radial std) are dropped beyond |y| = 2 F_MAX
    F_MAX = 1.0 + 12 * 0.3
    cells = 512  # grid cells on the circle for bracketing the roots of G
    bisect_steps = 48

    @property
    def tangential_std(self) -> float:
        return self.noise

    def forward(self, f: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """FFJORD's map: ``2 * f @ R(2 pi k/5 + rate exp(f0))`` for features ``f`` [N, 2]."""
        a = 2.0 * math.pi * k / self.num_classes + self.rate * torch.exp(f[:, 0])
        c, s = polar_points(torch.ones((), dtype=a.dtype, device=a.device), a).unbind(1)
        rot = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)
        return 2.0 * torch.einsum("ti,tij->tj", f, rot)

    def log_abs_det(self, f: torch.Tensor) -> torch.Tensor:
        """log |det dy/df| = log 4 + log |1 + rate exp(f0) f1| (closed form)."""
        det = 1.0 + self.rate * torch.exp(f[:, 0]) * f[:, 1]
        return math.log(4.0) + torch.log(det.abs().clamp_min(1e-300))

    def sample(self, n: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
        std = device_constant((self.radial_std, self.noise), device)
        f = torch.randn(n, 2, generator=generator, device=device) * std
        f[:, 0] += 1.0
        k = torch.randint(0, self.num_classes, (n,), generator=generator, device=device)
        return self.forward(f, k.to(f.dtype))

    def preimages(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All features f with ``forward(f, k) = y`` (see the module docstring for the range).

        Returns ``(index, k, f)``: the row of ``y`` each preimage belongs to, its class, and
        f ``[R, 2]`` (float64).
        """
        y = _as_points(y)
        z = y / 2.0
        rho = torch.linalg.vector_norm(z, dim=1)
        phi = torch.atan2(z[:, 1], z[:, 0])
        two_pi = 2.0 * math.pi
        psi = torch.linspace(-math.pi, math.pi, self.cells + 1, dtype=torch.float64)
        f0 = rho[:, None] * torch.cos(psi)[None, :]  # [N, M+1]
        ok = f0 <= self.F_MAX
        shear = self.rate * torch.exp(f0.clamp(max=self.F_MAX))
        g0 = psi[None, :] - shear - phi[:, None]  # G + a_k, [N, M+1]
        ak = two_pi * torch.arange(self.num_classes, dtype=torch.float64) / self.num_classes
        level = torch.floor((g0[:, None, :] - ak[None, :, None]) / two_pi)  # [N, K, M+1]
        cross = (level[..., 1:] != level[..., :-1]) & (ok[:, None, 1:] & ok[:, None, :-1])
        idx, k, cell = cross.nonzero(as_tuple=True)
        m = torch.maximum(level[idx, k, cell], level[idx, k, cell + 1])
        target = phi[idx] + ak[k] + two_pi * m  # root of psi - rate exp(rho cos psi) = target
        r = rho[idx]
        lo, hi = psi[cell], psi[cell + 1]
        for _ in range(self.bisect_steps):  # H(lo) < 0 <= H(hi) or H(lo) >= 0 > H(hi)
            mid = 0.5 * (lo + hi)
            h_mid = mid - self.rate * torch.exp(r * torch.cos(mid)) - target
            h_lo = lo - self.rate * torch.exp(r * torch.cos(lo)) - target
            same = (h_mid < 0) == (h_lo < 0)
            lo = torch.where(same, mid, lo)
            hi = torch.where(same, hi, mid)
        root = 0.5 * (lo + hi)
        f = torch.stack((r * torch.cos(root), r * torch.sin(root)), 1)
        return idx, k, f

    def _log_prob_chunk(self, x: torch.Tensor) -> torch.Tensor:
        idx, _, f = self.preimages(x)
        log_nf = (-0.5 * ((f[:, 0] - 1.0) / self.radial_std) ** 2
                  - 0.5 * (f[:, 1] / self.noise) ** 2
                  - LOG_2PI - math.log(self.radial_std * self.noise))
        term = log_nf - self.log_abs_det(f) - math.log(self.num_classes)
        # logsumexp per point over its preimages (every point has >= 1, see module docstring)
        return _scatter_logsumexp(term, idx, x.shape[0])

    def _entropy_grid(self) -> tuple[tuple[float, float, float, float], float]:
        rho = math.hypot(1.0 + 8 * self.radial_std, 8 * self.noise)
        r = 2.0 * rho
        return (-r, r, -r, r), min(0.05, 2.0 * self.noise / 4)


CURVE_SOURCES: dict[str, type[_CurveSource]] = {
    "moons": Moons,
    "2spirals": TwoSpirals,
    "pinwheel": Pinwheel,
}
