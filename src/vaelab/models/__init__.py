"""VAE models: the interface and its implementations, built by name from a config."""

import math

from vaelab.config import RunConfig
from vaelab.errors import ConfigError
from vaelab.models.base import BaseVAE, Encoding, VAEOutput
from vaelab.models.simple import SimpleVAE
from vaelab.presets import unknown_name_message

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
    model = MODELS[cfg.name](cfg.in_channels, cfg.latent_dim, cfg.hidden_dims)
    d = cfg.in_channels
    if lo.name == "seed_mse":  # the variance under which MSE + w KL is an ELBO
        model.configure_likelihood(math.sqrt(d * lo.kld_weight / 2.0))
    else:
        std = lo.decoder_std if lo.decoder_std is not None else math.sqrt(d / 2.0)
        model.configure_likelihood(std, learn=lo.learn_decoder_std, min_std=lo.min_decoder_std)
    model.configure_objective(lo.name, lo.kld_weight)
    if config.data.standardize:
        model.enable_standardization()
    return model


__all__ = ["BaseVAE", "Encoding", "MODELS", "SimpleVAE", "VAEOutput", "build_model",
           "check_model_name"]
