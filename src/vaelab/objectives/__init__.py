"""Pure loss functions: tensors in, named terms out."""

from vaelab.objectives.gaussian import gaussian_loss
from vaelab.objectives.kl import kl_to_standard_normal
from vaelab.objectives.seed_loss import LossTerms, implied_decoder_variance, seed_loss

__all__ = ["LossTerms", "gaussian_loss", "implied_decoder_variance", "kl_to_standard_normal",
           "seed_loss"]
