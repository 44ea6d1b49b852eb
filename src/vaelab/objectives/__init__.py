"""Pure loss functions: tensors in, named terms out; and the log-densities they are built of
(:mod:`vaelab.objectives.densities`, where every Gaussian density and its constant is defined)."""

from vaelab.objectives.densities import (
    LOG_2PI,
    gaussian_log_likelihood,
    gaussian_tril_log_likelihood,
    log_normal_diag,
    standard_normal_log_prob,
)
from vaelab.objectives.gaussian import gaussian_loss
from vaelab.objectives.iwae import iwae_loss
from vaelab.objectives.kl import kl_to_standard_normal
from vaelab.objectives.seed_loss import LossTerms, implied_decoder_variance, seed_loss

__all__ = ["LOG_2PI", "LossTerms", "gaussian_log_likelihood", "gaussian_loss",
           "gaussian_tril_log_likelihood",
           "implied_decoder_variance", "iwae_loss", "kl_to_standard_normal", "log_normal_diag",
           "seed_loss", "standard_normal_log_prob"]
