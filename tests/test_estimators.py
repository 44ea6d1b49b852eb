"""The log p(x) estimators on probabilistic PCA, whose log p(x) is known in closed form.

p(z) = N(0, I_L), p(x|z) = N(W z + b, s^2 I_D)  =>  p(x) = N(b, W W^T + s^2 I).
With orthogonal columns of W the exact posterior is diagonal,
q*(z|x) = N(M^-1 W^T (x - b), s^2 M^-1), M = W^T W + s^2 I, so an encoder can be exact
(then every importance weight equals p(x)), or deliberately wrong (then the bounds are loose).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from vaelab.estimators import elbo, iwae, log_density, prior_mc
from vaelab.models.base import BaseVAE, Encoding

D, L, S = 3, 2, 0.5


class PPCA(BaseVAE):
    """A linear-Gaussian VAE with an exact (or a shifted, inflated) posterior."""

    def __init__(self, mean_error: float = 0.0, var_factor: float = 1.0) -> None:
        super().__init__(D, L)
        q, _ = torch.linalg.qr(torch.randn(D, L, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(0)))
        self.W = nn.Parameter(q * torch.tensor([2.0, 0.7], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.configure_likelihood(torch.full((D,), S, dtype=torch.float64))
        self.obs_std_fixed = self.obs_std_fixed.double()
        self.data_shift, self.data_scale = self.data_shift.double(), self.data_scale.double()
        m_diag = (self.W.detach() ** 2).sum(0) + S**2
        self.post_gain = self.W.detach() / m_diag  # M^-1 W^T, as columns
        self.post_var = S**2 / m_diag
        self.mean_error, self.var_factor = mean_error, var_factor

    def encode_internal(self, u):
        mu = (u - self.b) @ self.post_gain + self.mean_error
        log_var = torch.log(self.post_var * self.var_factor).expand(mu.shape)
        return Encoding(mu, log_var)

    def decode_internal(self, z):
        return z @ self.W.T + self.b

    def exact_log_prob(self, x):
        u = self.standardize(x)
        cov = self.W @ self.W.T + S**2 * torch.eye(D, dtype=torch.float64)
        return MultivariateNormal(self.b, cov).log_prob(u) + self.log_jacobian()

    def draw(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, L, generator=g, dtype=torch.float64)
        u = self.decode_internal(z) + S * torch.randn(n, D, generator=g, dtype=torch.float64)
        return self.unstandardize(u).detach()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_exact_posterior_makes_every_estimate_exact():
    model = PPCA()
    x = model.draw(200)
    exact = model.exact_log_prob(x).detach()
    # every importance weight equals p(x): IWAE is exact for any K, even K = 1
    assert torch.allclose(iwae(model, x, 1, generator=_gen()), exact, atol=1e-9)
    assert torch.allclose(iwae(model, x, 37, generator=_gen(), max_elements=50), exact,
                          atol=1e-9)
    # the ELBO is exact in expectation (its log-likelihood term is Monte Carlo)
    assert elbo(model, x, 4000, generator=_gen()).mean().item() == pytest.approx(
        exact.mean().item(), abs=0.01)


def test_standardisation_jacobian_is_included():
    model = PPCA()
    model.set_standardization(torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64),
                              torch.tensor([3.0, 0.5, 10.0], dtype=torch.float64))
    x = model.draw(100)
    exact = model.exact_log_prob(x).detach()
    # exact_log_prob adds -sum(log scale) itself; check that against the density of x
    # computed directly in data units: x = shift + scale * u, u ~ N(b, C)
    cov = model.W @ model.W.T + S**2 * torch.eye(D, dtype=torch.float64)
    scale = torch.diag(model.data_scale)
    direct = MultivariateNormal(model.data_shift + model.data_scale * model.b,
                                scale @ cov @ scale).log_prob(x)
    assert torch.allclose(exact, direct.detach(), atol=1e-9)
    assert torch.allclose(iwae(model, x, 3, generator=_gen()), exact, atol=1e-9)


def test_iwae_rises_with_k_towards_log_p_and_stays_above_the_elbo():
    model = PPCA(mean_error=0.3, var_factor=1.8)
    x = model.draw(1000)
    exact = model.exact_log_prob(x).detach().mean().item()
    elbo_points = elbo(model, x, 200, generator=_gen())
    elbo_mean = elbo_points.mean().item()
    assert elbo_mean < exact - 0.05  # a wrong posterior leaves a real gap
    one = iwae(model, x, 1, generator=_gen(1))
    # K = 1 is a one-sample ELBO: equal in expectation (paired, within 4 standard errors)
    diff = one - elbo_points
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff))
    means = [one.mean().item()] + [iwae(model, x, k, generator=_gen(k)).mean().item()
                                   for k in (10, 100, 1000)]
    assert all(m >= elbo_mean - 0.02 for m in means)
    # rises with K (in expectation: once converged, only sampling noise of ~1e-3 remains) ...
    assert means[1] > means[0] + 0.1 and means[2] > means[1]
    assert means[3] > means[2] - 0.005
    assert all(m <= exact + 0.01 for m in means)  # ... stays below log p(x) on average ...
    assert means[-1] == pytest.approx(exact, abs=0.01)  # ... and reaches it


def test_prior_monte_carlo_converges_to_log_p():
    model = PPCA()
    x = model.draw(100)
    exact = model.exact_log_prob(x).detach()
    est = prior_mc(model, x, 20_000, generator=_gen(), max_elements=1 << 15)
    # the slow route: 20,000 prior draws still leave ~0.02 nats of error per point
    assert (est - exact).abs().mean().item() < 0.05
    rough = prior_mc(model, x, 10, generator=_gen())
    assert (rough - exact).abs().mean().item() > (est - exact).abs().mean().item()


def test_log_density_dispatches_validates_and_is_seeded():
    model = PPCA(mean_error=0.3)
    x = model.draw(20)
    a = log_density(model, x, "iwae", k=50, seed=3)
    assert torch.equal(a, log_density(model, x, "iwae", k=50, seed=3))
    assert not torch.equal(a, log_density(model, x, "iwae", k=50, seed=4))
    assert log_density(model, x, "elbo", k=5).shape == (20,)
    assert log_density(model, x, "prior-mc", k=5).dtype == torch.float64
    with pytest.raises(ValueError, match="unknown estimator"):
        log_density(model, x, "exact")
    with pytest.raises(ValueError, match="k must be"):
        log_density(model, x, "iwae", k=0)
    with pytest.raises(ValueError, match="shape"):
        log_density(model, x[:, :2], "iwae", k=5)


def test_large_k_runs_in_bounded_chunks():
    model = PPCA(mean_error=0.2, var_factor=1.5)
    x = model.draw(30)
    est = iwae(model, x, 10_000, generator=_gen(), max_elements=4096)
    assert est.shape == (30,) and torch.isfinite(est).all()
    assert (est - model.exact_log_prob(x).detach()).abs().max().item() < 0.02
    assert math.isfinite(est.sum().item())


@pytest.mark.parametrize("estimator, k", [("iwae", 20), ("elbo", 20), ("prior-mc", 500)])
def test_cache_sized_blocks_give_the_values_of_one_pass(monkeypatch, estimator, k):
    """On the CPU a chunk's network passes run in cache-sized blocks: the chunks (and so the
    random draws) are unchanged and the rows are independent, so the values are those of one
    pass over the whole chunk."""
    import sys

    module = sys.modules["vaelab.estimators.log_density"]
    model = PPCA(mean_error=0.2, var_factor=1.5)
    model.prior.is_standard = False  # the sampled KL too, for the ELBO
    x = model.draw(100)
    one_pass = log_density(model, x, estimator, k=k, seed=4)
    rows = []
    decode = model.decode_params_internal
    monkeypatch.setattr(model, "decode_params_internal",
                        lambda z: rows.append(math.prod(z.shape[:-1])) or decode(z))
    monkeypatch.setattr(module, "CACHE_VALUES", 3 * 64)  # blocks of 64 rows
    blocked = log_density(model, x, estimator, k=k, seed=4)
    assert len(rows) > 5 and max(rows) <= 64
    torch.testing.assert_close(blocked, one_pass, rtol=1e-12, atol=1e-12)
