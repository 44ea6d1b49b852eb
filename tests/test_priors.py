"""Latent priors: normalised densities, exact flow inverse/log-det, sampling that matches
log_prob and leaves the global RNG alone, batch dimensions, and learning by maximum likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.models.priors import (
    PRIORS,
    FlowPrior,
    MixturePrior,
    Prior,
    StandardNormalPrior,
    build_prior,
)


def perturb(prior: Prior, scale: float = 0.3, seed: int = 1) -> Prior:
    """Move every parameter by seeded Gaussian noise so the density is not a trivial one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.parameters():
            # drawn in float64 whatever the dtype, so float32 and float64 copies agree
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return prior


def make(kind: str, d: int = 2, dtype: torch.dtype = torch.float64) -> Prior:
    """A small prior of each kind, perturbed, in ``dtype``. (The flow gets a smaller
    perturbation: at 0.3 its tails reach far outside the [-8, 8]^2 test grid.)"""
    prior = build_prior(kind, d, components=5, layers=4, hidden=16).to(dtype)
    return perturb(prior, scale=0.15 if kind == "flow" else 0.3)


def grid_2d(lo: float = -8.0, hi: float = 8.0, n: int = 401) -> tuple[torch.Tensor, float]:
    """Points of a regular grid over [lo, hi]^2 ([n*n, 2], float64) and the cell area."""
    axis = torch.linspace(lo, hi, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1), float(axis[1] - axis[0]) ** 2


def test_standard_and_untrained_flow_are_standard_normal():
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    std = StandardNormalPrior(3)
    assert std.is_standard
    torch.testing.assert_close(std.log_prob(z), expected, rtol=0, atol=1e-6)
    flow = FlowPrior(3, layers=3, hidden=8)
    assert not flow.is_standard
    torch.testing.assert_close(flow.log_prob(z), expected, rtol=0, atol=1e-6)
    eps, log_det = flow.inverse(z)
    torch.testing.assert_close(eps, z, rtol=0, atol=0)
    assert torch.all(log_det == 0)


@pytest.mark.parametrize("kind", PRIORS)
def test_log_prob_integrates_to_one_in_2d(kind):
    prior = make(kind)
    points, area = grid_2d()
    with torch.no_grad():
        mass = prior.log_prob(points).exp().sum().item() * area
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_mixture_log_prob_integrates_to_one_in_1d():
    prior = make("mixture", d=1)
    axis = torch.linspace(-12.0, 12.0, 4801, dtype=torch.float64)
    with torch.no_grad():
        mass = prior.log_prob(axis[:, None]).exp().sum().item() * float(axis[1] - axis[0])
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_perturbed_priors_are_not_standard_normal():
    """The tests above would be weak if the perturbation did nothing."""
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = StandardNormalPrior(2).log_prob(z)
    for kind in ("mixture", "flow"):
        with torch.no_grad():
            assert (make(kind).log_prob(z) - ref).abs().max() > 0.1


def test_flow_inverts_and_log_det_matches_autograd_jacobian():
    flow = make("flow", d=3)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        eps, inv_log_det = flow.inverse(z)
        back, fwd_log_det = flow.transform(eps)
    torch.testing.assert_close(back, z, rtol=0, atol=1e-5)
    torch.testing.assert_close(fwd_log_det, -inv_log_det, rtol=0, atol=1e-10)
    assert (eps - z).abs().max() > 0.05  # the flow is not the identity
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda x: flow.inverse(x)[0], z[i])
        _, logabsdet = torch.linalg.slogdet(jac)
        assert inv_log_det[i].item() == pytest.approx(logabsdet.item(), abs=1e-8)
        jac_f = torch.autograd.functional.jacobian(lambda x: flow.transform(x)[0], eps[i])
        assert fwd_log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac_f)[1].item(),
                                                      abs=1e-8)


@pytest.mark.parametrize("kind", PRIORS)
def test_sample_reproducible_shape_and_leaves_global_rng_alone(kind):
    prior = make(kind, d=3, dtype=torch.float32)
    before = torch.get_rng_state()
    a = prior.sample(50, generator=torch.Generator().manual_seed(7))
    b = prior.sample(50, generator=torch.Generator().manual_seed(7))
    c = prior.sample(50, generator=torch.Generator().manual_seed(8))
    d = prior.sample(50)  # generator=None: a private, non-deterministic generator
    e = prior.sample(0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), before)
    assert a.shape == c.shape == d.shape == (50, 3) and e.shape == (0, 3)
    assert a.dtype == torch.float32 and a.device == prior.device
    assert not a.requires_grad
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all() and torch.isfinite(d).all()
    f = prior.sample(4, generator=torch.Generator().manual_seed(7), device="cpu")
    assert f.device == torch.device("cpu")


@pytest.mark.parametrize("kind", PRIORS)
def test_samples_follow_log_prob(kind):
    """Mean, covariance and E[log p] of 20k samples match those computed from log_prob."""
    prior = make(kind)
    points, area = grid_2d(n=321)
    with torch.no_grad():
        logp = prior.log_prob(points)
        w = logp.exp() * area
        mean = (w[:, None] * points).sum(0)
        centred = points - mean
        cov = (w[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
        neg_entropy = (w * logp).sum()
        s = prior.sample(20_000, generator=torch.Generator().manual_seed(11))
        s_logp = prior.log_prob(s)
    assert s.dtype == torch.float64
    assert (s.mean(0) - mean).abs().max() < 0.06
    assert (torch.cov(s.T) - cov).abs().max() < 0.03 * max(1.0, cov.abs().max().item())
    assert s_logp.mean().item() == pytest.approx(neg_entropy.item(), abs=0.03)


@pytest.mark.parametrize("kind", PRIORS)
def test_log_prob_batch_dims(kind):
    prior = make(kind, d=4)
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        out = prior.log_prob(z)
        flat = prior.log_prob(z.reshape(15, 4))
        single = prior.log_prob(z[1, 2])
    assert out.shape == (3, 5) and single.shape == ()
    torch.testing.assert_close(out, flat.reshape(3, 5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(single, out[1, 2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", PRIORS)
def test_float32_and_float64(kind):
    p32 = make(kind, d=2, dtype=torch.float32)
    p64 = make(kind, d=2, dtype=torch.float64)
    z = torch.randn(20, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        lp32, lp64 = p32.log_prob(z.float()), p64.log_prob(z)
    assert lp32.dtype == torch.float32 and lp64.dtype == torch.float64
    torch.testing.assert_close(lp32.double(), lp64, rtol=0, atol=1e-4)


def two_gaussians(n: int = 1000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.5, 0.5], [2.5, -0.5]])
    which = torch.randint(0, 2, (n,), generator=gen)
    return centres[which] + 0.4 * torch.randn(n, 2, generator=gen)


@pytest.mark.parametrize("kind", ["mixture", "flow"])
def test_maximum_likelihood_fit_beats_standard_normal(kind):
    torch.set_num_threads(1)
    data = two_gaussians()
    prior = build_prior(kind, 2, components=8, layers=4, hidden=32)
    baseline = StandardNormalPrior(2).log_prob(data).mean().item()
    opt = torch.optim.Adam(prior.parameters(), lr=2e-2 if kind == "mixture" else 5e-3)
    with torch.no_grad():
        start = prior.log_prob(data).mean().item()
    for _ in range(200):
        opt.zero_grad()
        loss = -prior.log_prob(data).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = prior.log_prob(data).mean().item()
    if kind == "flow":
        assert start == pytest.approx(baseline, abs=1e-5)  # untrained flow is N(0, I)
    assert end > baseline + 2.5, (kind, baseline, end)  # about -5.2 -> -1.7


def test_build_prior_names_and_errors():
    assert PRIORS == ("standard", "mixture", "flow")
    assert isinstance(build_prior("standard", 3), StandardNormalPrior)
    mix = build_prior("mixture", 3, components=7)
    assert isinstance(mix, MixturePrior) and mix.means.shape == (7, 3)
    flow = build_prior("flow", 3, layers=5, hidden=12)
    assert isinstance(flow, FlowPrior) and len(flow.couplings) == 5
    assert flow.couplings[0].net[0].out_features == 12
    for kind in PRIORS:
        prior = build_prior(kind, 3)
        assert prior.latent_dim == 3 and prior.is_standard == (kind == "standard")
    with pytest.raises(ValueError, match="standard, mixture, flow"):
        build_prior("vamp", 2)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        build_prior("flow", 1)
    with pytest.raises(ValueError):
        build_prior("mixture", 0)
    assert isinstance(build_prior("mixture", 1), MixturePrior)


def test_construction_is_deterministic_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a, b = build_prior("flow", 3), build_prior("flow", 3)
    m1, m2 = build_prior("mixture", 3), build_prior("mixture", 3, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(m1.means, m2.means)
    assert StandardNormalPrior(2).state_dict() == {}
    assert math.isfinite(m1.log_prob(torch.zeros(3)).item())


def test_gradients_reach_every_parameter():
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(6))
    for kind in ("mixture", "flow"):
        prior = perturb(build_prior(kind, 2, components=4, layers=2, hidden=8), scale=0.1)
        prior.log_prob(z).sum().backward()
        for name, p in prior.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (kind, name)
