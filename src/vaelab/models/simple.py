"""The seed's ``SimpleVAE``: an MLP encoder and decoder with LeakyReLU.

Layer names match the seed's (``encoder.0.0``, ``fc_mu``, ``fc_var``, ``decoder_input``,
``decoder.0.0``, ``final_layer.0``), so the seed's own weights load into it (with
``strict=False``: vaelab adds the buffers ``data_shift``, ``data_scale`` and ``obs_std_fixed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from vaelab.models.base import BaseVAE, Encoding

#: activation name (``model.activation``) -> module; ``leaky_relu`` is the seed's
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "leaky_relu": nn.LeakyReLU, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU,
    "elu": nn.ELU, "tanh": nn.Tanh, "softplus": nn.Softplus,
}


def _block(n_in: int, n_out: int, activation: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), ACTIVATIONS[activation]())


class SimpleVAE(BaseVAE):
    """in -> hidden... -> (mu, log_var) | z -> decoder_input -> hidden... -> in.

    The decoder mirrors the encoder: ``decoder_input`` maps z to the last hidden width
    (no activation, as in the seed), then one Linear+LeakyReLU block per hidden width in
    reverse order (the first keeps the width), then a final Linear. For the seed's
    ``[128, 128]`` this is exactly the seed's network. (For asymmetric widths the seed built
    ``[h[-1]] + h`` *before* reversing, so its decoder was not mirrored, and its ``reverse()``
    changed the caller's list; vaelab mirrors, as intended, and copies the list.)
    """

    def __init__(self, in_channels: int = 2, latent_dim: int = 2,
                 hidden_dims: Sequence[int] | None = None,
                 decoder_hidden_dims: Sequence[int] | None = None,
                 activation: str = "leaky_relu") -> None:
        super().__init__(in_channels, latent_dim)
        hidden = list(hidden_dims) if hidden_dims is not None else [128, 128]
        if not hidden:
            raise ValueError("hidden_dims must not be empty")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} "
                             f"(valid: {', '.join(ACTIVATIONS)})")
        self.hidden_dims = hidden
        # the decoder's widths from z outwards: the encoder's, mirrored, unless given
        reverse = list(decoder_hidden_dims) if decoder_hidden_dims is not None else hidden[::-1]
        if not reverse:
            raise ValueError("decoder_hidden_dims must not be empty")

        widths = [in_channels] + hidden
        self.encoder = nn.Sequential(*(_block(a, b, activation) for a, b in pairwise(widths)))
        self.fc_mu = nn.Linear(hidden[-1], latent_dim)
        self.fc_var = nn.Linear(hidden[-1], latent_dim)

        self.decoder_input = nn.Linear(latent_dim, reverse[0])
        de_widths = [reverse[0]] + reverse
        self.decoder = nn.Sequential(
            *(_block(a, b, activation) for a, b in pairwise(de_widths))
        )
        self.final_layer = nn.Sequential(nn.Linear(reverse[-1], in_channels))

    def encode_internal(self, u: torch.Tensor) -> Encoding:
        h = self.encoder(u)
        return Encoding(mu=self.fc_mu(h), log_var=self.fc_var(h))

    def decode_internal(self, z: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.decoder(self.decoder_input(z)))

    def decode_features(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_input(z))

    def mean_from_features(self, h: torch.Tensor) -> torch.Tensor:
        return self.final_layer(h)

    def feature_width(self) -> int:
        return self.final_layer[0].in_features
