"""VAE models: the interface and its implementations, built by name from a config."""

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.base import BaseVAE, Encoding, VAEOutput
from vaelab.models.simple import SimpleVAE
from vaelab.presets import unknown_name_message

MODELS = {"simple": SimpleVAE}


def check_model_name(name: str) -> None:
    """Refuse an unknown model name, listing the valid ones (builds nothing, draws no RNG)."""
    if name not in MODELS:
        raise ConfigError(unknown_name_message("model", name, sorted(MODELS)))


def build_model(cfg: ModelConfig) -> BaseVAE:
    """A freshly initialised model; ``cfg.in_channels`` must be resolved (not None)."""
    check_model_name(cfg.name)
    if cfg.in_channels is None:
        raise ConfigError("model.in_channels is not set (it is taken from the data)")
    return MODELS[cfg.name](cfg.in_channels, cfg.latent_dim, cfg.hidden_dims)


__all__ = ["BaseVAE", "Encoding", "MODELS", "SimpleVAE", "VAEOutput", "build_model",
           "check_model_name"]
