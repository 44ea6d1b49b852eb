"""SimpleVAE: the seed's architecture, shapes, named outputs, the reparameterisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaelab.config import LossConfig, ModelConfig, RunConfig
from vaelab.errors import ConfigError
from vaelab.models import SimpleVAE, VAEOutput, build_model
from vaelab.objectives import kl_to_standard_normal


def test_shapes_of_every_method():
    model = SimpleVAE(in_channels=3, latent_dim=4, hidden_dims=[16, 8])
    x = torch.randn(10, 3)
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (10, 4)
    assert model.decode(torch.randn(7, 4)).shape == (7, 3)
    out = model(x)
    assert isinstance(out, VAEOutput)
    assert out.x_hat.shape == (10, 3) and out.z.shape == (10, 4) and out.x is x
    assert model.sample(11).shape == (11, 3)
    assert model.generate(x).shape == (10, 3)


def test_seed_architecture_layer_by_layer():
    """Same names, shapes and activations as the blog's SimpleVAE with its defaults."""
    model = SimpleVAE()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if k not in ("data_shift", "data_scale", "obs_std_fixed")}  # vaelab's buffers
    assert shapes == {
        "encoder.0.0.weight": (128, 2), "encoder.0.0.bias": (128,),
        "encoder.1.0.weight": (128, 128), "encoder.1.0.bias": (128,),
        "fc_mu.weight": (2, 128), "fc_mu.bias": (2,),
        "fc_var.weight": (2, 128), "fc_var.bias": (2,),
        "decoder_input.weight": (128, 2), "decoder_input.bias": (128,),
        "decoder.0.0.weight": (128, 128), "decoder.0.0.bias": (128,),
        "decoder.1.0.weight": (128, 128), "decoder.1.0.bias": (128,),
        "final_layer.0.weight": (2, 128), "final_layer.0.bias": (2,),
    }
    assert isinstance(model.encoder[0][1], nn.LeakyReLU)
    assert isinstance(model.decoder[1][1], nn.LeakyReLU)
    assert isinstance(model.decoder_input, nn.Linear)  # no activation after it, as in the seed
    assert len(model.final_layer) == 1  # a bare final Linear


def test_hidden_dims_of_the_caller_are_not_mutated():
    dims = [64, 32]
    SimpleVAE(hidden_dims=dims)
    assert dims == [64, 32]


def test_asymmetric_widths_mirror_the_encoder():
    model = SimpleVAE(in_channels=2, latent_dim=2, hidden_dims=[64, 32])
    enc = [m.out_features for m in model.encoder.modules() if isinstance(m, nn.Linear)]
    dec = [m.out_features for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    assert enc == [64, 32]
    assert model.decoder_input.out_features == 32 and dec == [32, 64]


def test_gradients_flow_through_the_reparameterisation():
    mu = torch.zeros(5, 2, requires_grad=True)
    log_var = torch.zeros(5, 2, requires_grad=True)
    z = SimpleVAE.reparameterize(mu, log_var, torch.Generator().manual_seed(0))
    (z ** 2).sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert log_var.grad is not None and log_var.grad.abs().sum() > 0
    # and through a whole model to every parameter
    model = SimpleVAE()
    out = model(torch.randn(16, 2))
    model.loss(out).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_reparameterisation_has_the_right_distribution():
    mu = torch.full((200_000, 1), 3.0)
    log_var = torch.full((200_000, 1), 2 * torch.log(torch.tensor(0.5)).item())
    z = SimpleVAE.reparameterize(mu, log_var, torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 3.0) < 0.01
    assert abs(z.std().item() - 0.5) < 0.01


def test_sample_is_fixed_by_the_generator():
    model = SimpleVAE()
    a = model.sample(5, torch.Generator().manual_seed(1))
    b = model.sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_build_model_checks_its_config():
    with pytest.raises(ConfigError, match="in_channels"):
        build_model(RunConfig())
    with pytest.raises(ConfigError, match="simple"):
        build_model(RunConfig(model=ModelConfig(name="complex", in_channels=2)))
    assert isinstance(build_model(RunConfig(model=ModelConfig(in_channels=2))), SimpleVAE)


def test_seed_model_likelihood_is_the_implied_gaussian():
    """The seed loss's model: sigma^2 = D * kld_weight / 2, so loss/w + const = -ELBO."""
    cfg = RunConfig(model=ModelConfig(in_channels=2), loss=LossConfig(kld_weight=0.5))
    model = build_model(cfg)
    assert torch.allclose(model.obs_std(), torch.full((2,), math.sqrt(2 * 0.5 / 2)))
    x = torch.randn(64, 2)
    out = model(x, torch.Generator().manual_seed(0))
    terms = model.loss(out)
    log_lik = model.log_likelihood(x, out.z)
    kl = kl_to_standard_normal(out.mu, out.log_var)
    assert terms.neg_elbo.item() == pytest.approx(-(log_lik - kl).mean().item(), rel=1e-5)


def test_gaussian_objective_with_learned_std_and_its_floor():
    cfg = RunConfig(model=ModelConfig(in_channels=2),
                    loss=LossConfig(name="gaussian", decoder_std=0.5, learn_decoder_std=True,
                                    min_decoder_std=0.05))
    model = build_model(cfg)
    assert "obs_std_raw" in dict(model.named_parameters())
    assert torch.allclose(model.obs_std(), torch.full((2,), 0.5))
    x = torch.randn(32, 2)
    out = model(x)
    terms = model.loss(out)
    assert terms.neg_elbo.item() == pytest.approx(
        (terms.reconstruction + terms.kld).item(), rel=1e-6)
    terms.loss.backward()
    assert model.obs_std_raw.grad is not None and model.obs_std_raw.grad.abs().sum() > 0
    with torch.no_grad():
        model.obs_std_raw.fill_(-50.0)  # however small the raw value, sigma stays >= floor
    assert (model.obs_std() >= 0.05).all()
    assert torch.isfinite(model.log_likelihood(x, out.z)).all()


def test_standardisation_keeps_outputs_in_data_units():
    model = SimpleVAE()
    shift, scale = torch.tensor([10.0, -5.0]), torch.tensor([4.0, 0.5])
    model.set_standardization(shift, scale)
    x = shift + scale * torch.randn(100, 2)
    mu_a = model.encode(x).mu
    assert torch.allclose(mu_a, model.encode_internal((x - shift) / scale).mu)
    z = torch.randn(5, 2)
    assert torch.allclose(model.decode(z), shift + scale * model.decode_internal(z))
    # log p(x|z) in data units carries the Jacobian -sum(log scale)
    u_ll = model.log_likelihood_internal((x[:5] - shift) / scale, model.decode_internal(z))
    assert torch.allclose(model.log_likelihood(x[:5], z), u_ll - torch.log(scale).sum())
    with pytest.raises(ValueError):
        model.set_standardization(shift, torch.tensor([1.0, 0.0]))
