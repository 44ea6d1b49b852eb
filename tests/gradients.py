"""Test helper for a stacked step's gradients: each model's are what autograd gives it alone."""

from __future__ import annotations

import torch


def assert_each_models_own(models: list, params: dict[str, torch.Tensor], terms: torch.Tensor,
                           x: torch.Tensor, eps: torch.Tensor, weights: torch.Tensor,
                           samples: int) -> None:
    """Model i's loss terms (``terms[i]``) and stored gradients (``params[name].grad[i]``), from
    a step on stacked weights, equal those autograd gives model i alone on ``x[i]`` and
    ``eps[i]`` with ``samples`` draws and KL weight ``weights[i]`` (float64 tolerances)."""
    for i, m in enumerate(models):
        own = m.loss(m(x[i], eps=eps[i], samples=samples), kld_weight=float(weights[i]))
        torch.testing.assert_close(terms[i], torch.stack(tuple(own)).detach(), rtol=1e-12,
                                   atol=1e-12)
        grads = torch.autograd.grad(own.loss, list(m.parameters()))
        for (name, _), g in zip(m.named_parameters(), grads, strict=True):
            torch.testing.assert_close(params[name].grad[i], g, rtol=1e-10, atol=1e-12,
                                       msg=name)
