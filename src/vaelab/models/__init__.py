"""VAE models: the interface and its implementations, built by name from a config."""

import math

import torch

from vaelab.config import RunConfig
from vaelab.errors import ConfigError, unknown_name_message
from vaelab.models.base import BaseVAE, Encoding, VAEOutput
from vaelab.models.priors import Prior, build_prior
from vaelab.models.simple import SimpleVAE

MODELS = {"simple": SimpleVAE}


def check_model_name(name: str) -> None:
    """Refuse an unknown model name, listing the valid ones (builds nothing, draws no RNG)."""
    if name not in MODELS:
        raise ConfigError(unknown_name_message("model", name, sorted(MODELS)))


def build_model(config: RunConfig) -> BaseVAE:
    """A freshly initialised model with its likelihood, objective and standardisation flag
    set from ``config``; ``config.model.in_channels`` must be resolved (not None)."""
    cfg, lo = config.model, config.loss
    check_model_name(cfg.name)
    if cfg.in_channels is None:
        raise ConfigError("model.in_channels is not set (it is taken from the data)")
    model = MODELS[cfg.name](cfg.in_channels, cfg.latent_dim, cfg.hidden_dims,
                             cfg.decoder_hidden_dims, cfg.activation)
    if cfg.prior != "standard":
        # the prior's initial values come from the (seeded) global RNG, like the networks'
        prior_seed = int(torch.randint(0, 2**31 - 1, ()).item())
        model.set_prior(build_prior(cfg.prior, cfg.latent_dim, components=cfg.prior_components,
                                    layers=cfg.prior_layers, hidden=cfg.prior_hidden,
                                    seed=prior_seed))
    d = cfg.in_channels
    if lo.name == "seed_mse":  # the variance under which MSE + w KL is an ELBO
        model.configure_likelihood(math.sqrt(d * lo.kld_weight / 2.0))
    else:
        std = lo.decoder_std if lo.decoder_std is not None else math.sqrt(d / 2.0)
        model.configure_likelihood(std, learn=lo.learn_decoder_std, min_std=lo.min_decoder_std,
                                   per_point=lo.decoder_std_mode in ("latent", "full"),
                                   full=lo.decoder_std_mode == "full")
    model.configure_objective(lo.name, lo.kld_weight, lo.k)
    if config.data.standardize:
        model.enable_standardization()
        if config.data.decorrelate:
            model.enable_rotation()
    return model


__all__ = ["BaseVAE", "Encoding", "MODELS", "Prior", "SimpleVAE", "VAEOutput", "build_model",
           "build_prior", "check_model_name"]
