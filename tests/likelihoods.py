"""Test helper for a decoder likelihood written out by hand: the loss it implies."""

from __future__ import annotations

from collections.abc import Callable

import torch


def elbo_loss_by_hand(model, x: torch.Tensor,
                      log_lik: Callable[[object, torch.Tensor, torch.Tensor], torch.Tensor]
                      ) -> tuple[float, float]:
    """(the model's training loss, the same written out) for the IWAE bound with k = 1, which
    is the ELBO: -mean(log p(x|z) + log p(z) - log q(z|x)) at one posterior draw, with
    ``log_lik(model, x, z)`` the hand-written log p(x|z) in data units."""
    model.configure_objective("iwae", 1.0, 1)
    out = model(x, torch.Generator().manual_seed(1))
    terms = model.loss(out)
    log_q = torch.distributions.Normal(out.mu, torch.exp(0.5 * out.log_var)).log_prob(out.z)
    expected = -(log_lik(model, x, out.z) + model.log_prior(out.z) - log_q.sum(-1)).mean()
    return terms.loss.item(), expected.item()
