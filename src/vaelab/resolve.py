"""Build a RunConfig from its three layers: preset < config file < explicit settings; then
resolve it against its data (:func:`prepare`).

The CLI flags and the keyword arguments of :func:`vaelab.train` use the same short names
(``steps``, ``lr``, ...), listed in :data:`SHORT_KEYS`; any field can also be set by its dotted
path (``"optim.gamma"``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config import LossConfig, RunConfig, expand_dotted, load_config_file, merge_dicts
from vaelab.errors import ConfigError
from vaelab.presets import (
    DEFAULT_PRESET,
    DEFAULT_WIDTHS,
    SHORT_FILE_ROWS,
    SHORT_FILE_WIDTHS,
    get_preset,
)

if TYPE_CHECKING:
    from vaelab.data import DataSource

#: short setting name -> dotted config path
SHORT_KEYS = {
    "data": "data.name",
    "noise": "data.noise",
    "n_train": "data.n_train",
    "data_backend": "data.backend",
    "decorrelate": "data.decorrelate",
    "latent_dim": "model.latent_dim",
    "hidden_dims": "model.hidden_dims",
    "decoder_hidden_dims": "model.decoder_hidden_dims",
    "activation": "model.activation",
    "prior": "model.prior",
    "loss": "loss.name",
    "iwae_k": "loss.k",
    "kl_warmup": "loss.kl_warmup",
    "kld_weight": "loss.kld_weight",
    "decoder_std_mode": "loss.decoder_std_mode",
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
    "handoff": "train.handoff",
    "cuda_graph": "train.cuda_graph",
    "gradients": "train.gradients",
    "validation": "train.validation",
    "restarts": "train.restarts",
    "frame_every": "display.frame_every",
    "display_points": "display.points",
}


def build_config(preset: str | None = None, config: str | Path | dict | RunConfig | None = None,
                 settings: dict[str, Any] | None = None) -> RunConfig:
    """Resolve a config: the preset (or the file's ``preset`` key, or the default preset),
    then the file's sections, then ``settings`` (short names or dotted paths).

    The file's ``preset`` key must name a preset, and ``preset`` and that key, both given,
    must agree: a ConfigError otherwise.

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
    source = str(config) if isinstance(config, (str, Path)) else "the config"
    where = f"{source}: "
    if file_preset is not None and not isinstance(file_preset, str):
        raise ConfigError(f"{where}preset must be a string, got {file_preset!r}")
    if file_preset is not None:  # an unknown name is refused even where preset is given
        try:
            get_preset(file_preset)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
        if preset is not None and preset != file_preset:  # neither silently wins
            raise ConfigError(f"preset {preset!r} is given, but {source} names preset "
                              f"{file_preset!r}; drop one")
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


#: from this many columns on, the default's latent is twice as wide as the data
#: (``model.latent_dim = None``, :func:`latent_for`), up to :data:`WIDE_LATENT_MAX_COLUMNS`
WIDE_LATENT_MIN_COLUMNS = 6
WIDE_LATENT_MAX_COLUMNS = 16


def latent_for(latent_dim: int | None, columns: int) -> int:
    """``model.latent_dim``, or where it is None (the default preset's) as many latent
    dimensions as the data has columns, at least 2, and twice as many for data of
    :data:`WIDE_LATENT_MIN_COLUMNS` to :data:`WIDE_LATENT_MAX_COLUMNS` columns. A structure
    hidden in D columns leaves variance in every direction, which a 2-D latent and a diagonal
    decoder cannot hold; and early in training the KL term can shut a latent dimension the
    decoder has not learned to use yet, for good: with just D of them, a 6-column file ended
    several times further from its density on half the seeds, with twice D on none (measured
    in BENCHMARKS.md, "A 2-D structure hidden in D columns" and "Why a seed ends far off")."""
    if latent_dim is not None:
        return latent_dim
    if WIDE_LATENT_MIN_COLUMNS <= columns <= WIDE_LATENT_MAX_COLUMNS:
        return 2 * columns
    return max(2, columns)


def decorrelate_for(decorrelate: bool | None, standardize: bool, is_file: bool) -> bool:
    """``data.decorrelate``, or where it is None (every preset's) yes for a data file, whose
    columns mix structure and noise along any direction, and no for a built-in set; never
    without standardising, of which decorrelating is a way."""
    return standardize and (is_file if decorrelate is None else decorrelate)


def components_for(components: int | None, columns: int) -> int:
    """``model.prior_components``, or where it is None (the default preset's) 128 for 2-D data
    and 16 for 3 or more columns. Measured (BENCHMARKS.md, "The prior's components, the steps
    and other levers on the 2-D sets"): on every 2-D set more components fit as well or better,
    most where the data has many separate pieces (rings, the checkerboard), each a region of
    the latent space the decoder maps to one piece of the data; on data of 3 to 8 columns
    more components did not help (the 3-D sheet, a file's mixtures and products)."""
    if components is not None:
        return components
    return 128 if columns <= 2 else 16


#: the most columns for which the default gives a data file a full decoder covariance: its
#: L(z) costs D (D - 1) / 2 head outputs and a D x D triangular solve per point
FULL_COVARIANCE_MAX_COLUMNS = 16


def std_mode_for(loss: LossConfig, columns: int, is_file: bool = False) -> str:
    """``loss.decoder_std_mode``, or where it is None (the default preset's), for data of 3 or
    more columns where the loss can have a sigma(z) (gaussian or iwae, a learned sigma with a
    floor above 0): ``full`` for a data file of up to :data:`FULL_COVARIANCE_MAX_COLUMNS`
    columns, ``latent`` for a built-in set (or a wider file); ``global`` for 2 columns.
    Measured (BENCHMARKS.md, "A 2-D structure hidden in D columns" and "What limits the default
    on each data set"): a full covariance fits a user's mixtures of full-covariance clusters
    far better than sigma(z) and the hidden rolls and products as well; on the built-in 3-D
    sheet it gained nothing over sigma(z) (measured when it trained through autograd), and
    sigma(z) fits the 2-D Swiss roll and rings a little worse than the
    global sigma."""
    if loss.decoder_std_mode is not None:
        return loss.decoder_std_mode
    can = loss.name != "seed_mse" and loss.learn_decoder_std and loss.min_decoder_std > 0
    if columns < 3 or not can:
        return "global"
    return "full" if is_file and columns <= FULL_COVARIANCE_MAX_COLUMNS else "latent"


def training_rows(config: RunConfig, source: Any) -> int | None:
    """The size of the run's fixed training set (a data file's rows less those held out,
    or ``data.n_train``), None where it draws fresh batches."""
    from vaelab.data.files import split_count

    points = getattr(source, "points", None)
    if points is not None:
        n = int(points.shape[0])
        return n - split_count(n, config.data.test_fraction) if n > 1 else n
    return config.data.n_train


def widths_for(hidden_dims: list[int] | None, train_rows: int | None) -> list[int]:
    """``model.hidden_dims``, or where it is None (the default preset's) three layers of 128,
    or of 64 for a fixed training set of fewer than ``SHORT_FILE_ROWS`` rows. Measured
    (BENCHMARKS.md, "A short file"): on files of 1,000 to 3,000 rows the narrower layers fit
    fresh rows better on most tables (the 6-D roll by far; not the 4-D product at the
    shortest); on 16,000 rows they do not learn the 6-D product at all."""
    if hidden_dims is not None:
        return list(hidden_dims)
    short = train_rows is not None and train_rows < SHORT_FILE_ROWS
    return list(SHORT_FILE_WIDTHS if short else DEFAULT_WIDTHS)


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill in what the data decides (``model.in_channels``, ``data.noise``,
    ``data.standardize``, ``data.decorrelate``) and check every name and the device, so that
    nothing is written for a run that cannot start."""
    return prepare(config)[0]


def prepare(config: RunConfig) -> tuple[RunConfig, DataSource]:
    """:func:`resolve_config`, also returning the data source it had to build (a data file is
    read once, not again by :func:`fit`). (Building a config needs no torch, and this
    module imports it only here: the sweep's driver builds configs and trains none.)"""
    from vaelab.data import build_source
    from vaelab.data.files import FileSource
    from vaelab.devices import resolve_device
    from vaelab.models import check_model_name
    from vaelab.training.plan import plan_for
    from vaelab.training.validation import validation_for

    config.validate()
    device = resolve_device(config.train.device)
    source = build_source(config.data)
    if config.model.in_channels not in (None, source.dim):
        raise ConfigError(f"model.in_channels = {config.model.in_channels} but the data "
                          f"{config.data.name!r} has {source.dim} dimensions")
    is_file = isinstance(source, FileSource)
    if is_file and config.data.n_train is not None:
        raise ConfigError("data.n_train cannot be set for a data file: its training set is its "
                          "points minus the held-out data.test_fraction")
    d = config.data
    # decorrelating is a way of standardising: asked for alone, it brings standardising along
    standardize = (is_file or bool(d.decorrelate)) if d.standardize is None else d.standardize
    data_cfg = dataclasses.replace(
        d,
        name=str(Path(d.name).resolve()) if is_file else d.name,
        noise=getattr(source, "noise", d.noise),
        standardize=standardize,
        decorrelate=decorrelate_for(d.decorrelate, standardize, is_file),
    )
    rows = training_rows(config, source)
    model_cfg = dataclasses.replace(
        config.model, in_channels=source.dim,
        hidden_dims=widths_for(config.model.hidden_dims, rows),
        latent_dim=latent_for(config.model.latent_dim, source.dim),
        prior_components=components_for(config.model.prior_components, source.dim))
    loss_cfg = dataclasses.replace(
        config.loss, decoder_std_mode=std_mode_for(config.loss, source.dim, is_file))
    train_cfg = dataclasses.replace(config.train, validation=validation_for(
        config.train.validation, rows))
    resolved = dataclasses.replace(config, data=data_cfg, model=model_cfg, loss=loss_cfg,
                                   train=train_cfg)
    check_model_name(resolved.model.name)
    plan_for([resolved], source, device)  # a combination that cannot run is refused here
    return resolved, source
