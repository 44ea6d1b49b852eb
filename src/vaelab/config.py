"""Typed run configuration with a strict JSON/TOML round trip.

A run is described by one :class:`RunConfig` made of small sections (data, model, loss,
optim, train, display). ``RunConfig.from_dict(cfg.to_dict()) == cfg`` always holds, and
``from_dict`` refuses unknown keys, wrong types and out-of-range values with one clear
message, so a typo in a TOML file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from vaelab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda")
SCHEDULERS = ("step", "constant", "cosine", "linear")
DATA_BACKENDS = ("torch", "sklearn")
LOSSES = ("seed_mse", "gaussian", "iwae")
ACTIVATIONS = ("leaky_relu", "relu", "silu", "gelu", "elu", "tanh", "softplus")
PRIORS = ("standard", "mixture", "flow")
#: loss.decoder_std_mode: the decoder's sigma one per dimension, a function of z, or a full
#: covariance that is a function of z (LossConfig)
DECODER_STD_MODES = ("global", "latent", "full")
#: train.compile: compile the step (``auto``: long closed-form CPU runs; TrainConfig)
COMPILE_MODES = ("auto", "on", "off")
#: train.cuda_graph: replay the step as one CUDA graph (``auto``: on CUDA wherever it can)
CUDA_GRAPH_MODES = ("auto", "on", "off")
#: train.gradients: how the step's gradients are computed (``auto``: explicit where it can)
GRADIENT_MODES = ("auto", "explicit", "autograd")


@dataclass
class DataConfig:
    """Where training points come from.

    ``name``: a built-in source (``swiss_roll``, ``moons``, ...) or a ``.csv``/``.npy`` file.
    ``noise=None`` keeps the source's own noise level. ``n_train=None`` draws a fresh batch
    every step (an infinite stream, as in the seed); an integer fixes a training set of that
    many points, drawn once from ``seed`` (a file is always a fixed set: its points minus the
    held-out ``test_fraction``). ``backend="sklearn"`` draws the Swiss rolls with scikit-learn
    on the CPU, bit for bit the seed's generator; ``"torch"`` draws the same distribution on the
    training device. ``standardize=None`` means: yes for files, no for built-in sources.
    ``decorrelate`` (with ``standardize``): rotate the centred data onto its principal axes
    before scaling each axis to unit variance (PCA whitening, fit on the training points), so
    that the decoder's per-dimension sigma lies along directions the data actually varies in;
    None means: yes for files, no for built-in sources (measured in BENCHMARKS.md, "A 2-D
    structure hidden in D columns").
    """

    name: str = "swiss_roll"
    noise: float | None = None
    n_train: int | None = None
    backend: str = "torch"
    standardize: bool | None = None
    decorrelate: bool | None = None
    test_fraction: float = 0.2


@dataclass
class ModelConfig:
    """Network shape and prior. ``in_channels=None`` means: take it from the data;
    ``latent_dim=None`` too: as many latent dimensions as the data has columns, at least 2,
    and twice as many for 6 to 16 columns (:func:`vaelab.resolve.latent_for`; a 2-D
    structure hidden in more columns leaves variance in every direction, which a 2-D latent
    and a diagonal decoder cannot hold, and spare dimensions keep a run from ending far off
    when the KL term shuts one early).

    ``hidden_dims`` are the encoder's widths, one hidden layer each (so they set width and
    depth); the decoder mirrors them unless ``decoder_hidden_dims`` is given. ``activation``
    follows every hidden layer. ``prior``: ``standard`` is N(0, I) (the seed's);
    ``mixture`` a learned mixture of ``prior_components`` diagonal Gaussians; ``flow`` a
    RealNVP flow of ``prior_layers`` affine couplings of width ``prior_hidden`` on N(0, I).
    A learned prior can fill the holes that the aggregate posterior leaves in N(0, I), which
    a standard-normal VAE decodes into points between the data's modes.
    ``prior_components=None`` (the default preset's): 128 for 2-D data, 16 for 3 or more
    columns (:func:`vaelab.resolve.components_for`). ``hidden_dims=None`` (the default
    preset's): three layers of 128, or of 64 for a fixed training set of fewer than 4,000
    rows, which the wider layers learn by heart (:func:`vaelab.resolve.widths_for`).
    """

    name: str = "simple"
    latent_dim: int | None = 2
    hidden_dims: list[int] | None = field(default_factory=lambda: [128, 128])
    in_channels: int | None = None
    decoder_hidden_dims: list[int] | None = None
    activation: str = "leaky_relu"
    prior: str = "standard"
    prior_components: int | None = 16
    prior_layers: int = 4
    prior_hidden: int = 64


@dataclass
class LossConfig:
    """The training objective and the decoder's likelihood.

    ``seed_mse``: mean squared error over all elements + ``kld_weight`` x KL. With D data
    dimensions this is ``kld_weight`` x (negative ELBO - const) of a Gaussian decoder with
    variance ``D * kld_weight / 2`` (see :mod:`vaelab.objectives.seed_loss`); that variance is
    the model's likelihood, so ``decoder_std`` and ``learn_decoder_std`` must stay unset.
    ``gaussian``: -E_q log N(x; decoder(z), sigma^2) + ``kld_weight`` x KL, sigma per data
    dimension in standardised units, fixed at ``decoder_std`` (None: sqrt(D/2), the seed's
    implied value) or learned from it, never below ``min_decoder_std``.
    ``iwae``: the same Gaussian decoder trained on the importance-weighted bound with ``k``
    samples per point, -log mean_k p(x|z_k) p(z_k)^b / q(z_k|x)^b with b = ``kld_weight``;
    tighter than the ELBO (k = 1 is the ELBO), it trains the model for log p(x) itself.

    ``decoder_std_mode``: ``global`` (sigma per data dimension, the same for every z, as above)
    or ``latent``: sigma(z) = ``min_decoder_std`` + softplus(head(h / width)), per point and
    dimension, from a linear head on the decoder's last hidden layer h (its weights start at 0
    and its bias at ``decoder_std``, so training starts from the global model; h / width keeps
    Adam from moving sigma(z) width-times faster than a global sigma, which collapsed the
    posterior in BENCHMARKS.md). A sigma that varies with
    z lets the decoder be sharp where the data is thin and wide where it is spread; the floor
    keeps the likelihood bounded, so ``latent`` needs ``gaussian`` or ``iwae``,
    ``learn_decoder_std = true`` and ``min_decoder_std > 0``. It is one likelihood for training,
    the estimators of log p(x) and ``sample`` alike; the hand-written gradients
    (``train.gradients = 'explicit'``) cover it with the ``iwae`` loss (with ``gaussian`` it
    trains through autograd).
    ``full``: a full covariance that depends on z, N(x; mean(z), L(z) L(z)^T) in
    standardised units, L(z) lower triangular with the diagonal ``min_decoder_std`` +
    softplus(.) and the D (D - 1) / 2 entries below it read from h / width by the same head
    (they start at 0: training starts from ``latent``). Noise that is correlated across
    columns, such as a mixture of full-covariance clusters, needs no latent dimension to carry
    it. It needs what ``latent`` needs, costs D (D - 1) / 2 more outputs and a triangular
    solve per point, and trains through autograd (no hand-written gradients cover it).
    None (the default preset's): for data of 3 or more columns ``full`` for a data file (up to
    16 columns) and ``latent`` for a built-in set, else ``global`` (measured in BENCHMARKS.md,
    "A 2-D structure hidden in D columns", and "What limits the default on each data set";
    :func:`vaelab.resolve.std_mode_for`).

    ``kl_warmup``: the fraction of training (of the steps, or of the time limit) over which
    the weight of the KL term rises linearly from 0 to ``kld_weight`` (0: no warm-up).
    """

    name: str = "seed_mse"
    kld_weight: float = 1.0
    decoder_std: float | None = None
    learn_decoder_std: bool = False
    min_decoder_std: float = 1e-3
    decoder_std_mode: str | None = "global"
    k: int = 1
    kl_warmup: float = 0.0


@dataclass
class OptimConfig:
    """Adam with a learning-rate schedule, as a function of the step or of training progress.

    ``step``: lr x gamma^(step // step_size) (the seed's StepLR). ``constant``: lr.
    ``cosine``: from lr down to lr x ``min_lr_ratio`` along a half cosine of progress.
    ``linear``: the same, along a straight line. Progress is step / steps, or the elapsed
    fraction of ``train.time_limit`` when that is set, so a time-limited run still ends its
    schedule. ``warmup``: the first fraction of progress ramps lr linearly up from 0.
    """

    lr: float = 2e-2
    scheduler: str = "step"
    step_size: int = 1000
    gamma: float = 0.7
    min_lr_ratio: float = 0.0
    warmup: float = 0.0


@dataclass
class TrainConfig:
    """Loop length, batch, seed and device. One ``seed`` fixes data, initialisation, noise.

    ``time_limit`` (seconds of training, excluding setup and saving): stop when it is spent,
    or at ``steps`` if that comes first; ``steps = None`` (only with a time limit) means no
    step cap. A time-limited run depends on the machine's speed, so it is reproducible only
    as far as the number of steps it reached (saved in its summary) is the same.

    ``checkpoint_every``: steps between the checkpoints a run directory keeps for
    ``vaelab train --resume`` (0: only at the end and on SIGINT/SIGTERM).

    ``compile``: ``on`` compiles the step's gradient computation (and, ahead of time for one
    model, Adam's update), before the training clock starts: on the CPU the explicit step
    where the gradients are explicit (a closed-form loss ahead of time,
    :mod:`vaelab.training.aot`: built once per machine and shapes, kept in the cache folder
    and loaded from it by later runs; any other loss under
    ``torch.compile``, :mod:`vaelab.training.compiled`), else the forward pass and loss under
    ``torch.compile`` (on CUDA in ``reduce-overhead`` mode, which captures them in CUDA
    graphs). ``auto`` compiles the explicit step of a closed-form loss (the seed's, the IWAE
    bound: both presets) on the CPU, for runs of at least 10,000 steps and, if time-limited,
    10 s: the runs where the compiled step repays its build. Elsewhere ``auto`` is off,
    because compiling did not pay there (see BENCHMARKS.md; benchmarks/speed.py,
    gpu_speed.py). The choice follows the config alone, never the cache's contents. A
    compiled run rounds differently from an eager one, so the two are not bit-identical.

    ``handoff``: where the step is compiled ahead of time under ``compile = 'auto'``, the
    first ``handoff`` steps train with the eager step while the compiled one is built in a
    second process (:mod:`vaelab.training.background`), so a machine's first run starts
    training at once; later runs load the build from the cache and hand off at the same step,
    so every run of a config computes the same bits. ``0`` (the default): none, the build
    comes first; on a 2-core machine the hand-off was measured to slow every later run
    without making the first one faster (BENCHMARKS.md), so it is opt-in.

    ``cuda_graph``: on CUDA, capture the whole step (batch draw, noise, gradients, Adam) as one
    CUDA graph and replay it every step (:mod:`vaelab.training.graphs`); the weights are the
    eager run's, bit for bit. ``auto``: wherever the step allows it (a fresh batch every step,
    nothing compiled); ``on``: the same, and an error where it cannot; ``off``: eager.

    ``validation``: the fraction of a fixed training set (a data file's training rows, or
    ``data.n_train`` points) set aside, never trained on, to choose the weights the run
    keeps: those of the step whose IWAE estimate of -log p(x) on these rows was best
    (:mod:`vaelab.training.validation`). A small training set is learned by heart before
    the steps are spent, at a point that depends on the data. ``0``: off, the last step's
    weights. ``None`` (the default preset's): 0.1 for a fixed training set of 20 to 3,999
    rows, else off (measured in BENCHMARKS.md, "A short file").

    ``restarts``: how many initial weights to try before training. The run's own and
    ``restarts - 1`` more drawn from its seed train together for the first twelfth of the
    run's steps; the one with the lowest training loss over that probe's last quarter is kept
    and the run trains from it as usual (:mod:`vaelab.training.restarts`). Where a run ends
    can depend on its initial weights more than on any setting. ``1`` (every preset's): the
    run's own, no probe; the probe's early loss was measured to pick a better start on some
    tables and a slightly worse one on others (BENCHMARKS.md, "Restarts"). Needs ``steps``.

    ``gradients``: ``explicit`` runs the networks of a ``simple`` model (LeakyReLU or ReLU)
    forward and backward by hand, with no autograd graph, and takes the seed's loss and the
    IWAE bound with the standard or mixture prior in closed form (any other loss through
    autograd on its small inputs; :mod:`vaelab.models.explicit`); ``autograd``
    backpropagates through everything. ``auto``: explicit where the loss is in closed form
    (the seed and default presets), because there it needs less work per step than autograd
    (see BENCHMARKS.md), except with
    ``compile = 'on'`` on CUDA; else autograd.
    Both give the same gradients up to float rounding, so the two runs are not bit-identical.
    """

    steps: int | None = 10_000
    batch_size: int = 512
    seed: int = 0
    device: str = "auto"
    log_every: int = 100
    time_limit: float | None = None
    checkpoint_every: int = 1000
    compile: str = "auto"
    handoff: int = 0
    gradients: str = "auto"
    cuda_graph: str = "auto"
    validation: float | None = 0.0
    restarts: int = 1


@dataclass
class DisplayConfig:
    """The seed's three panels: a frame every ``frame_every`` steps (0: only the last)."""

    frame_every: int = 500
    points: int = 1000


@dataclass
class RunConfig:
    """Everything that defines a run; saved resolved as the run's ``config.json``."""

    preset: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)

    # -- round trip ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (lists, not tuples)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        """Build and validate a config; unknown keys and wrong types raise ConfigError."""
        cfg = _from_dict(cls, data, "")
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def matches_json(self, text: str) -> bool:
        """Whether ``text``, a config saved as JSON (in a checkpoint), is this config.
        Compared as configs, not as text: a setting added to vaelab since it was saved takes
        its default, so a run saved by an older version can still be resumed."""
        try:
            return RunConfig.from_json(text) == self
        except ConfigError:
            return False

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A validated copy with ``{"section.key": value}`` or nested-dict overrides applied."""
        merged = merge_dicts(self.to_dict(), expand_dotted(overrides))
        return RunConfig.from_dict(merged)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first value that cannot work."""
        d, m, lo, o, t, s = self.data, self.model, self.loss, self.optim, self.train, self.display
        _check(d.noise is None or d.noise >= 0, "data.noise", d.noise, "must be >= 0")
        _check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction,
               "must be in (0, 1)")
        _check(d.n_train is None or d.n_train >= 2, "data.n_train", d.n_train, "must be >= 2")
        _check(not (d.decorrelate and d.standardize is False), "data.decorrelate",
               d.decorrelate, "needs data.standardize (it rotates the data before scaling it)")
        _choice("data.backend", d.backend, DATA_BACKENDS)
        _check(m.latent_dim is None or m.latent_dim >= 1, "model.latent_dim", m.latent_dim,
               "must be >= 1")
        _check(m.hidden_dims is None or len(m.hidden_dims) >= 1, "model.hidden_dims",
               m.hidden_dims, "must not be empty")
        for h in m.hidden_dims or []:
            _check(h >= 1, "model.hidden_dims", m.hidden_dims, "entries must be >= 1")
        _check(m.in_channels is None or m.in_channels >= 1, "model.in_channels",
               m.in_channels, "must be >= 1")
        if m.decoder_hidden_dims is not None:
            _check(len(m.decoder_hidden_dims) >= 1, "model.decoder_hidden_dims",
                   m.decoder_hidden_dims, "must not be empty (null: mirror hidden_dims)")
            for h in m.decoder_hidden_dims:
                _check(h >= 1, "model.decoder_hidden_dims", m.decoder_hidden_dims,
                       "entries must be >= 1")
        _choice("model.activation", m.activation, ACTIVATIONS)
        _choice("model.prior", m.prior, PRIORS)
        _check(m.prior != "flow" or m.latent_dim is None or m.latent_dim >= 2, "model.prior",
               m.prior,
               "needs model.latent_dim >= 2 (use 'mixture' for a 1-D latent)")
        _check(m.prior_components is None or m.prior_components >= 1,
               "model.prior_components", m.prior_components,
               "must be >= 1")
        _check(m.prior_layers >= 1, "model.prior_layers", m.prior_layers, "must be >= 1")
        _check(m.prior_hidden >= 1, "model.prior_hidden", m.prior_hidden, "must be >= 1")
        _choice("loss.name", lo.name, LOSSES)
        _check(lo.kld_weight > 0, "loss.kld_weight", lo.kld_weight,
               "must be > 0 (it sets the implied decoder variance D*kld_weight/2)")
        if lo.name == "seed_mse":
            _check(lo.decoder_std is None and not lo.learn_decoder_std, "loss.decoder_std",
                   lo.decoder_std, "must stay unset for seed_mse (its variance is D*kld_weight/2;"
                   " use loss.name = 'gaussian')")
        _check(lo.min_decoder_std >= 0, "loss.min_decoder_std", lo.min_decoder_std,
               "must be >= 0")
        _check(lo.decoder_std is None or lo.decoder_std > lo.min_decoder_std,
               "loss.decoder_std", lo.decoder_std, "must be > loss.min_decoder_std")
        if lo.decoder_std_mode is not None:  # None: the data decides (resolve.prepare)
            _choice("loss.decoder_std_mode", lo.decoder_std_mode, DECODER_STD_MODES)
        if lo.decoder_std_mode in ("latent", "full"):
            _check(lo.name != "seed_mse", "loss.decoder_std_mode", lo.decoder_std_mode,
                   "needs loss.name 'gaussian' or 'iwae' (seed_mse's variance is fixed by "
                   "kld_weight)")
            _check(lo.learn_decoder_std, "loss.decoder_std_mode", lo.decoder_std_mode,
                   "needs loss.learn_decoder_std = true (sigma(z) is learned)")
            _check(lo.min_decoder_std > 0, "loss.decoder_std_mode", lo.decoder_std_mode,
                   "needs loss.min_decoder_std > 0 (the floor keeps the likelihood bounded)")
        _check(lo.k >= 1, "loss.k", lo.k, "must be >= 1")
        _check(lo.k == 1 or lo.name == "iwae", "loss.k", lo.k,
               "is the number of importance samples of loss.name = 'iwae'; set that or k = 1")
        _check(0 <= lo.kl_warmup <= 1, "loss.kl_warmup", lo.kl_warmup, "must be in [0, 1]")
        _check(o.lr > 0, "optim.lr", o.lr, "must be > 0")
        _choice("optim.scheduler", o.scheduler, SCHEDULERS)
        _check(o.step_size >= 1, "optim.step_size", o.step_size, "must be >= 1")
        _check(0 < o.gamma <= 1, "optim.gamma", o.gamma, "must be in (0, 1]")
        _check(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", o.min_lr_ratio,
               "must be in [0, 1]")
        _check(0 <= o.warmup < 1, "optim.warmup", o.warmup, "must be in [0, 1)")
        _check(t.steps is not None or t.time_limit is not None, "train.steps", t.steps,
               "may be null only with a train.time_limit")
        _check(t.steps is None or t.steps >= 1, "train.steps", t.steps, "must be >= 1")
        _check(t.time_limit is None or t.time_limit > 0, "train.time_limit", t.time_limit,
               "must be > 0 seconds")
        _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1")
        _check(t.seed >= 0, "train.seed", t.seed, "must be >= 0")
        _check(t.log_every >= 1, "train.log_every", t.log_every, "must be >= 1")
        _choice("train.compile", t.compile, COMPILE_MODES)
        _choice("train.gradients", t.gradients, GRADIENT_MODES)
        _choice("train.cuda_graph", t.cuda_graph, CUDA_GRAPH_MODES)
        _check(not (t.cuda_graph == "on" and t.compile == "on"), "train.cuda_graph",
               t.cuda_graph, "cannot be combined with train.compile = 'on' (the compiled step "
               "is captured as CUDA graphs by torch.compile itself)")
        _check(not (t.cuda_graph == "on" and t.device == "cpu"), "train.cuda_graph",
               t.cuda_graph, "needs a CUDA device (train.device is 'cpu')")
        _check(t.handoff >= 0, "train.handoff", t.handoff,
               "must be >= 0 (0: no eager steps before the compiled step)")
        _check(t.validation is None or 0.0 <= t.validation < 1.0, "train.validation",
               t.validation, "must be at least 0 (0: off) and below 1, or null (automatic)")
        _check(t.restarts >= 1, "train.restarts", t.restarts,
               "must be >= 1 (1: the run's own initial weights only)")
        _check(t.restarts == 1 or t.steps is not None, "train.restarts", t.restarts,
               "needs train.steps: its probe is a share of the run's steps")
        _check(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every,
               "must be >= 0 (0: a checkpoint only at the end or on an interrupt)")
        dev = t.device
        ok = dev in DEVICES or (dev.startswith("cuda:") and dev[5:].isdigit())
        _check(ok, "train.device", dev, "must be auto, cpu, cuda or cuda:N")
        _check(s.frame_every >= 0, "display.frame_every", s.frame_every, "must be >= 0")
        _check(s.points >= 1, "display.points", s.points, "must be >= 1")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a nested dict (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of settings")
    return data


def expand_dotted(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"train.steps": 5}`` -> ``{"train": {"steps": 5}}``; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = merge_dicts(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def merge_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; values of ``override`` win."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


# -- strict typed construction ------------------------------------------------------------

def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table/object, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {_join(where, unknown[0])} "
                          f"(valid keys: {', '.join(names)})")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], _join(where, name))
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        # an integer spelled as a float (100.0, 1e2) is refused as the CLI's --steps 1e2 is:
        # one rule wherever a value comes from (flag, --set, a TOML or JSON file, Python)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug, not user input


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} {why}")


def _choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    _check(value in valid, key, value, f"is not one of: {', '.join(valid)}")
