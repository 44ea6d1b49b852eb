"""The Gaussian log-densities of vaelab, and their constant, each defined here once.

Every path that needs one of these imports it from here: the models (the likelihood of
:class:`~vaelab.models.BaseVAE`, the priors of :mod:`vaelab.models.priors`), the losses
(:mod:`vaelab.objectives`), the estimators of log p(x) and the explicit-gradient training step
(:mod:`vaelab.models.explicit`).

Convention: log-densities in nats, summed over the last dimension, every constant included;
all arguments broadcast against each other.

This module imports nothing from vaelab, so the models, the objectives and the training code
can all import it without an import cycle.
"""

from __future__ import annotations

import math

import torch

#: log(2 pi), the constant of every Gaussian log-density
LOG_2PI = math.log(2.0 * math.pi)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(log_var)) summed over the last dimension, nats; broadcasts."""
    return (-0.5 * ((z - mu) ** 2 * torch.exp(-log_var) + log_var + LOG_2PI)).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension, nats."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def gaussian_log_likelihood(u: torch.Tensor, u_hat: torch.Tensor,
                            std: torch.Tensor) -> torch.Tensor:
    """log N(u; u_hat, diag std^2) summed over the last dimension, nats; broadcasts.

    The likelihood p(x|z) of a Gaussian decoder with mean ``u_hat`` and standard deviation
    ``std`` per dimension (positive, not a log)."""
    return (-0.5 * ((u - u_hat) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI).sum(-1)


def gaussian_tril_log_likelihood(u: torch.Tensor, u_hat: torch.Tensor,
                                 scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(u; u_hat, L L^T) with L = ``scale_tril`` (``[..., D, D]``, lower triangular, a
    positive diagonal), nats; broadcasts over the leading dimensions.

    The likelihood of a decoder with a full covariance: -|L^-1 (u - u_hat)|^2 / 2
    - sum log diag L - D log(2 pi) / 2. With a diagonal L it equals
    :func:`gaussian_log_likelihood` with ``std = diag L``."""
    r = (u - u_hat).unsqueeze(-1)  # solve_triangular broadcasts the leading dimensions
    w = torch.linalg.solve_triangular(scale_tril, r, upper=False).squeeze(-1)
    log_diag = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1))
    return -0.5 * w.pow(2).sum(-1) - log_diag.sum(-1) - 0.5 * u_hat.shape[-1] * LOG_2PI


__all__ = ["LOG_2PI", "gaussian_log_likelihood", "gaussian_tril_log_likelihood",
           "log_normal_diag", "standard_normal_log_prob"]
