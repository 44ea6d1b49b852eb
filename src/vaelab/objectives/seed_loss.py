"""The seed's loss, and what it means as a likelihood.

Convention (per batch of N points of dimension D)::

    reconstruction = mean over all N*D elements of (x - x_hat)^2     # F.mse_loss, "mean"
    kld            = mean over N of  sum over latent dims of KL       # nats per point
    loss           = reconstruction + kld_weight * kld

Why ``kld_weight`` is not folklore: a Gaussian decoder p(x|z) = N(x_hat(z), s^2 I_D) has

    -log p(x|z) = ||x - x_hat||^2 / (2 s^2) + (D/2) log(2 pi s^2).

Choose s^2 = D * kld_weight / 2. Then ||x - x_hat||^2 / (2 s^2) = ||x - x_hat||^2 / (D w), whose
batch mean is ``reconstruction / w``. So

    loss / kld_weight + (D/2) log(pi * D * kld_weight) = -ELBO  (one-sample estimate, batch mean)

in nats per data point, all constants included. Minimising the seed loss is maximising the
ELBO of that decoder: ``kld_weight`` fixes the decoder variance (for the seed, D = 2 and w = 1,
so s = 1 in the data's own units). :func:`seed_loss` reports that ``neg_elbo`` too.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vaelab.objectives.kl import kl_to_standard_normal


class LossTerms(NamedTuple):
    """Batch-mean loss terms; all are >= 0 except ``neg_elbo`` (a log-density can be > 0)."""

    loss: torch.Tensor  # what the optimiser minimises
    reconstruction: torch.Tensor  # MSE over all elements
    kld: torch.Tensor  # KL(q(z|x) || p(z)), nats per point
    neg_elbo: torch.Tensor  # -ELBO of the implied Gaussian decoder, nats per point


def implied_decoder_variance(dim: int, kld_weight: float | torch.Tensor) -> float | torch.Tensor:
    """The decoder variance s^2 = D * kld_weight / 2 under which the seed loss is an ELBO."""
    return dim * kld_weight / 2.0


def seed_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
              kld_weight: float | torch.Tensor = 1.0, kl: torch.Tensor | None = None) -> LossTerms:
    """The seed's ``MSE + kld_weight * KLD`` with its ELBO reading (see the module docstring).

    ``kld_weight`` may be a 0-d tensor (one weight per model under ``torch.func.vmap``).
    ``kl``: the per-point KL term to use instead of the closed form KL(q(z|x) || N(0, I)); a
    learned prior passes its one-sample estimate log q(z|x) - log p(z), so the loss trains
    the prior too, and the ELBO reading holds with that prior."""
    dim = x.shape[-1]
    reconstruction = torch.mean((x_hat - x) ** 2)
    kld = torch.mean(kl_to_standard_normal(mu, log_var) if kl is None else kl)
    loss = reconstruction + kld_weight * kld
    return LossTerms(loss=loss, reconstruction=reconstruction, kld=kld,
                     neg_elbo=seed_neg_elbo(loss, kld_weight, dim))


def seed_neg_elbo(loss: torch.Tensor, kld_weight: float | torch.Tensor,
                  dim: int) -> torch.Tensor:
    """-ELBO = loss / w + (D/2) log(2 pi s^2) with s^2 = D w / 2 (the module docstring), nats
    per point. At w = 0 (the start of a KL warm-up) the decoder variance is 0 and the bound is
    -inf: neg_elbo is +inf there, not an error."""
    s2 = implied_decoder_variance(dim, kld_weight)
    if isinstance(s2, torch.Tensor):
        return torch.where(s2 > 0, loss / kld_weight + 0.5 * dim * torch.log(2.0 * math.pi * s2),
                           math.inf)
    if s2 <= 0:
        return torch.full_like(loss, math.inf)
    return loss / kld_weight + 0.5 * dim * math.log(2.0 * math.pi * s2)
