"""Named starting configurations.

``seed`` is the blog post's run, setting for setting. ``default`` (what ``vaelab train`` does
when no preset is named) was chosen by measurement on the Swiss roll with the evaluator: see
BENCHMARKS.md ("Choosing the default preset" and the fidelity tables) for what each choice
bought, and ``benchmarks/fidelity.py`` to remeasure it.
"""

from __future__ import annotations

from vaelab.config import (
    DataConfig,
    DisplayConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from vaelab.errors import ConfigError, unknown_name_message


def _seed() -> RunConfig:
    # The blog's settings: Swiss roll (noise 0.3, columns 0 and 2, unscaled, fresh batch every
    # step); SimpleVAE 2-128-128-2; MSE + 1 x KLD; Adam lr 2e-2; StepLR(1000, 0.7); 10k x 512.
    return RunConfig(
        preset="seed",
        data=DataConfig(name="swiss_roll", noise=None, n_train=None),  # None: the set's own (0.3)
        model=ModelConfig(name="simple", latent_dim=2, hidden_dims=[128, 128]),
        loss=LossConfig(name="seed_mse", kld_weight=1.0),
        optim=OptimConfig(lr=2e-2, scheduler="step", step_size=1000, gamma=0.7),
        train=TrainConfig(steps=10_000, batch_size=512),
    )


def _default() -> RunConfig:
    # What each setting is for (measured effects in BENCHMARKS.md):
    # - standardised data and a learned decoder sigma (per dimension, floored): the model
    #   finds the data's noise level itself, so any scale or noise works without tuning;
    # - the IWAE bound with k = 4 (instead of the ELBO): trains log p(x) itself, the largest
    #   single gain; k = 8 at half the batch is no better for the same cost;
    # - three hidden layers of 128 (LeakyReLU): depth fits the roll's curve better than width;
    # - a learned prior, a mixture of diagonal Gaussians: fills the holes the aggregate
    #   posterior leaves in N(0, I), which otherwise decode to points between the arms (it
    #   beat a small flow prior, and costs less per step); prior_components None: 128 for 2-D
    #   data, where each is a region the decoder maps to one piece of the data, 16 from 3
    #   columns on;
    # - many small steps (batch 128) with a cosine decay: the step count, not the batch,
    #   limits the fit on a fixed time budget;
    # - a latent as wide as the data (latent_dim None: D columns, at least 2; 2 D for 6 to 16
    #   columns): a structure hidden in D columns leaves variance in every direction, and
    #   the spare dimensions of a wider latent keep a 6-column file's runs from ending far
    #   off where the KL term shut one early;
    # - for a data file, its columns decorrelated (data.decorrelate, resolved per data): a
    #   user's columns mix structure and noise along any direction;
    # - for data of 3+ columns a decoder whose noise depends on z (decoder_std_mode None:
    #   resolved per data): a full covariance for a data file (up to 16 columns), whose noise
    #   may be correlated in any direction (it fits mixtures of full-covariance clusters far
    #   better), sigma(z) for the built-in 3-D sheet (as good there, and compiled); 2-D sets
    #   keep the global sigma, which fits them a little better;
    # - a short file (a fixed training set below 4,000 rows) sets a tenth of its training
    #   rows aside and keeps the weights that fit them best (validation None: resolved per
    #   data), and has layers of 64 (hidden_dims None: 128 otherwise): such a file is learned
    #   by heart long before 24,000 steps, and sooner by wider layers;
    # - one initial weights (restarts 1): a probe of 4 by their early training loss rescued
    #   a start that ended far from a 6-D product's density, and picked slightly worse starts
    #   than the run's own on every seed of a 4-D one, so it is the user's choice.
    return RunConfig(
        preset="default",
        data=DataConfig(name="swiss_roll", noise=None, n_train=None, standardize=True),
        model=ModelConfig(name="simple", latent_dim=None, hidden_dims=None,
                          activation="leaky_relu", prior="mixture", prior_components=None),
        loss=LossConfig(name="iwae", k=4, kld_weight=1.0, decoder_std=0.1,
                        learn_decoder_std=True, min_decoder_std=1e-3, decoder_std_mode=None),
        optim=OptimConfig(lr=3e-3, scheduler="cosine", min_lr_ratio=0.0, warmup=0.0),
        train=TrainConfig(steps=24_000, batch_size=128, validation=None, restarts=1),
        display=DisplayConfig(frame_every=2000, points=1000),
    )


#: the default preset's layers (``model.hidden_dims = None``, :func:`vaelab.resolve.widths_for`)
DEFAULT_WIDTHS = [128, 128, 128]
#: and a short file's: a fixed training set of fewer than ``SHORT_FILE_ROWS`` rows, which the
#: default also gives validation rows (:mod:`vaelab.training.validation`)
SHORT_FILE_WIDTHS = [64, 64, 64]
SHORT_FILE_ROWS = 4_000

PRESETS = {"seed": _seed, "default": _default}
# The preset used when none is named.
DEFAULT_PRESET = "default"


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> RunConfig:
    """A fresh copy of the named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(unknown_name_message("preset", name, preset_names()))
    return PRESETS[name]()
