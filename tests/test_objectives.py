"""The seed's loss: by hand, against torch.distributions, and as a Gaussian-decoder ELBO."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaelab.objectives import implied_decoder_variance, kl_to_standard_normal, seed_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64) * 5
    x_hat = x + torch.randn(8, 2, generator=g, dtype=torch.float64)
    mu = torch.randn(8, 3, generator=g, dtype=torch.float64)
    log_var = torch.randn(8, 3, generator=g, dtype=torch.float64)
    return x, x_hat, mu, log_var


def test_kl_matches_torch_distributions(batch):
    _, _, mu, log_var = batch
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mu, log_var), ref, atol=1e-12)
    assert (kl_to_standard_normal(mu, log_var) >= 0).all()
    assert kl_to_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_loss_equals_a_hand_computation(batch):
    x, x_hat, mu, log_var = batch
    n, d = x.shape
    mse = sum(float(x_hat[i, j] - x[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    kl = sum(
        -0.5 * sum(1 + float(log_var[i, k]) - float(mu[i, k]) ** 2 - math.exp(log_var[i, k])
                   for k in range(mu.shape[1]))
        for i in range(n)
    ) / n
    for w in (1.0, 0.25):
        terms = seed_loss(x, x_hat, mu, log_var, kld_weight=w)
        assert terms.reconstruction.item() == pytest.approx(mse, rel=1e-12)
        assert terms.kld.item() == pytest.approx(kl, rel=1e-12)
        assert terms.loss.item() == pytest.approx(mse + w * kl, rel=1e-12)
        assert terms.reconstruction.item() > 0 and terms.kld.item() > 0


def test_seed_loss_is_a_scaled_negative_elbo_of_a_gaussian_decoder(batch):
    """loss / w + (D/2) log(2 pi s^2) = -[log N(x; x_hat, s^2 I) - KL] with s^2 = D w / 2."""
    x, x_hat, mu, log_var = batch
    d = x.shape[1]
    for w in (1.0, 0.1, 3.0):
        s2 = implied_decoder_variance(d, w)
        assert s2 == d * w / 2
        log_lik = Normal(x_hat, math.sqrt(s2)).log_prob(x).sum(-1)
        kl = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(-1)
        neg_elbo = -(log_lik - kl).mean()
        terms = seed_loss(x, x_hat, mu, log_var, kld_weight=w)
        assert terms.neg_elbo.item() == pytest.approx(neg_elbo.item(), rel=1e-10)
        assert (terms.loss / w + 0.5 * d * math.log(2 * math.pi * s2)).item() == pytest.approx(
            neg_elbo.item(), rel=1e-10)


def test_seed_loss_at_zero_kl_weight_has_no_elbo_reading_but_trains():
    # the first step of a KL warm-up has weight 0: decoder variance 0, so -ELBO = +inf
    from vaelab.objectives.seed_loss import seed_loss
    x, x_hat = torch.randn(8, 2), torch.randn(8, 2)
    mu, log_var = torch.randn(8, 2), torch.randn(8, 2)
    for w in (0.0, torch.tensor(0.0)):
        terms = seed_loss(x, x_hat, mu, log_var, w)
        assert torch.isfinite(terms.loss) and terms.neg_elbo == float("inf")
    assert torch.isfinite(seed_loss(x, x_hat, mu, log_var, torch.tensor(0.5)).neg_elbo)


@pytest.mark.parametrize("gradients", ["explicit", "autograd"])
def test_a_kl_warmup_from_zero_trains_the_seed_loss(gradients):
    from vaelab.resolve import build_config
    from vaelab.training.loop import fit
    cfg = build_config("seed", settings={"steps": 30, "kl_warmup": 0.5, "log_every": 10,
                                         "frame_every": 0, "device": "cpu",
                                         "gradients": gradients})
    result = fit(cfg, progress=False)
    assert result.metrics[0]["neg_elbo"] == float("inf")  # step 1's weight is 0
    assert all(torch.isfinite(torch.tensor(r["neg_elbo"])) for r in result.metrics[1:])
