"""The decoder's sigma as a function of z (``loss.decoder_std_mode = 'latent'``): one likelihood
for the loss, the estimators and ``sample``; its floor; its config checks; the step plan; and a
short run through the command line that reloads and evaluates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from likelihoods import elbo_loss_by_hand

import vaelab
from vaelab.cli.main import main
from vaelab.config import DataConfig, LossConfig, ModelConfig, RunConfig
from vaelab.errors import ConfigError
from vaelab.estimators import log_density
from vaelab.models import build_model
from vaelab.resolve import build_config
from vaelab.training.plan import AUTOGRAD, explicit_blocker, plan_step

LATENT = dict(name="iwae", k=3, decoder_std=0.5, learn_decoder_std=True, min_decoder_std=0.05,
              decoder_std_mode="latent")


def _model(standardize: bool = True, **loss):
    torch.manual_seed(0)
    cfg = RunConfig(data=DataConfig(standardize=standardize),
                    model=ModelConfig(in_channels=2, latent_dim=2, hidden_dims=[16, 16],
                                      prior="mixture", prior_components=3),
                    loss=LossConfig(**{**LATENT, **loss}))
    model = build_model(cfg)
    if standardize:
        model.set_standardization(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))
    with torch.no_grad():  # move sigma(z) off its constant start
        model.std_head.weight.normal_(0.0, 0.3 * 16)  # the head reads h / width (16)
    return model


def _by_hand(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log N(x; scale*mean(z)+shift, diag (scale*sigma(z))^2) in data units, written out."""
    h = model.decoder(model.decoder_input(z))
    mean = model.final_layer(h) * model.data_scale + model.data_shift
    std = (0.05 + F.softplus(model.std_head(h / h.shape[-1]))) * model.data_scale
    return (-0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_sigma_of_z_starts_at_decoder_std_and_varies_with_z():
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(in_channels=2), loss=LossConfig(**LATENT))
    model = build_model(cfg)
    assert model.std_depends_on_z and "obs_std_raw" not in dict(model.named_parameters())
    _, std = model.decode_params_internal(torch.randn(5, 2))
    assert std.shape == (5, 2) and torch.allclose(std, torch.full((5, 2), 0.5))
    with pytest.raises(ValueError, match="depends on z"):
        model.obs_std()
    moved = _model()
    _, std = moved.decode_params_internal(torch.randn(50, 2))
    assert std.std(0).min() > 1e-3  # a function of z, not one value


def test_log_likelihood_is_the_hand_written_gaussian():
    model = _model()
    x, z = torch.randn(7, 2) * 3, torch.randn(7, 2)
    assert torch.allclose(model.log_likelihood(x, z), _by_hand(model, x, z), atol=1e-5)
    # the loss's log-likelihood is that one too: the IWAE bound with k = 1 is the ELBO
    loss, expected = elbo_loss_by_hand(model, x, _by_hand)
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("estimator", ["iwae", "elbo", "prior-mc"])
def test_every_estimator_reads_sigma_of_z(estimator):
    """With k = 1 and the same seed each estimator is one log-weight: rebuilt by hand."""
    model = _model()
    x = torch.randn(4, 2) * 2
    got = log_density(model, x, estimator, k=1, seed=3)
    assert torch.isfinite(got).all()
    if estimator == "prior-mc":
        gen = torch.Generator().manual_seed(3)
        z = model.sample_prior(1, gen)
        want = _by_hand(model, x, z)
        assert torch.allclose(got.float(), want, atol=1e-4)
    # the global-sigma model at sigma(z)'s bias gives another answer: sigma(z) is what is read
    with torch.no_grad():
        model.std_head.weight.zero_()
        model.std_head.bias.fill_(10.0)
    wide = log_density(model, x, estimator, k=1, seed=3)
    assert not torch.allclose(wide, got)


def test_sample_draws_with_sigma_of_z():
    model = _model(standardize=False)
    with torch.no_grad():
        model.std_head.weight.zero_()
        model.std_head.bias.fill_(5.0)  # sigma = 0.05 + softplus(5) ~ 5.06
    gen = torch.Generator().manual_seed(0)
    z = model.sample_prior(4000, torch.Generator().manual_seed(0))
    means = model.decode(z)
    wide = model.sample(4000, generator=gen)
    assert wide.std(0).min() > 4.0 > means.std(0).max() + 1.0
    with torch.no_grad():
        model.std_head.bias.fill_(-30.0)  # sigma at its floor, 0.05
    narrow = model.sample(4000, generator=torch.Generator().manual_seed(0))
    spread = (narrow - model.sample(4000, generator=torch.Generator().manual_seed(0),
                                    noise=False)).std(0)
    assert torch.allclose(spread, torch.full((2,), 0.05), rtol=0.1)


def test_the_floor_holds_and_the_likelihood_stays_finite():
    model = _model()
    with torch.no_grad():
        model.std_head.weight.zero_()
        model.std_head.bias.fill_(-1e4)
    _, std = model.decode_params_internal(torch.randn(100, 2) * 10)
    assert (std >= 0.05).all()
    x = torch.randn(8, 2)
    assert torch.isfinite(model.log_likelihood(x, torch.randn(8, 2))).all()
    out = model(x)
    assert torch.isfinite(model.loss(out).loss)


def test_gradients_reach_the_head():
    model = _model()
    out = model(torch.randn(32, 2), samples=3)
    model.loss(out).loss.backward()
    assert model.std_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss, message", [
    (dict(name="seed_mse", decoder_std=None, learn_decoder_std=False, k=1),
     "gaussian' or 'iwae"),
    (dict(learn_decoder_std=False), "learn_decoder_std"),
    (dict(min_decoder_std=0.0), "min_decoder_std > 0"),
    (dict(decoder_std_mode="per_dimension"), "is not one of: global, latent, full"),
])
def test_combinations_that_make_no_sense_are_refused(loss, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(loss=LossConfig(**{**LATENT, **loss})).validate()


def test_explicit_gradients_cover_it_with_iwae_and_refuse_it_with_the_elbo():
    cfg = build_config("default", None, {"decoder_std_mode": "latent"})
    assert explicit_blocker(cfg) is None  # the iwae bound: written out (tests/test_explicit.py)
    plan = plan_step([cfg], torch.device("cpu"), fixed_set=False)
    assert plan.gradients != AUTOGRAD
    elbo = build_config("default", None, {"decoder_std_mode": "latent", "loss": "gaussian",
                                          "iwae_k": 1})
    assert plan_step([elbo], torch.device("cpu"), fixed_set=False).gradients == AUTOGRAD
    explicit = build_config("default", None, {"decoder_std_mode": "latent", "loss": "gaussian",
                                              "iwae_k": 1, "gradients": "explicit"})
    with pytest.raises(ConfigError, match="closed-form"):
        plan_step([explicit], torch.device("cpu"), fixed_set=False)


def test_a_short_cli_run_trains_reloads_and_evaluates(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--data", "checkerboard", "--decoder-std-mode", "latent",
                 "--steps", "50", "--out", str(run_dir), "--no-figures", "--no-report",
                 "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    run = vaelab.load(run_dir)
    assert run.config.loss.decoder_std_mode == "latent" and run.model.std_depends_on_z
    report = vaelab.evaluate(run, n=200, k=10, metrics=False)
    assert math.isfinite(report["nll_gap"])
    assert run.sample(20).shape == (20, 2)
