"""Estimators of log p(x) for a trained VAE, per point, batched and chunked.

Convention: every estimate is log p(x) in nats per data point, in the data's own units (the
standardisation's Jacobian included), with all constants, returned as float64 ``[N]`` on the
CPU. Log-weights are computed in the model's dtype and reduced (logsumexp, means) in float64.

* ``elbo``: E_q[log p(x|z)] - KL(q(z|x) || p(z)): the expectation by ``k`` reparameterised
  samples, the KL exactly for the N(0, I) prior and by the same samples for a learned one.
  A lower bound on log p(x) in expectation.
* ``iwae``: log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al. 2016).
  A lower bound in expectation that rises with K towards log p(x); K = 1 is a one-sample ELBO.
* ``prior_mc``: log (1/K) sum_k p(x|z_k), z_k ~ p(z) (the model's prior): plain Monte Carlo
  over the prior. Also
  consistent, but the prior rarely proposes the z that explain a given x, so it needs far more
  samples for the same precision: the seed's "slow route".

Memory stays bounded: at most ``max_elements`` (points x samples) are in flight at once,
whatever N and K are (K up to 10,000 and beyond). The chunks fix the random draws; on the CPU
each chunk's network passes then run in blocks that fit the cache (the same numbers, sooner).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from vaelab.models.base import BaseVAE, values_per_row
from vaelab.objectives import LOG_2PI, kl_to_standard_normal

#: points x samples evaluated at once; each costs about (hidden widths) floats of activations
DEFAULT_MAX_ELEMENTS = 1 << 17


#: activation values (points x samples x layer widths) in flight at once: a wide model's
#: chunks hold fewer points x samples than ``max_elements`` (a narrow one's are unchanged)
MAX_VALUES = DEFAULT_MAX_ELEMENTS * 1024


#: activation values (rows x the model's layer widths) one network pass holds on the CPU: a
#: chunk is evaluated in blocks of this size, whose activations stay in the cache, where one
#: pass over the whole chunk would stream every layer's output through memory
CACHE_VALUES = 1 << 21


def _bounded(model: BaseVAE, max_elements: int) -> int:
    """``max_elements``, lowered for a model whose layers are so wide that that many points x
    samples would hold more than :data:`MAX_VALUES` activations."""
    return max(1, min(max_elements, MAX_VALUES // max(1, values_per_row(model))))


def _spans(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _prepare(model: BaseVAE, x: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if x.ndim != 2 or x.shape[1] != model.in_channels:
        raise ValueError(f"points must have shape [N, {model.in_channels}], got "
                         f"{tuple(x.shape)}")
    return x.to(device=device, dtype=dtype)


def _posterior_draws(mu: torch.Tensor, std: torch.Tensor, k: int, k_chunk: int,
                     generator: torch.Generator | None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` draws z = mu + std * eps from q(z|x), ``k_chunk`` at a time: yields (eps, z)."""
    for ka, kb in _spans(k, k_chunk):
        eps = torch.randn((kb - ka, *mu.shape), generator=generator, device=mu.device,
                          dtype=mu.dtype)
        yield eps, mu + std * eps


def _chunk_sizes(n: int, k: int, max_elements: int) -> tuple[int, int]:
    k_chunk = max(1, min(k, max_elements))
    n_chunk = max(1, min(n, max_elements // k_chunk))
    return n_chunk, k_chunk


def _encoded_chunks(model: BaseVAE, x: torch.Tensor, k: int, max_elements: int,
                    generator: torch.Generator | None
                    ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor,
                                        Iterator[tuple[torch.Tensor, torch.Tensor]]]]:
    """Per chunk of points: (start, stop, points, mu, log_var, their k posterior draws)."""
    n_chunk, k_chunk = _chunk_sizes(x.shape[0], k, _bounded(model, max_elements))
    for a, b in _spans(x.shape[0], n_chunk):
        xb = x[a:b]
        mu, log_var = model.encode(xb)
        draws = _posterior_draws(mu, torch.exp(0.5 * log_var), k, k_chunk, generator)
        yield a, b, xb, mu, log_var, draws


def _blockwise(model: BaseVAE, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               xb: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``fn(x, z)``, a [k, n] result of points x [n, D] and their draws z [k, n, d], computed
    over blocks of at most :data:`CACHE_VALUES` activations on the CPU (rows are independent,
    so the blocks assemble the same values); in one call on other devices."""
    k, n = z.shape[:2]
    rows = _block_rows(model)
    if z.device.type != "cpu" or k * n <= rows:
        return fn(xb, z)
    out = torch.empty((k, n), dtype=z.dtype, device=z.device)
    n_step = min(n, rows)
    k_step = max(1, rows // n_step)
    for a, b in _spans(n, n_step):
        for c, d in _spans(k, k_step):
            out[c:d, a:b] = fn(xb[a:b], z[c:d, a:b])
    return out


def _block_rows(model: BaseVAE) -> int:
    """Rows (points x samples) of one cache-sized block for ``model``."""
    return max(1, CACHE_VALUES // max(1, values_per_row(model)))


def _decoded(model: BaseVAE, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.decode_params_internal(z)`` for draws z [k, d], in cache-sized blocks of rows
    on the CPU: the mean [k, D] and sigma (global [D], or per draw [k, ...])."""
    rows = _block_rows(model)
    if z.device.type != "cpu" or len(z) <= rows:
        return model.decode_params_internal(z)
    parts = [model.decode_params_internal(z[a:b]) for a, b in _spans(len(z), rows)]
    std = parts[0][1]
    if std.ndim > 1:  # sigma(z) or L(z): one per draw
        std = torch.cat([p[1] for p in parts])
    return torch.cat([p[0] for p in parts]), std


def _joint(model: BaseVAE) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """log p(x|z) + log p(z), nats per point and draw."""
    return lambda x, z: model.log_likelihood(x, z) + model.log_prior(z)


def _log_q_const(log_var: torch.Tensor) -> torch.Tensor:
    """log q(z|x) up to its eps term, shared by all the draws of a point (nats, summed)."""
    return (-0.5 * log_var - 0.5 * LOG_2PI).sum(-1)


def _log_q(log_q_const: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at z = mu + std * eps."""
    return log_q_const - 0.5 * (eps**2).sum(-1)


@torch.no_grad()
def iwae(model: BaseVAE, x: torch.Tensor, k: int = 1000, *,
         generator: torch.Generator | None = None,
         max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """The importance-weighted estimate of log p(x) with ``k`` samples from q(z|x)."""
    x = _prepare(model, x)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for a, b, xb, _mu, log_var, draws in _encoded_chunks(model, x, k, max_elements, generator):
        log_q_const = _log_q_const(log_var)
        total = torch.full((b - a,), -math.inf, dtype=torch.float64, device=x.device)
        for eps, z in draws:
            log_w = _blockwise(model, _joint(model), xb, z) - _log_q(log_q_const, eps)
            total = torch.logaddexp(total, torch.logsumexp(log_w.double(), dim=0))
        out[a:b] = (total - math.log(k)).cpu()
    return out


@torch.no_grad()
def elbo(model: BaseVAE, x: torch.Tensor, k: int = 1, *,
         generator: torch.Generator | None = None,
         max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """ELBO per point: the mean of ``k`` samples of log p(x|z), z ~ q(z|x), minus the exact KL."""
    x = _prepare(model, x)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    exact_kl = model.prior.is_standard
    for a, b, xb, mu, log_var, draws in _encoded_chunks(model, x, k, max_elements, generator):
        log_q_const = _log_q_const(log_var)
        total = torch.zeros(b - a, dtype=torch.float64, device=x.device)
        for eps, z in draws:
            if exact_kl:
                term = _blockwise(model, model.log_likelihood, xb, z)
            else:  # the sampled KL: log p(z) - log q(z|x)
                term = _blockwise(model, _joint(model), xb, z) - _log_q(log_q_const, eps)
            total += term.double().sum(0)
        kl = kl_to_standard_normal(mu, log_var).double() if exact_kl else 0.0
        out[a:b] = (total / k - kl).cpu()
    return out


@torch.no_grad()
def prior_mc(model: BaseVAE, x: torch.Tensor, k: int = 1000, *,
             generator: torch.Generator | None = None,
             max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """Plain Monte Carlo over the prior: log mean_k p(x|z_k), z_k ~ N(0, I), shared by all x."""
    x = _prepare(model, x)
    n = x.shape[0]
    n_chunk, k_chunk = _chunk_sizes(n, k, _bounded(model, max_elements))
    total = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
    for ka, kb in _spans(k, k_chunk):
        z = model.sample_prior(kb - ka, generator, x.device).to(x.dtype)
        u_hat, std = _decoded(model, z)  # decoded once for all x
        u_hat = u_hat.unsqueeze(1)  # [k, 1, D]
        if std.ndim > 1:  # sigma(z) [k, D] -> [k, 1, D]; a global sigma [D] broadcasts as is
            std = std.unsqueeze(1)
        for a, b in _spans(n, n_chunk):
            u = model.standardize(x[a:b])
            log_lik = (model.log_likelihood_internal(u, u_hat, std)
                       + model.log_jacobian())  # [k, n]
            total[a:b] = torch.logaddexp(total[a:b], torch.logsumexp(log_lik.double(), dim=0))
    return (total - math.log(k)).cpu()


Estimator = Callable[..., torch.Tensor]
ESTIMATORS: dict[str, Estimator] = {"iwae": iwae, "elbo": elbo, "prior-mc": prior_mc}


def log_density(model: BaseVAE, x: torch.Tensor, estimator: str = "iwae", k: int = 1000,
                seed: int = 0, max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """log p(x) per point by the named estimator (``iwae``, ``elbo`` or ``prior-mc``),
    its samples fixed by ``seed``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r} (valid: {', '.join(ESTIMATORS)})")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        return ESTIMATORS[estimator](model, x, k, generator=generator,
                                     max_elements=max_elements)
    finally:
        model.train(was_training)


def log_density_wide(model: BaseVAE, x: torch.Tensor, estimator: str = "iwae", k: int = 1000,
                     seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """:func:`log_density`, and the rows it had to estimate otherwise. Far outside the data's
    scale the encoder's proposal overflows (its log-variance grows with |x|, and exp of it
    is infinite in any precision), so the ELBO and IWAE read NaN there; those points are
    estimated by prior Monte Carlo (the same ``k``, no encoder) in float64 on a copy of the
    model, where their log p is a large negative number. A point that overflows even then
    raises ``OverflowError`` naming its row."""
    logp = log_density(model, x, estimator, k=k, seed=seed)
    bad = ~torch.isfinite(logp)
    rows = [int(i) for i in torch.nonzero(bad).flatten()]
    if rows:
        wide = copy.deepcopy(model).double()
        again = log_density(wide, x[bad.to(x.device)].double(), "prior-mc", k=k, seed=seed)
        logp = logp.double()
        logp[bad] = again.to(logp.device)
        still = torch.nonzero(~torch.isfinite(logp)).flatten()
        if len(still):
            raise OverflowError(f"row {int(still[0]) + 1}: log p(x) overflows even by prior "
                                "Monte Carlo in float64 (the point is too far outside the "
                                "data's scale); remove or rescale it")
    return logp, rows


def grid_log_density(model: BaseVAE, limits: tuple[float, float, float, float], size: int = 120,
                     k: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's log p(x) (IWAE, ``k`` samples) on a ``size`` x ``size`` grid over the 2-D
    ``limits`` (x0, x1, y0, y1): the grid's x and y coordinates and log p, each [size, size]."""
    x0, x1, y0, y1 = limits
    gx, gy = np.meshgrid(np.linspace(x0, x1, size), np.linspace(y0, y1, size))
    pts = torch.as_tensor(np.column_stack((gx.ravel(), gy.ravel())), dtype=torch.float32)
    logq = log_density(model, pts, "iwae", k=k, seed=seed).numpy().reshape(size, size)
    return gx, gy, logq
