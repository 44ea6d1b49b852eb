"""KL divergence of a diagonal Gaussian posterior from the standard normal prior."""

from __future__ import annotations

import torch


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag exp(log_var)) || N(0, I) ) per point, in nats.

    Per latent dimension: ``0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)``; summed over the last
    (latent) dimension, so the result has shape ``mu.shape[:-1]``. Exact, no sampling.
    """
    return 0.5 * torch.sum(mu.pow(2) + log_var.exp() - 1.0 - log_var, dim=-1)
