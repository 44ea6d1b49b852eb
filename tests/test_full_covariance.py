"""The decoder with a full covariance that depends on z (``loss.decoder_std_mode = 'full'``):
p(u|z) = N(u; mean(z), L(z) L(z)^T), one likelihood for the loss, the estimators and sample."""

from __future__ import annotations

import math

import pytest
import torch
from gradients import assert_each_models_own
from likelihoods import elbo_loss_by_hand
from torch.distributions import MultivariateNormal

import vaelab
from vaelab.cli.main import main
from vaelab.config import DataConfig, LossConfig, ModelConfig, RunConfig
from vaelab.errors import ConfigError
from vaelab.estimators import log_density
from vaelab.models import build_model
from vaelab.resolve import build_config
from vaelab.training.plan import explicit_blocker, plan_step

FULL = dict(name="iwae", k=3, decoder_std=0.5, learn_decoder_std=True, min_decoder_std=0.05,
            decoder_std_mode="full")
D = 3


def _model(mode: str = "full", standardize: bool = True, moved: bool = True):
    torch.manual_seed(0)
    cfg = RunConfig(data=DataConfig(standardize=standardize, decorrelate=standardize),
                    model=ModelConfig(in_channels=D, latent_dim=2, hidden_dims=[16, 16],
                                      prior="mixture", prior_components=3),
                    loss=LossConfig(**{**FULL, "decoder_std_mode": mode}))
    model = build_model(cfg)
    if standardize:
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(5)))
        model.set_standardization(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 0.5, 2.0]),
                                  q)
    if moved:
        with torch.no_grad():  # move L(z) off its constant, diagonal start
            model.std_head.weight.normal_(0.0, 0.3 * 16)  # the head reads h / width (16)
    return model


def _by_hand(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) in data units through torch's MultivariateNormal: u = ((x - shift) @ R) /
    scale, so log p(x|z) = log N(u; mean, L L^T) - sum log scale."""
    mean, tril = model.decode_params_internal(z)
    u = model.standardize(x)
    return MultivariateNormal(mean, scale_tril=tril).log_prob(u) - model.data_scale.log().sum()


def test_it_starts_as_the_diagonal_sigma_of_z():
    full, diag = _model(moved=False), _model("latent", moved=False)
    assert full.full_covariance and full.std_head.out_features == D + D * (D - 1) // 2
    z = torch.randn(6, 2)
    _, tril = full.decode_params_internal(z)
    _, std = diag.decode_params_internal(z)
    assert tril.shape == (6, D, D)
    assert torch.equal(tril, torch.diag_embed(std))  # below the diagonal: 0 at the start
    x = torch.randn(6, D)
    assert torch.allclose(full.log_likelihood(x, z), diag.log_likelihood(x, z), atol=1e-5)


def test_log_likelihood_is_the_multivariate_normal():
    model = _model()
    x, z = torch.randn(7, D) * 3, torch.randn(7, 2)
    _, tril = model.decode_params_internal(z)
    below = tril.tril(-1)
    assert below.abs().min() == 0 and below.abs().sum() > 0.1  # a full L, not a diagonal one
    assert (torch.diagonal(tril, dim1=-2, dim2=-1) >= 0.05).all()
    assert torch.allclose(model.log_likelihood(x, z), _by_hand(model, x, z), atol=1e-4)
    # the loss reads it too: the IWAE bound with k = 1 is the ELBO
    loss, expected = elbo_loss_by_hand(model, x, _by_hand)
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("estimator", ["iwae", "elbo", "prior-mc"])
def test_every_estimator_reads_the_full_covariance(estimator):
    model = _model()
    x = torch.randn(4, D) * 2
    got = log_density(model, x, estimator, k=1, seed=3)
    assert torch.isfinite(got).all()
    if estimator == "prior-mc":
        z = model.sample_prior(1, torch.Generator().manual_seed(3))
        assert torch.allclose(got.float(), _by_hand(model, x, z), atol=1e-4)
    with torch.no_grad():  # the same model with its entries below the diagonal set to 0
        model.std_head.weight[D:].zero_()
        model.std_head.bias[D:].zero_()
    assert not torch.allclose(log_density(model, x, estimator, k=1, seed=3), got)


def test_sample_draws_its_noise_with_the_covariance():
    model = _model(standardize=False)
    target = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.4]])
    with torch.no_grad():  # L(z) the same for every z: the target factor
        model.std_head.weight.zero_()
        model.std_head.bias[:D] = torch.log(torch.expm1(torch.diagonal(target) - 0.05))
        model.std_head.bias[D:] = target[tuple(torch.tril_indices(D, D, -1))]
    _, tril = model.decode_params_internal(torch.randn(2, 2))
    assert torch.allclose(tril[0], target, atol=1e-5)
    noisy = model.sample(20_000, generator=torch.Generator().manual_seed(0))
    means = model.sample(20_000, generator=torch.Generator().manual_seed(0), noise=False)
    cov = torch.cov((noisy - means).T)  # the same z draws: what is left is the decoder noise
    assert torch.allclose(cov, target @ target.T, atol=0.05)


def test_gradients_reach_the_entries_below_the_diagonal():
    model = _model()
    out = model(torch.randn(32, D), samples=3)
    model.loss(out).loss.backward()
    assert model.std_head.weight.grad[D:].abs().sum() > 0


def test_it_trains_on_explicit_gradients_that_are_autograds():
    """The closed-form step (models/explicit.py) takes L(z): in float64 its loss terms and
    every gradient (the head's entries below the diagonal included) are autograd's, for one
    model with rotated columns and for a stack of models, each its own."""
    from torch.func import stack_module_state

    from vaelab.models.explicit import ExplicitStep, split_parameters

    cfg = build_config("default", None, {"decoder_std_mode": "full", "data": "swiss_roll_3d"})
    assert explicit_blocker(cfg) is None
    assert plan_step([cfg], torch.device("cpu"), fixed_set=False).gradients == "explicit"

    model = _model().double()
    step = ExplicitStep.for_model(model)
    x = torch.randn(40, D, dtype=torch.float64) * 3
    eps = torch.randn(3, 40, 2, dtype=torch.float64)
    terms = model.loss(model(x, eps=eps, samples=3))
    reference = torch.autograd.grad(terms.loss, list(model.parameters()))
    got, _ = step(x, eps, 1.0)
    torch.testing.assert_close(got, torch.stack(tuple(terms)).detach(), rtol=1e-12, atol=1e-12)
    for (name, p), g in zip(model.named_parameters(), reference, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12, msg=name)
    assert model.std_head.weight.grad[D:].abs().sum() > 0  # L's entries below the diagonal

    models = []
    for i in range(3):
        m = _model().double()
        with torch.no_grad():
            m.std_head.weight.normal_(0.0, 0.3 * 16, generator=torch.Generator().manual_seed(i))
        models.append(m)
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    xs = torch.randn(3, 40, D, dtype=torch.float64) * 3
    eps = torch.randn(3, 3, 40, 2, dtype=torch.float64)
    params, buffers = stack_module_state(models)
    net, extras = split_parameters(models[0], params, buffers)
    stacked = ExplicitStep(models[0], net, buffers["data_shift"], buffers["data_scale"],
                           extras=extras, rotation=buffers["data_rotation"])
    terms, _ = stacked(xs, eps, weights)
    assert_each_models_own(models, params, terms, xs, eps, weights, 3)
    with pytest.raises(ConfigError, match="learn_decoder_std"):
        RunConfig(loss=LossConfig(**{**FULL, "learn_decoder_std": False})).validate()


def test_a_cli_run_and_a_group_train_reload_and_evaluate(tmp_path, capsys):
    rows = torch.randn(600, D, generator=torch.Generator().manual_seed(0))
    rows = rows @ torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.4, 0.2], [0.0, 0.0, 0.3]])
    data = tmp_path / "t.csv"
    data.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows.tolist()))
    run_dir = tmp_path / "run"
    common = ["--decoder-std-mode", "full", "--steps", "60", "--no-figures", "--no-report",
              "--quiet", "--device", "cpu"]
    assert main(["train", "--data", str(data), "--out", str(run_dir), *common]) == 0, \
        capsys.readouterr().err
    run = vaelab.load(run_dir)
    assert run.config.loss.decoder_std_mode == "full" and run.model.full_covariance
    logp = run.log_prob(rows[:50], k=20)
    assert logp.shape == (50,) and torch.isfinite(logp).all()
    report = vaelab.evaluate(run, n=100, k=10, metrics=False)
    assert math.isfinite(report["nll"])
    assert run.sample(20).shape == (20, D)
    group = tmp_path / "group"
    assert main(["train", "--data", str(data), "--out", str(group), "--seeds", "2",
                 *common]) == 0, capsys.readouterr().err
    runs = [vaelab.load(group / f"seed-{i}") for i in range(2)]
    assert all(r.model.full_covariance for r in runs)
    assert not torch.equal(runs[0].model.std_head.weight, runs[1].model.std_head.weight)
