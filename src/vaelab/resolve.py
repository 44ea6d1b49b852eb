"""Build a RunConfig from its three layers: preset < config file < explicit settings.

The CLI flags and the keyword arguments of :func:`vaelab.train` use the same short names
(``steps``, ``lr``, ...), listed in :data:`SHORT_KEYS`; any field can also be set by its dotted
path (``"optim.gamma"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelab.config import RunConfig, expand_dotted, load_config_file, merge_dicts
from vaelab.errors import ConfigError
from vaelab.presets import DEFAULT_PRESET, get_preset

#: short setting name -> dotted config path
SHORT_KEYS = {
    "data": "data.name",
    "noise": "data.noise",
    "n_train": "data.n_train",
    "data_backend": "data.backend",
    "latent_dim": "model.latent_dim",
    "hidden_dims": "model.hidden_dims",
    "decoder_hidden_dims": "model.decoder_hidden_dims",
    "activation": "model.activation",
    "prior": "model.prior",
    "loss": "loss.name",
    "iwae_k": "loss.k",
    "kl_warmup": "loss.kl_warmup",
    "kld_weight": "loss.kld_weight",
    "lr": "optim.lr",
    "scheduler": "optim.scheduler",
    "step_size": "optim.step_size",
    "gamma": "optim.gamma",
    "lr_warmup": "optim.warmup",
    "steps": "train.steps",
    "time_limit": "train.time_limit",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "device": "train.device",
    "log_every": "train.log_every",
    "checkpoint_every": "train.checkpoint_every",
    "compile": "train.compile",
    "cuda_graph": "train.cuda_graph",
    "gradients": "train.gradients",
    "frame_every": "display.frame_every",
    "display_points": "display.points",
}


def build_config(preset: str | None = None, config: str | Path | dict | RunConfig | None = None,
                 settings: dict[str, Any] | None = None) -> RunConfig:
    """Resolve a config: the preset (or the file's ``preset`` key, or the default preset),
    then the file's sections, then ``settings`` (short names or dotted paths).

    A ``time_limit`` setting without a ``steps`` setting removes the step cap, so that the
    run trains until the time is spent (``steps`` and ``time_limit`` together: whichever
    comes first)."""
    file_data: dict[str, Any] = {}
    if isinstance(config, RunConfig):
        file_data = config.to_dict()
    elif isinstance(config, dict):
        file_data = dict(config)
    elif config is not None:
        file_data = load_config_file(config)
    file_preset = file_data.pop("preset", None)
    if file_preset is not None and not isinstance(file_preset, str):
        raise ConfigError(f"preset must be a string, got {file_preset!r}")
    name = preset or file_preset or DEFAULT_PRESET
    base = get_preset(name).to_dict()
    merged = merge_dicts(base, file_data)
    merged["preset"] = name
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if "." not in key and key not in SHORT_KEYS:
            raise ConfigError(f"unknown setting {key!r} (valid: {', '.join(SHORT_KEYS)}, "
                              "or a dotted path such as optim.gamma)")
        flat[SHORT_KEYS.get(key, key)] = value
    if "train.time_limit" in flat and "train.steps" not in flat:
        flat["train.steps"] = None  # a time limit given alone: train until it is spent
    return RunConfig.from_dict(merge_dicts(merged, expand_dotted(flat)))
