"""A run's config in words: its data, model, objective and prior, and what differs from its
preset. Figures and the report take their titles and legends from here, so that what they
say follows the run that was actually trained (the default preset trains the IWAE bound with
a learned mixture prior; the seed preset the MSE + KLD loss with N(0, I))."""

from __future__ import annotations

from typing import Any

from vaelab.config import RunConfig
from vaelab.errors import ConfigError

#: filled in from the data when a run starts (:func:`vaelab.resolve.prepare`), so a preset's
#: ``None`` there is not a setting the user changed (those that depend on the training rows,
#: which a config does not record, whatever the value; the others in :func:`_from_data`)
_RESOLVED = {"model.in_channels", "data.noise", "data.standardize", "model.hidden_dims",
             "train.validation"}
_NOT_KNOWN = object()


def _from_data(path: str, cfg: RunConfig, base: RunConfig) -> Any:
    """What the preset's ``None`` at ``path`` resolves to for this run's data (its columns,
    and whether it is a file), or ``_NOT_KNOWN``: the value the run has when the user left it
    to the data, which is then no change."""
    from vaelab.data.registry import is_file_name
    from vaelab.resolve import components_for, decorrelate_for, latent_for, std_mode_for

    columns = cfg.model.in_channels
    if columns is None:
        return _NOT_KNOWN
    is_file = is_file_name(cfg.data.name)
    if path == "model.latent_dim":
        return latent_for(None, columns)
    if path == "model.prior_components":
        return components_for(None, columns)
    if path == "loss.decoder_std_mode":
        return std_mode_for(base.loss, columns, is_file)
    if path == "data.decorrelate":
        return decorrelate_for(None, bool(cfg.data.standardize), is_file)
    return _NOT_KNOWN


def prior_short(cfg: RunConfig) -> str:
    """p(z) in a few words: ``N(0, I)``, ``learned mixture of 16 Gaussians``, ..."""
    m = cfg.model
    if m.prior == "mixture":
        return f"learned mixture of {m.prior_components} Gaussians"
    if m.prior == "flow":
        return f"learned RealNVP flow ({m.prior_layers} couplings)"
    return "N(0, I)"


def prior_words(cfg: RunConfig) -> str:
    """p(z) in a sentence's words."""
    m = cfg.model
    if m.prior == "mixture":
        return (f"a learned mixture of {m.prior_components} diagonal Gaussians in "
                f"{m.latent_dim}-D")
    if m.prior == "flow":
        return (f"a learned RealNVP flow of {m.prior_layers} affine couplings (width "
                f"{m.prior_hidden}) on N(0, I), in {m.latent_dim}-D")
    return f"the standard normal N(0, I) in {m.latent_dim}-D"


def objective_short(cfg: RunConfig) -> str:
    """The training loss as a figure's legend names it."""
    lo = cfg.loss
    w = f"{lo.kld_weight:g}"
    if lo.name == "iwae":
        return f"-IWAE bound (k = {lo.k})" if lo.kld_weight == 1 else \
            f"-IWAE-type loss (k = {lo.k}, KL weight {w})"
    if lo.name == "gaussian":
        return "-ELBO" if lo.kld_weight == 1 else f"-E log p(x|z) + {w} x KL"
    return f"seed loss MSE + {w} x KLD"


def decoder_words(cfg: RunConfig) -> str:
    """The decoder's likelihood p(x|z)."""
    lo = cfg.loss
    dim = cfg.model.in_channels
    if lo.name == "seed_mse":
        where = f"D = {dim}: " if dim else ""
        return (f"a Gaussian decoder whose variance is implied by the loss "
                f"({where}sigma^2 = D x {lo.kld_weight:g} / 2, fixed)")
    if lo.decoder_std_mode == "full":
        start = "" if lo.decoder_std is None else f" from sigma = {lo.decoder_std:g}"
        return (f"a Gaussian decoder whose full covariance depends on z (a learned Cholesky "
                f"factor from a head on the decoder, started{start}, diagonal floor "
                f"{lo.min_decoder_std:g})")
    if lo.decoder_std_mode == "latent":
        start = "" if lo.decoder_std is None else f" from {lo.decoder_std:g}"
        return (f"a Gaussian decoder whose sigma depends on z (a learned head on the "
                f"decoder, started{start}, floor {lo.min_decoder_std:g})")
    if lo.learn_decoder_std:
        start = "" if lo.decoder_std is None else f" from {lo.decoder_std:g}"
        return (f"a Gaussian decoder with a learned sigma per dimension (started{start}, "
                f"floor {lo.min_decoder_std:g})")
    sigma = "sqrt(D/2)" if lo.decoder_std is None else f"{lo.decoder_std:g}"
    return f"a Gaussian decoder with a fixed sigma = {sigma}"


def objective_words(cfg: RunConfig) -> str:
    """The training objective in a sentence's words."""
    lo = cfg.loss
    if lo.name == "iwae":
        what = (f"the importance-weighted bound (IWAE) with k = {lo.k} samples per point"
                if lo.kld_weight == 1 else
                f"an IWAE-type loss with k = {lo.k} and KL weight {lo.kld_weight:g} "
                "(not a bound)")
    elif lo.name == "gaussian":
        what = ("the ELBO" if lo.kld_weight == 1 else
                f"-E log p(x|z) + {lo.kld_weight:g} x KL (a beta-VAE, not a bound)")
    else:
        what = (f"the seed's loss, MSE + {lo.kld_weight:g} x KLD (an ELBO up to a constant "
                "and a factor)")
    warm = (f", the KL weight rising from 0 over the first {lo.kl_warmup:.0%} of training"
            if lo.kl_warmup else "")
    return f"{what}, with {decoder_words(cfg)}{warm}"


def data_words(cfg: RunConfig) -> str:
    d = cfg.data
    noise = "" if d.noise is None else f", noise {d.noise:g}"
    stream = (f"a fixed training set of {d.n_train} points" if d.n_train is not None
              else f"a fresh batch of {cfg.train.batch_size} points every step")
    std = ", standardised inside the model" if d.standardize else ""
    return f"{d.name}{noise} ({stream}{std})"


def model_words(cfg: RunConfig) -> str:
    m = cfg.model
    dim = m.in_channels if m.in_channels is not None else "D"
    hidden = m.hidden_dims if m.hidden_dims is not None else ["(by the data)"]
    enc = " -> ".join(str(v) for v in [dim, *hidden, m.latent_dim])
    dec_dims = m.decoder_hidden_dims or list(reversed(hidden))
    dec = " -> ".join(str(v) for v in [m.latent_dim, *dec_dims, dim])
    return f"a {m.name} VAE: encoder {enc}, decoder {dec} ({m.activation})"


def training_words(cfg: RunConfig) -> str:
    o, t = cfg.optim, cfg.train
    length = (f"{t.steps} steps" if t.time_limit is None else
              f"{t.time_limit:g} s" + (f" (at most {t.steps} steps)" if t.steps else ""))
    return (f"{length} of Adam, learning rate {o.lr:g} ({o.scheduler} schedule), "
            f"batch {t.batch_size}, seed {t.seed}")


def kept_words(summary: dict[str, Any]) -> str | None:
    """Which step's weights a run kept, where it chose them on training rows set aside
    (``train.validation``; its summary's ``validation``); None where it did not."""
    v = summary.get("validation")
    if not v:
        return None
    rows = f"{v['rows']:,} training rows set aside"
    if v["kept"] == "best":
        return (f"kept the weights of step {v['best_step']:,}, whose IWAE NLL on {rows} was "
                f"the best ({v['best_nll']:.4f} nats/row; {v['final_nll']:.4f} at step "
                f"{v['final_step']:,}, worse by {v['final_minus_best']:.4f} ± "
                f"{v['final_minus_best_stderr']:.4f})")
    if v["best_step"] == v["final_step"]:
        return f"kept the last step's weights, the best on {rows} ({v['final_nll']:.4f} nats/row)"
    return (f"kept the last step's weights: on {rows} ({v['final_nll']:.4f} nats/row) they "
            f"are within {v['final_minus_best']:.4f} ± {v['final_minus_best_stderr']:.4f} of "
            f"the best check's (step {v['best_step']:,}), whose weights carry more noise")


def settings_changed(cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted path, the preset's value, the run's value)`` for each setting that differs
    from the run's preset (from the built-in defaults for a config without one)."""
    from vaelab.presets import get_preset

    try:
        base = get_preset(cfg.preset) if cfg.preset else RunConfig()
    except ConfigError:  # a preset this version no longer has
        base = RunConfig()
    out: list[tuple[str, Any, Any]] = []
    ours, theirs = cfg.to_dict(), base.to_dict()
    for section, values in ours.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            path, before = f"{section}.{key}", theirs[section].get(key)
            if value == before or (path in _RESOLVED and before is None):
                continue
            if before is None and value == _from_data(path, cfg, base):
                continue
            out.append((path, before, value))
    return out


def run_title(cfg: RunConfig) -> str:
    """``seed preset: swiss_roll, seed loss MSE + 1 x KLD, p(z) = N(0, I)``."""
    name = f"{cfg.preset} preset" if cfg.preset else "custom config"
    return f"{name}: {cfg.data.name}, {objective_short(cfg)}, p(z) = {prior_short(cfg)}"
