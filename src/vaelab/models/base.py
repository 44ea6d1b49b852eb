"""The VAE interface every vaelab model implements: a generator and an evaluator.

Named outputs only: :class:`Encoding` and :class:`VAEOutput` are NamedTuples, so
``out.mu`` reads what it says (and they still work with ``torch.compile`` and ``vmap``).

Units. A model works internally on standardised data ``u = (x - shift) / scale`` (the identity
unless :meth:`BaseVAE.set_standardization` was called, as for user files; the seed preset does
not standardise), or ``u = ((x - shift) @ R) / scale`` where it decorrelates (R orthogonal, the
training data's principal axes; |det R| = 1, so the Jacobian below is unchanged). ``encode``
takes and ``decode``/``sample`` return points in the *data's own units*, and every log-density
is in nats per data point in those units: the Jacobian ``-sum(log scale)`` of the
standardisation is included.

Prior. ``self.prior`` is a :class:`~vaelab.models.priors.Prior`: N(0, I) (the seed's, with a
closed-form KL) unless :meth:`BaseVAE.set_prior` installs a learned one (then the KL term is
estimated by the same samples as the reconstruction: log q(z|x) - log p(z)).

Likelihood. p(x|z) = N(x; decode(z), diag(scale * sigma)^2) where ``sigma`` (per data dimension,
internal units) is either fixed — for the seed's MSE loss, sqrt(D * kld_weight / 2), the variance
under which that loss is an ELBO — or learned, ``sigma = min_std + softplus(raw)``, which keeps
the likelihood bounded; or, with :meth:`BaseVAE.configure_likelihood` ``per_point=True``, a
function of z: ``sigma(z) = min_std + softplus(std_head(h(z) / width))``, h the decoder's last
hidden layer; or, with ``full=True``, a full covariance that depends on z,
p(u|z) = N(u; mean(z), L(z) L(z)^T), L(z) lower triangular with the diagonal
``min_std + softplus(.)`` and the entries below it linear, all read from h(z) / width by one
head. :meth:`BaseVAE.decode_params_internal` is the one place that gives (mean, sigma or L) of
p(x|z): the loss, the estimators of log p(x) and :meth:`BaseVAE.sample` all read it there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.config import LOSSES
from vaelab.models.priors import Prior, StandardNormalPrior
from vaelab.objectives import (
    LossTerms,
    gaussian_log_likelihood,
    gaussian_loss,
    gaussian_tril_log_likelihood,
    iwae_loss,
    kl_to_standard_normal,
    log_normal_diag,
    seed_loss,
)

OBJECTIVES = LOSSES  # the objectives a model computes: the loss names a config takes


#: activation values (rows x layer widths) that :meth:`BaseVAE.sample` decodes at once
DECODE_MAX_VALUES = 1 << 26


def values_per_row(module: nn.Module) -> int:
    """Activation values one row (a point x sample) holds in a pass of ``module``: the outputs
    of its layers (rows of its 2-D weights) and, for a VAE with a full decoder covariance,
    L(z)'s D x D. What the chunked decoders and estimators of log p(x) count."""
    width = sum(p.shape[0] for p in module.parameters() if p.ndim == 2)
    if isinstance(module, BaseVAE) and module.full_covariance:
        width += module.in_channels ** 2
    return width


class Encoding(NamedTuple):
    """Parameters of q(z|x) = N(mu, diag exp(log_var))."""

    mu: torch.Tensor
    log_var: torch.Tensor


class VAEOutput(NamedTuple):
    """One pass x -> q(z|x) -> z -> x_hat (x and x_hat in internal, standardised units)."""

    x_hat: torch.Tensor  # decoder mean for the sampled z: [N, D], or [S, N, D]
    x: torch.Tensor  # the input [N, D]
    mu: torch.Tensor  # posterior mean [N, d]
    log_var: torch.Tensor  # posterior log-variance [N, d]
    z: torch.Tensor  # reparameterised sample(s) from q(z|x): [N, d], or [S, N, d]
    x_std: torch.Tensor | None = None  # decoder sigma(z) shaped as x_hat; None: global sigma


class BaseVAE(nn.Module, ABC):
    """Encoder q(z|x), decoder mean x_hat(z), Gaussian likelihood, prior p(z).

    Subclasses implement the networks, :meth:`encode_internal` and :meth:`decode_internal`,
    on standardised data; this class does units, sampling, likelihood and the loss.
    """

    in_channels: int
    latent_dim: int

    def __init__(self, in_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.register_buffer("data_shift", torch.zeros(in_channels))
        self.register_buffer("data_scale", torch.ones(in_channels))
        self.register_buffer("data_rotation", None)  # a tensor once enable_rotation()
        self._standardized = False
        self.learn_std = False
        self.min_std = 0.0
        self.register_buffer("obs_std_fixed", torch.ones(in_channels))
        self.std_head: nn.Linear | None = None  # sigma(z)'s head (configure_likelihood)
        self.full_covariance = False  # the head gives L(z) of a full covariance
        self.objective = "seed_mse"
        self.kld_weight = 1.0
        self.samples = 1  # posterior samples per point in the training loss (IWAE's k)
        self.prior: Prior = StandardNormalPrior(latent_dim)

    # -- networks on internal units ---------------------------------------------------
    @abstractmethod
    def encode_internal(self, u: torch.Tensor) -> Encoding:
        """Posterior parameters for standardised points ``[..., in_channels]``."""

    @abstractmethod
    def decode_internal(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean, in standardised units, for latent codes ``[..., latent_dim]``."""

    def decode_features(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden layer for ``z``, where a model offers sigma(z) (the mean
        is :meth:`mean_from_features` of it)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder sigma(z)")

    def mean_from_features(self, h: torch.Tensor) -> torch.Tensor:
        """The decoder mean from :meth:`decode_features`' output."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder sigma(z)")

    def feature_width(self) -> int:
        """The width of :meth:`decode_features`' output."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder sigma(z)")

    # -- units ---------------------------------------------------------------------------
    def set_standardization(self, shift: torch.Tensor, scale: torch.Tensor,
                            rotation: torch.Tensor | None = None) -> None:
        """Standardise inputs with ``(x - shift) / scale`` (fit on the training set), or with
        ``((x - shift) @ rotation) / scale`` where the model decorrelates
        (:meth:`enable_rotation`): ``rotation`` orthogonal, its columns the principal axes
        (None keeps the model's own)."""
        if shift.shape != (self.in_channels,) or scale.shape != (self.in_channels,):
            raise ValueError("shift and scale must have shape [in_channels]")
        if not (torch.isfinite(shift).all() and torch.isfinite(scale).all()
                and (scale > 0).all()):
            raise ValueError("shift must be finite and scale finite and > 0")
        if rotation is not None and self.data_rotation is None:
            raise ValueError("a rotation needs a model that decorrelates (enable_rotation)")
        if rotation is not None:
            eye = torch.eye(self.in_channels, dtype=torch.float64)
            if (rotation.shape != eye.shape
                    or not torch.allclose(rotation.double().T @ rotation.double(), eye,
                                          atol=1e-4)):
                raise ValueError("rotation must be an orthogonal [in_channels, in_channels]")
            self.data_rotation.copy_(rotation)
        self.data_shift.copy_(shift)
        self.data_scale.copy_(scale)
        self._standardized = True

    def enable_rotation(self) -> None:
        """Decorrelate before standardising: a ``data_rotation`` buffer (the identity until
        :meth:`set_standardization` fits it) turns the centred data onto its principal axes.
        An orthogonal map has |det| = 1, so the log-Jacobian stays ``-sum(log scale)``."""
        self.data_rotation = torch.eye(self.in_channels, device=self.data_shift.device)

    def enable_standardization(self) -> None:
        """Apply the (saved) ``data_shift`` / ``data_scale`` buffers: used when loading a run."""
        self._standardized = True

    @property
    def standardized(self) -> bool:
        return self._standardized

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Data units -> internal units: ``((x - shift) [@ rotation]) / scale``."""
        if not self._standardized:
            return x
        if self.data_rotation is None:
            return (x - self.data_shift) / self.data_scale
        return ((x - self.data_shift) @ self.data_rotation) / self.data_scale

    def unstandardize(self, u: torch.Tensor) -> torch.Tensor:
        """Internal units -> data units, :meth:`standardize` undone."""
        if not self._standardized:
            return u
        if self.data_rotation is None:
            return u * self.data_scale + self.data_shift
        return (u * self.data_scale) @ self.data_rotation.T + self.data_shift

    def log_jacobian(self) -> torch.Tensor:
        """log |du/dx| = -sum(log scale): added to internal log-densities to get data units."""
        return -torch.log(self.data_scale).sum()

    # -- likelihood --------------------------------------------------------------------------
    def configure_likelihood(self, std: float | torch.Tensor, learn: bool = False,
                             min_std: float = 0.0, per_point: bool = False,
                             full: bool = False) -> None:
        """Fix sigma (internal units) or learn it from ``std``, floored at ``min_std``.

        ``per_point``: sigma is a function of z, ``min_std + softplus(std_head(h / width))``,
        h the decoder's last hidden layer; the head's weights start at 0 and its bias at ``std``, so
        sigma(z) starts as the global sigma (no random draw: the RNG stream is unchanged).
        ``full`` (with ``per_point``): the head also gives the D (D - 1) / 2 entries below the
        diagonal of L(z), the Cholesky factor of a full covariance L L^T; they start at 0, so
        training starts from the diagonal sigma(z)."""
        std_t = torch.as_tensor(std, dtype=torch.float32).expand(self.in_channels).clone()
        if not (std_t > min_std).all():
            raise ValueError(f"decoder std {std} must exceed its floor {min_std}")
        if per_point and not (learn and min_std > 0):
            raise ValueError("a decoder sigma(z) is learned and needs a floor min_std > 0")
        if full and not per_point:
            raise ValueError("a full decoder covariance is a function of z (per_point=True)")
        self.learn_std, self.min_std = learn, float(min_std)
        if per_point:
            d = self.in_channels
            head = nn.Linear(self.feature_width(), d + (d * (d - 1) // 2 if full else 0))
            with torch.no_grad():
                head.weight.zero_()
                head.bias.zero_()
                head.bias[:d].copy_(torch.log(torch.expm1(std_t - min_std)))
            self.std_head = head
            self.full_covariance = full
        elif learn:
            # sigma = min_std + softplus(raw); invert softplus for the initial value
            raw = torch.log(torch.expm1(std_t - min_std))
            self.obs_std_raw = nn.Parameter(raw)
        else:
            self.obs_std_fixed.copy_(std_t)

    @property
    def std_depends_on_z(self) -> bool:
        """Whether the decoder's sigma is a function of z (``decoder_std_mode`` ``latent`` or
        ``full``)."""
        return self.std_head is not None

    def obs_std(self) -> torch.Tensor:
        """sigma per data dimension, internal units, ``[in_channels]``: the global sigma. A
        model whose sigma depends on z has none (:meth:`decode_params_internal` gives it)."""
        if self.std_head is not None:
            raise ValueError("this decoder's sigma depends on z: use decode_params_internal(z)")
        if self.learn_std:
            return self.min_std + F.softplus(self.obs_std_raw)
        return self.obs_std_fixed

    def decode_params_internal(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, sigma) of p(u|z) in internal units: the mean ``[..., D]`` and sigma, either
        ``[..., D]`` like the mean (sigma(z)) or the global ``[D]``; both broadcast against u.
        With a full covariance, L(z) ``[..., D, D]`` (lower triangular) in place of sigma.
        Every reader of the decoder's likelihood goes through here."""
        if self.std_head is None:
            return self.decode_internal(z), self.obs_std()
        h = self.decode_features(z)
        # the head reads h / width: Adam moves each of its weights by about lr a step, so
        # unscaled, the width's weights together would move sigma(z) width-times faster
        # than the global sigma's one parameter (measured: the posterior collapsed)
        a = self.std_head(h / h.shape[-1])
        d = self.in_channels
        std = self.min_std + F.softplus(a[..., :d])
        if not self.full_covariance:
            return self.mean_from_features(h), std
        rows, cols = torch.tril_indices(d, d, -1, device=a.device)
        below = a.new_zeros(*a.shape[:-1], d, d)
        below[..., rows, cols] = a[..., d:]
        return self.mean_from_features(h), below + torch.diag_embed(std)

    def log_likelihood_internal(self, u: torch.Tensor, u_hat: torch.Tensor,
                                std: torch.Tensor | None = None) -> torch.Tensor:
        """log N(u; u_hat, diag std^2) summed over data dimensions, internal units, nats;
        ``std`` None: the global sigma (:meth:`obs_std`). With a full covariance ``std`` is
        L(z) and this is log N(u; u_hat, L L^T)."""
        if self.full_covariance:
            return gaussian_tril_log_likelihood(u, u_hat, std)
        return gaussian_log_likelihood(u, u_hat, self.obs_std() if std is None else std)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per point, data units (Jacobian included); broadcasts."""
        u = self.standardize(x)
        u_hat, std = self.decode_params_internal(z)
        return self.log_likelihood_internal(u, u_hat, std) + self.log_jacobian()

    # -- prior -------------------------------------------------------------------------------
    def set_prior(self, prior: Prior) -> None:
        """Replace p(z) (its latent size must match the model's)."""
        if prior.latent_dim != self.latent_dim:
            raise ValueError(f"prior has latent_dim {prior.latent_dim}, model {self.latent_dim}")
        self.prior = prior

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over latent dimensions; ``z`` is ``[..., latent_dim]``."""
        return self.prior.log_prob(z)

    def prior_distribution(self) -> Distribution:
        """p(z) as a ``torch.distributions.Distribution`` with ``event_shape = (latent_dim,)``:
        ``Independent(Normal)`` for N(0, I), ``MixtureSameFamily`` for the learned mixture, a
        :class:`~vaelab.models.priors.PriorDistribution` view for the flow. Its ``log_prob`` is
        :meth:`log_prior` (nats, summed over latent dimensions)."""
        return self.prior.distribution()

    def sample_prior(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` latent codes z ~ p(z), ``[n, latent_dim]``."""
        return self.prior.sample(n, generator, device)

    # -- objective ---------------------------------------------------------------------------
    def configure_objective(self, name: str, kld_weight: float, samples: int = 1) -> None:
        """``seed_mse`` (MSE + w KL), ``gaussian`` (-E_q log p(x|z) + w KL) or ``iwae`` (the
        importance-weighted bound with ``samples`` draws per point)."""
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r}")
        if samples < 1 or (samples > 1 and name != "iwae"):
            raise ValueError(f"samples = {samples} needs the iwae objective")
        self.objective, self.kld_weight, self.samples = name, float(kld_weight), int(samples)

    def loss(self, out: VAEOutput, kld_weight: float | None = None) -> LossTerms:
        """The configured training loss on one pass; ``neg_elbo`` is in data units.

        ``kld_weight`` overrides the configured weight for this call (a KL warm-up).
        """
        w = self.kld_weight if kld_weight is None else kld_weight
        if self.objective == "seed_mse":
            # a learned prior is trained through the KL term: its one-sample estimate
            # log q(z|x) - log p(z) at the sampled z (N(0, I) keeps the seed's closed form)
            kl = None if self.prior.is_standard else (
                log_normal_diag(out.z, out.mu, out.log_var) - self.log_prior(out.z))
            terms = seed_loss(out.x, out.x_hat, out.mu, out.log_var, w, kl)
            if self._standardized:
                terms = terms._replace(neg_elbo=terms.neg_elbo - self.log_jacobian())
            return terms
        log_lik = self.log_likelihood_internal(out.x, out.x_hat, out.x_std) + self.log_jacobian()
        if self.objective == "gaussian" and self.prior.is_standard:
            return gaussian_loss(log_lik, kl_to_standard_normal(out.mu, out.log_var), w)
        # log q(z|x) - log p(z) at the sampled z: a one-sample KL for each draw
        log_ratio = (log_normal_diag(out.z, out.mu, out.log_var) - self.log_prior(out.z))
        if self.objective == "gaussian":
            return gaussian_loss(log_lik, log_ratio, w)
        if out.z.ndim == 2:  # a single draw per point: the bound is the ELBO
            log_lik, log_ratio = log_lik.unsqueeze(0), log_ratio.unsqueeze(0)
        return iwae_loss(log_lik, log_ratio, w)

    # -- the VAE ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Encoding:
        """Posterior parameters for points ``[N, in_channels]`` in data units."""
        return self.encode_internal(self.standardize(x))

    def posterior(self, x: torch.Tensor) -> Distribution:
        """q(z|x) as ``Independent(Normal(mu, exp(log_var / 2)), 1)``: batch shape ``[N]``,
        event shape ``[latent_dim]``, reparameterised (``rsample``), differentiable.

        ``x`` is in the data's own units, ``[N, in_channels]``; like :meth:`encode` it is
        standardised first, as the encoder was trained on standardised points, so q(z|x) here
        is exactly the posterior every estimator and the training loss use. The latent z has no
        units of its own (the prior is N(0, I) or learned over it)."""
        mu, log_var = self.encode(x)
        return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in data units for latent codes ``[N, latent_dim]``."""
        return self.unstandardize(self.decode_internal(z))

    @staticmethod
    def reparameterize(mu: torch.Tensor, log_var: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(log_var / 2) * eps, eps ~ N(0, I): differentiable in mu and log_var."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * log_var) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                samples: int | None = None, eps: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample z, decode. ``x_hat`` and ``x`` of the output are internal units.

        ``samples=None``: one draw per point (z ``[N, d]``); an integer S: S draws per point
        (z ``[S, N, d]``), as the IWAE objective needs. Training passes ``self.samples``.
        ``eps``: the standard-normal noise to use instead of drawing it (``[N, d]`` or
        ``[S, N, d]``), so that a caller such as ``torch.func.vmap`` can supply it.
        """
        u = self.standardize(x)
        mu, log_var = self.encode_internal(u)
        if samples is not None:
            mu_s = mu.expand(samples, *mu.shape)
            log_var_s = log_var.expand(samples, *log_var.shape)
        else:
            mu_s, log_var_s = mu, log_var
        if eps is None:
            z = self.reparameterize(mu_s, log_var_s, generator)
        else:
            if eps.shape != mu_s.shape:
                raise ValueError(f"eps has shape {tuple(eps.shape)}, expected "
                                 f"{tuple(mu_s.shape)}")
            z = mu_s + torch.exp(0.5 * log_var_s) * eps
        if self.std_head is None:
            return VAEOutput(x_hat=self.decode_internal(z), x=u, mu=mu, log_var=log_var, z=z)
        x_hat, x_std = self.decode_params_internal(z)
        return VAEOutput(x_hat=x_hat, x=u, mu=mu, log_var=log_var, z=z, x_std=x_std)

    def _decode_bounded(self, z: torch.Tensor, with_std: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(``decode_internal(z)``, and sigma of p(u|z) if ``with_std``, else None) with at
        most :data:`DECODE_MAX_VALUES` activation values in flight: a large ``n`` or a wide
        decoder is decoded in chunks of rows (what a smaller call decodes at once, as before,
        so its numbers stay the same)."""
        rows = max(1, DECODE_MAX_VALUES // max(1, values_per_row(self)))
        def by_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
            return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

        chunks = [z] if z.shape[0] <= rows else list(torch.split(z, rows))
        if not (with_std and self.std_depends_on_z):  # the mean alone; sigma is global
            mean = by_rows([self.decode_internal(c) for c in chunks])
            return mean, self.obs_std() if with_std else None
        parts = [self.decode_params_internal(c) for c in chunks]
        return by_rows([m for m, _ in parts]), by_rows([s for _, s in parts])

    def training_samples(self) -> int | None:
        """What :meth:`forward` should be given in training: None (one draw) or IWAE's k."""
        return self.samples if self.objective == "iwae" else None

    def sample_noise(self, noise: bool | None = None) -> bool:
        """Whether :meth:`sample` adds decoder noise for ``noise`` (see there)."""
        return self.objective != "seed_mse" if noise is None else bool(noise)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None,
               noise: bool | None = None) -> torch.Tensor:
        """Generate ``n`` points: decode z ~ p(z) (the model's prior).

        ``noise=True``: a draw from p(x|z) too, i.e. from the model's full generative
        distribution p(x); ``False``: the decoder means x_hat(z). ``None`` (the default, here,
        in :meth:`vaelab.runs.Run.sample` and ``vaelab sample``): what the model's objective
        trained, decoder means for the seed's MSE loss (its variance is only implied, and the
        blog shows means), p(x) itself for a Gaussian likelihood (``gaussian``, ``iwae``).
        """
        if device is None:
            device = next(self.parameters()).device
        z = self.sample_prior(n, generator, device)
        noisy = self.sample_noise(noise)
        u, std = self._decode_bounded(z, with_std=noisy)
        if noisy:  # a draw from p(u|z): sigma global or sigma(z), as the likelihood's
            eps = torch.randn(u.shape, generator=generator, device=device)
            u = u + ((std @ eps.unsqueeze(-1)).squeeze(-1) if self.full_covariance
                     else std * eps)
        return self.unstandardize(u)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruct ``x`` (data units): encode, sample z from q(z|x), decode."""
        return self.unstandardize(self.forward(x, generator).x_hat)
