"""PyTorch's conventions: run.log_prob against ``vaelab logp``, the posterior and the prior as
torch.distributions objects, the marginal p(x) as a Distribution, vaelab.evaluate exported."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MixtureSameFamily, Normal

import vaelab
from vaelab.cli.main import main
from vaelab.distributions import VAEMarginal, log_prob
from vaelab.models.priors import PriorDistribution, build_prior
from vaelab.objectives import log_normal_diag

COLUMNS = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]


def _six_column_csv(path, n=600, seed=0):
    """A 2-D structure (a noisy circle) linearly embedded in 6 columns of mixed scales."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    base = np.column_stack((np.cos(t), np.sin(t))) + 0.05 * rng.standard_normal((n, 2))
    mix = rng.standard_normal((2, 6)) * np.array([1, 10, 0.1, 1, 5, 2])
    pts = base @ mix + 0.02 * rng.standard_normal((n, 6)) + np.arange(6) * 3.0
    np.savetxt(path, pts, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.6f")
    return pts


@pytest.fixture(scope="module")
def file_run(tmp_path_factory):
    """The default preset (IWAE, mixture prior, standardised data) on a 6-column file, short."""
    root = tmp_path_factory.mktemp("dist")
    data = root / "six.csv"
    _six_column_csv(data)
    run = vaelab.train(data=str(data), steps=300, batch_size=128, hidden_dims=[32, 32],
                       log_every=100, frame_every=0, device="cpu", compile="off",
                       progress=False, figures=False)
    run.save(root / "run")
    return run, data


def _cli_logp(run_dir, points_file, *args):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["logp", str(run_dir), "--input", str(points_file), *args]) == 0
    table = np.loadtxt(io.StringIO(buf.getvalue()), delimiter=",", skiprows=1)
    return table[:, -1]


def test_log_prob_equals_vaelab_logp(file_run, tmp_path):
    run, data = file_run
    assert run.model.standardized  # so the Jacobian of the standardisation matters
    pts = np.loadtxt(data, delimiter=",", skiprows=1)[:200]
    points_file = tmp_path / "pts.csv"
    np.savetxt(points_file, pts, delimiter=",", header=",".join(COLUMNS), comments="")
    cli = _cli_logp(run.path, points_file, "--k", "200", "--seed", "0")
    x = torch.as_tensor(pts, dtype=torch.float32)
    same = run.log_prob(x, k=200, seed=0)
    # same k and seed: the same draws, so equal up to the CSV's 9 significant digits
    np.testing.assert_allclose(same.numpy(), cli, rtol=1e-5, atol=1e-5)
    # another seed: equal within Monte Carlo error (paired over the same points)
    other = run.log_prob(x, k=200, seed=7).double().numpy()
    diff = other - cli
    se = diff.std() / math.sqrt(len(diff))
    assert abs(diff.mean()) < 5 * se + 1e-3
    assert not np.array_equal(other, cli)  # a different seed really drew other samples


def test_log_prob_includes_the_standardisation_jacobian(file_run):
    """Rescaling the data by c and the model's standardisation with it lowers log p by
    D log c per point: the density is in the data's own units."""
    run, data = file_run
    model = run.model
    x = torch.as_tensor(np.loadtxt(data, delimiter=",", skiprows=1)[:50], dtype=torch.float32)
    before = run.log_prob(x, k=50, seed=1)
    shift, scale = model.data_shift.clone(), model.data_scale.clone()
    try:
        model.set_standardization(shift * 10, scale * 10)
        after = run.log_prob(x * 10, k=50, seed=1)
    finally:
        model.set_standardization(shift, scale)
    torch.testing.assert_close(after, before - 6 * math.log(10), rtol=0, atol=2e-3)


def test_log_prob_shapes_dtypes_estimators_and_seeds(file_run):
    run, data = file_run
    x64 = torch.as_tensor(np.loadtxt(data, delimiter=",", skiprows=1)[:12])
    out = run.log_prob(x64, k=20)
    assert out.shape == (12,) and out.dtype == torch.float64 and out.device == x64.device
    out32 = run.log_prob(x64.float(), k=20)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out, rtol=1e-4, atol=1e-4)
    batched = run.log_prob(x64.reshape(3, 4, 6), k=20)
    assert batched.shape == (3, 4)
    torch.testing.assert_close(batched.reshape(12), out)
    # seeded: the same seed or an equally seeded generator gives the same numbers
    torch.testing.assert_close(run.log_prob(x64, k=20, seed=5), run.log_prob(x64, k=20, seed=5))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(run.log_prob(x64, k=20, generator=g1),
                               run.log_prob(x64, k=20, seed=5))
    assert not torch.equal(run.log_prob(x64, k=20, generator=g1),  # g1 was advanced
                           run.log_prob(x64, k=20, generator=g2))
    # the ELBO is below the IWAE bound on average; prior MC runs and is finite
    elbo = run.log_prob(x64, k=50, estimator="elbo")
    iwae = run.log_prob(x64, k=50, estimator="iwae")
    assert elbo.mean() < iwae.mean()
    assert torch.isfinite(run.log_prob(x64, k=50, estimator="prior-mc")).all()
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        run.log_prob(x64, estimator="nope")
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 6\]"):
        run.log_prob(x64[:, :2])
    with pytest.raises(ValueError, match="floating-point"):
        run.log_prob(x64.long())
    with pytest.raises(ValueError, match="k must be a positive integer"):
        run.log_prob(x64, k=0)


def test_log_prob_chunks_rows_in_bounded_memory(file_run):
    """A tiny budget of points x samples per chunk gives the same estimate within MC error."""
    run, data = file_run
    x = torch.as_tensor(np.loadtxt(data, delimiter=",", skiprows=1)[:100], dtype=torch.float32)
    whole = log_prob(run.model, x, k=64, seed=0).double()
    chunked = log_prob(run.model, x, k=64, seed=1, max_elements=200).double()
    diff = chunked - whole
    assert abs(diff.mean()) < 5 * diff.std() / math.sqrt(len(diff)) + 1e-3


def test_posterior_is_the_encoders_normal(file_run):
    run, data = file_run
    x = torch.as_tensor(np.loadtxt(data, delimiter=",", skiprows=1)[:9], dtype=torch.float32)
    q = run.model.posterior(x)
    mu, log_var = run.model.encode(x)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    assert q.batch_shape == (9,) and q.event_shape == (run.model.latent_dim,)
    torch.testing.assert_close(q.mean, mu)
    torch.testing.assert_close(q.stddev, torch.exp(0.5 * log_var))
    z = q.rsample((3,))
    assert z.shape == (3, 9, run.model.latent_dim)
    torch.testing.assert_close(q.log_prob(z), log_normal_diag(z, mu, log_var))
    mu.sum().backward()  # differentiable, as the model's own encoder
    assert any(p.grad is not None for p in run.model.parameters())
    run.model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", ["standard", "mixture", "flow"])
def test_prior_distribution_is_the_priors_own_density(kind):
    prior = build_prior(kind, 3, components=5, seed=2)
    with torch.no_grad():  # move a learned prior off its initial values
        for p in prior.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    dist = prior.distribution()
    assert dist.event_shape == (3,) and dist.batch_shape == ()
    expected = {"standard": Independent, "mixture": MixtureSameFamily,
                "flow": PriorDistribution}[kind]
    assert isinstance(dist, expected)
    z = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(dist.log_prob(z), prior.log_prob(z), rtol=1e-5, atol=1e-5)
    draws = dist.sample((2, 5))
    assert draws.shape == (2, 5, 3) and torch.isfinite(draws).all()


def test_flow_prior_distribution_samples_are_seeded():
    dist = build_prior("flow", 2).distribution()
    a = dist.sample((6,), generator=torch.Generator().manual_seed(3))
    b = dist.sample((6,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert not dist.has_rsample


def test_model_prior_distribution_matches_log_prior(file_run):
    run, _ = file_run
    dist = run.model.prior_distribution()
    assert isinstance(dist, MixtureSameFamily)  # the default preset's learned mixture
    z = dist.sample((50,))
    torch.testing.assert_close(dist.log_prob(z), run.model.log_prior(z), rtol=1e-5, atol=1e-5)


def test_marginal_distribution(file_run):
    run, data = file_run
    p = run.distribution(k=100, seed=4)
    assert isinstance(p, VAEMarginal) and isinstance(p, torch.distributions.Distribution)
    assert p.event_shape == (6,) and p.batch_shape == () and not p.has_rsample
    assert p.support.event_dim == 1
    draws = p.sample((2, 5))
    assert draws.shape == (2, 5, 6)
    # the same seed gives the same sequence; run.sample's points for that seed come first
    again = run.distribution(seed=4)
    torch.testing.assert_close(again.sample((2, 5)), draws)
    assert not torch.equal(again.sample((2, 5)), draws)  # its generator moves on
    torch.testing.assert_close(draws.reshape(10, 6), run.sample(10, seed=4))
    torch.testing.assert_close(run.distribution(seed=4, noise=False).sample((10,)),
                               run.sample(10, seed=4, noise=False))
    x = torch.as_tensor(np.loadtxt(data, delimiter=",", skiprows=1)[:20], dtype=torch.float32)
    torch.testing.assert_close(p.log_prob(x), run.log_prob(x, k=100, seed=4))
    with pytest.raises(ValueError, match="unknown estimator"):
        run.distribution(estimator="exact")


def test_evaluate_is_exported_at_the_top_level():
    from vaelab.evaluation import evaluate

    assert vaelab.evaluate is evaluate
    assert "evaluate" in vaelab.__all__
    with pytest.raises(AttributeError):
        vaelab.no_such_name  # noqa: B018
