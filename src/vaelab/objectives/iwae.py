"""The importance-weighted bound (Burda et al. 2016) as a loss.

Convention: per point, in nats, data units, all constants included. With S draws
z_s ~ q(z|x) per point and b = ``kld_weight``::

    log w_s        = log p(x|z_s) - b * (log q(z_s|x) - log p(z_s))
    loss           = -mean over points of [logsumexp_s log w_s - log S]
    reconstruction = -mean over points and draws of log p(x|z_s)
    kld            = mean over points and draws of log q(z_s|x) - log p(z_s)  (a sampled KL)
    neg_elbo       = reconstruction + kld   (the sampled -ELBO, whatever S and b are)

With b = 1, ``loss`` is -IWAE_S, an upper bound on -log p(x) that tightens as S grows; S = 1
gives the ELBO with a sampled KL. b != 1 (a warm-up) makes it a tempered objective, not a
bound, which is why ``neg_elbo`` is reported separately. The log-densities that make up the
log-weights are those of :mod:`vaelab.objectives.densities`.
"""

from __future__ import annotations

import math

import torch

from vaelab.objectives.seed_loss import LossTerms


def iwae_loss(log_likelihood: torch.Tensor, log_ratio: torch.Tensor,
              kld_weight: float = 1.0) -> LossTerms:
    """Loss terms from ``log p(x|z_s)`` and ``log q(z_s|x) - log p(z_s)``, both ``[S, N]``."""
    if log_likelihood.ndim != 2 or log_likelihood.shape != log_ratio.shape:
        raise ValueError("log_likelihood and log_ratio must both have shape [S, N]")
    log_w = log_likelihood - kld_weight * log_ratio
    bound = torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
    reconstruction = -log_likelihood.mean()
    kld = log_ratio.mean()
    return LossTerms(loss=-bound.mean(), reconstruction=reconstruction, kld=kld,
                     neg_elbo=reconstruction + kld)
