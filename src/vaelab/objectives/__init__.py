"""Pure loss functions: tensors in, named terms out."""

from vaelab.objectives.gaussian import gaussian_loss
from vaelab.objectives.iwae import iwae_loss, log_normal_diag
from vaelab.objectives.kl import kl_to_standard_normal
from vaelab.objectives.seed_loss import LossTerms, implied_decoder_variance, seed_loss

__all__ = ["LossTerms", "gaussian_loss", "implied_decoder_variance", "iwae_loss",
           "kl_to_standard_normal", "log_normal_diag", "seed_loss"]
