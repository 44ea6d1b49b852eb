"""The negative ELBO of a Gaussian decoder, as a loss.

Convention: per point, in nats, data units, all constants included::

    reconstruction = -E_q[log p(x|z)]  (one reparameterised sample; batch mean)
    kld            = KL(q(z|x) || p(z))  (exact; batch mean)
    loss           = reconstruction + kld_weight * kld
    neg_elbo       = reconstruction + kld          (the true -ELBO, whatever kld_weight is)

``kld_weight`` is the beta of a beta-VAE: 1 trains the ELBO itself; other values trade the two
terms and ``loss`` is then not a bound, which is why ``neg_elbo`` is reported separately.
"""

from __future__ import annotations

import torch

from vaelab.objectives.seed_loss import LossTerms


def gaussian_loss(log_likelihood: torch.Tensor, kl: torch.Tensor,
                  kld_weight: float = 1.0) -> LossTerms:
    """Loss terms from per-point ``log p(x|z)`` and ``KL`` (both ``[N]``, nats)."""
    reconstruction = -log_likelihood.mean()
    kld = kl.mean()
    return LossTerms(loss=reconstruction + kld_weight * kld, reconstruction=reconstruction,
                     kld=kld, neg_elbo=reconstruction + kld)
