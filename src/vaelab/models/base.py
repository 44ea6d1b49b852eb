"""The VAE interface every vaelab model implements.

Named outputs only: :class:`Encoding` and :class:`VAEOutput` are NamedTuples, so
``out.mu`` reads what it says (and they still work with ``torch.compile`` and ``vmap``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import nn

from vaelab.objectives.seed_loss import LossTerms, seed_loss


class Encoding(NamedTuple):
    """Parameters of q(z|x) = N(mu, diag exp(log_var))."""

    mu: torch.Tensor
    log_var: torch.Tensor


class VAEOutput(NamedTuple):
    """One pass x -> q(z|x) -> z -> x_hat."""

    x_hat: torch.Tensor  # decoder output for the sampled z
    x: torch.Tensor  # the input
    mu: torch.Tensor  # posterior mean
    log_var: torch.Tensor  # posterior log-variance
    z: torch.Tensor  # reparameterised sample from q(z|x)


class BaseVAE(nn.Module, ABC):
    """Encoder q(z|x), decoder x_hat(z), prior p(z) = N(0, I)."""

    in_channels: int
    latent_dim: int

    @abstractmethod
    def encode(self, x: torch.Tensor) -> Encoding:
        """Posterior parameters for a batch ``[N, in_channels]``."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean for latent codes ``[N, latent_dim]``."""

    @staticmethod
    def reparameterize(mu: torch.Tensor, log_var: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(log_var / 2) * eps, eps ~ N(0, I): differentiable in mu and log_var."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * log_var) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var, generator)
        return VAEOutput(x_hat=self.decode(z), x=x, mu=mu, log_var=log_var, z=z)

    def loss(self, out: VAEOutput, kld_weight: float = 1.0) -> LossTerms:
        """The seed's loss, MSE + kld_weight x KL (see :mod:`vaelab.objectives.seed_loss`)."""
        return seed_loss(out.x, out.x_hat, out.mu, out.log_var, kld_weight)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Generate ``n`` points: decode z ~ N(0, I). Returns decoder means, as the seed does."""
        if device is None:
            device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(z)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruct ``x``: encode, sample z from q(z|x), decode."""
        return self.forward(x, generator).x_hat
