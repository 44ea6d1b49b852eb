"""Latent priors p(z) for a VAE: the fixed N(0, I) and two learnable ones.

Why. With the fixed prior N(0, I) the aggregate posterior q(z) = E_x q(z|x) rarely fills the
whole Gaussian: it leaves "holes", regions of high prior density that no data point encodes to,
and samples drawn from there decode to junk. A learnable prior -- a Gaussian mixture
(:class:`MixturePrior`) or a RealNVP normalising flow on top of N(0, I) (:class:`FlowPrior`) --
is trained with the rest of the ELBO and moves its mass to where q(z) is.

Conventions.

* ``log_prob(z)`` takes ``[..., d]`` and returns ``[...]``: log-densities in nats, summed over
  the ``d`` latent dimensions, with every constant included (they are true normalised densities,
  so they can enter an IWAE or a Monte-Carlo KL estimate as they are). Any number of leading
  batch dimensions is accepted, e.g. ``[K, N, d] -> [K, N]``.
* ``sample(n, generator, device)`` returns ``[n, d]`` in the module's dtype. All randomness comes
  from ``generator``; the global RNG is never read or advanced. With ``generator=None`` a fresh,
  non-deterministically seeded generator is used (still not the global one). Draws are made on
  the generator's device and then moved to ``device`` (default: the module's device), so a CPU
  generator works for a module on any device.
* ``distribution()`` returns the same p(z) as a ``torch.distributions.Distribution`` with
  ``event_shape = (d,)`` (N(0, I) as ``Independent(Normal)``, the mixture as
  ``MixtureSameFamily``, the flow as :class:`PriorDistribution`, a thin view that calls this
  module's own ``log_prob`` and sampler). It is a view of the current parameters, built on each
  call: gradients flow into them, and a distribution built before a training step still holds
  the old values.
* ``is_standard`` is True only for :class:`StandardNormalPrior`, so a VAE can keep using the
  closed-form KL(q(z|x) || N(0, I)) there and fall back to a Monte-Carlo KL otherwise.
* Construction is deterministic and leaves the global RNG alone: initial values are drawn from a
  private ``torch.Generator`` seeded with ``seed`` (default 0). An untrained
  :class:`FlowPrior` is exactly N(0, I) whatever the seed (its conditioners' last layers and its
  final affine start at zero / the identity).

Everything is plain ``torch.nn`` (parameters and buffers only): it saves with ``state_dict``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)

from vaelab.config import PRIORS as CONFIG_PRIORS
from vaelab.errors import unknown_name_message
from vaelab.objectives.densities import LOG_2PI, standard_normal_log_prob

PRIORS = CONFIG_PRIORS  # the priors a model builds: the names a config takes

DeviceLike = torch.device | str | None


def _check_dim(latent_dim: int) -> int:
    if int(latent_dim) != latent_dim or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    return int(latent_dim)


class Prior(nn.Module, ABC):
    """A density p(z) over ``latent_dim``-dimensional latents (see the module docstring)."""

    latent_dim: int
    is_standard: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = _check_dim(latent_dim)

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) in nats for ``z`` of shape ``[..., d]``; returns ``[...]``."""

    @abstractmethod
    def _draw(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples on the generator's device, in the module's dtype (``[n, d]``)."""

    def forward(self, z: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(z)

    def distribution(self) -> Distribution:
        """p(z) as a ``torch.distributions.Distribution`` (``event_shape = (d,)``): by default
        a :class:`PriorDistribution` view of :meth:`log_prob` and :meth:`sample`; subclasses
        with a standard form in ``torch.distributions`` return that instead."""
        return PriorDistribution(self)

    def _anchor(self) -> Tensor:
        """Some tensor of the module, for its device and dtype."""
        for t in self.parameters():
            return t
        for t in self.buffers():
            return t
        raise RuntimeError(f"{type(self).__name__} has no parameters or buffers")

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters/buffers."""
        return self._anchor().device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's parameters/buffers."""
        return self._anchor().dtype

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: DeviceLike = None) -> Tensor:
        """``n`` draws from p(z), ``[n, d]`` on ``device`` (default: the module's device).

        Randomness only from ``generator`` (a fresh non-deterministic one when None), never from
        the global RNG. No gradient flows through the draws.
        """
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.seed()
        target = self.device if device is None else torch.device(device)
        with torch.no_grad():
            z = self._draw(int(n), generator)
        return z.to(target)

    def _normal(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """N(0, 1) draws on the generator's device in the module's dtype."""
        return torch.randn(shape, generator=generator, device=generator.device, dtype=self.dtype)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class StandardNormalPrior(Prior):
    """The fixed prior N(0, I): no parameters (``is_standard`` is True)."""

    is_standard = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        # Empty, non-persistent: only tells the device and dtype; the state_dict stays empty.
        self.register_buffer("_ref", torch.zeros(0), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def distribution(self) -> Distribution:
        """N(0, I) as ``Independent(Normal(0, 1), 1)`` on the module's device and dtype."""
        zeros = torch.zeros(self.latent_dim, device=self.device, dtype=self.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def _draw(self, n: int, generator: torch.Generator) -> Tensor:
        return self._normal((n, self.latent_dim), generator)


class MixturePrior(Prior):
    """A learned mixture of ``components`` diagonal Gaussians.

    Means start at N(0, I) draws from a private generator seeded with ``seed`` (a fixed spread
    over the region the standard prior covers), log-standard-deviations at 0, mixture logits
    at 0 (equal weights).
    """

    def __init__(self, latent_dim: int, components: int = 16, *, seed: int = 0) -> None:
        super().__init__(latent_dim)
        if int(components) != components or components < 1:
            raise ValueError(f"components must be a positive integer, got {components!r}")
        self.components = int(components)
        gen = torch.Generator().manual_seed(seed)
        self.means = nn.Parameter(torch.randn(self.components, self.latent_dim, generator=gen))
        self.log_stds = nn.Parameter(torch.zeros(self.components, self.latent_dim))
        self.logits = nn.Parameter(torch.zeros(self.components))

    def log_prob(self, z: Tensor) -> Tensor:
        diff = (z.unsqueeze(-2) - self.means) * torch.exp(-self.log_stds)  # [..., C, d]
        comp = -0.5 * (diff.pow(2) + LOG_2PI).sum(-1) - self.log_stds.sum(-1)  # [..., C]
        return torch.logsumexp(comp + F.log_softmax(self.logits, -1), dim=-1)

    def distribution(self) -> Distribution:
        """The mixture as ``MixtureSameFamily(Categorical(logits), Independent(Normal(means,
        exp(log_stds)), 1))``: the same density as :meth:`log_prob` (tests/test_priors.py),
        with torch's ``mean``, ``variance`` and component views."""
        return MixtureSameFamily(Categorical(logits=self.logits),
                                 Independent(Normal(self.means, torch.exp(self.log_stds)), 1))

    def _draw(self, n: int, generator: torch.Generator) -> Tensor:
        dev = generator.device
        probs = F.softmax(self.logits, -1).to(dev)
        idx = torch.multinomial(probs, n, replacement=True, generator=generator) if n else (
            torch.zeros(0, dtype=torch.long, device=dev))
        eps = self._normal((n, self.latent_dim), generator)
        means, log_stds = self.means.to(dev)[idx], self.log_stds.to(dev)[idx]
        return means + torch.exp(log_stds) * eps

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, components={self.components}"


class _Coupling(nn.Module):
    """One affine coupling layer: the ``mask == 1`` coordinates pass through unchanged and
    condition a shift and a bounded log-scale for the others."""

    def __init__(self, mask: Tensor, hidden: int, scale_max: float, gen: torch.Generator) -> None:
        super().__init__()
        d = mask.numel()
        # derived from the layer index, so not saved (and a copy: layers must not share it)
        self.register_buffer("mask", mask.clone(), persistent=False)
        self.scale_max = float(scale_max)
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
            self.net = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                     nn.SiLU(), nn.Linear(hidden, 2 * d))
        for layer in self.net:
            if isinstance(layer, nn.Linear):  # nn.Linear's default init, from our generator
                bound = 1.0 / math.sqrt(layer.in_features)
                with torch.no_grad():
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.uniform_(-bound, bound, generator=gen)
        last = self.net[-1]
        nn.init.zeros_(last.weight)  # the layer starts as the identity map
        nn.init.zeros_(last.bias)

    def _shift_log_scale(self, x_fixed: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(x_fixed).chunk(2, dim=-1)
        free = 1.0 - self.mask
        log_scale = self.scale_max * torch.tanh(raw / self.scale_max)
        return shift * free, log_scale * free

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Base -> data direction: ``(y, log|det dy/dx|)``."""
        shift, log_scale = self._shift_log_scale(x * self.mask)
        return x * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> base direction: ``(x, log|det dx/dy|)``."""
        shift, log_scale = self._shift_log_scale(y * self.mask)
        return (y - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class FlowPrior(Prior):
    """A RealNVP flow z = f(eps), eps ~ N(0, I): ``layers`` affine couplings with alternating
    masks, then an elementwise learned affine (ActNorm-like).

    Each coupling's conditioner is Linear-SiLU-Linear-SiLU-Linear (width ``hidden``) giving a
    shift and a log-scale bounded to ``(-scale_max, scale_max)`` by ``scale_max * tanh(raw /
    scale_max)`` for stability. The last conditioner layer is zero-initialised and the final
    affine starts as the identity, so an untrained flow is exactly N(0, I). Needs
    ``latent_dim >= 2`` (a coupling has nothing to condition on in 1-D).
    """

    def __init__(self, latent_dim: int, layers: int = 4, hidden: int = 64, *,
                 scale_max: float = 3.0, seed: int = 0) -> None:
        super().__init__(latent_dim)
        if self.latent_dim < 2:
            raise ValueError("flow prior needs latent_dim >= 2; use the mixture prior for 1-D "
                             "latents")
        if int(layers) != layers or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        if not scale_max > 0:
            raise ValueError(f"scale_max must be positive, got {scale_max!r}")
        gen = torch.Generator().manual_seed(seed)
        even = (torch.arange(self.latent_dim) % 2 == 0).float()
        self.couplings = nn.ModuleList(
            _Coupling(even if i % 2 == 0 else 1.0 - even, int(hidden), scale_max, gen)
            for i in range(int(layers)))
        self.out_log_scale = nn.Parameter(torch.zeros(self.latent_dim))
        self.out_shift = nn.Parameter(torch.zeros(self.latent_dim))

    def transform(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """z = f(eps) and log|det df/deps|, for ``eps`` of shape ``[..., d]``."""
        x = eps
        log_det = torch.zeros(eps.shape[:-1], dtype=eps.dtype, device=eps.device)
        for layer in self.couplings:
            x, ld = layer(x)
            log_det = log_det + ld
        z = x * torch.exp(self.out_log_scale) + self.out_shift
        return z, log_det + self.out_log_scale.sum()

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """eps = f^{-1}(z) and log|det df^{-1}/dz|, for ``z`` of shape ``[..., d]``."""
        x = (z - self.out_shift) * torch.exp(-self.out_log_scale)
        log_det = (-self.out_log_scale.sum()).expand(z.shape[:-1])
        for layer in reversed(self.couplings):
            x, ld = layer.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, z: Tensor) -> Tensor:
        eps, log_det = self.inverse(z)
        return standard_normal_log_prob(eps) + log_det

    def _draw(self, n: int, generator: torch.Generator) -> Tensor:
        eps = self._normal((n, self.latent_dim), generator).to(self.device)
        return self.transform(eps)[0]

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, layers={len(self.couplings)}"


class PriorDistribution(Distribution):
    """A :class:`Prior` module seen as a ``torch.distributions.Distribution`` over ``[d]``.

    No density of its own: ``log_prob`` is the module's :meth:`Prior.log_prob` (so gradients
    reach its parameters) and ``sample`` its seeded sampler (``generator`` as there; no
    gradient). ``sample_shape`` may have any number of dimensions.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.latent_dim]),
                         validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.prior.log_prob(value)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (),
               generator: torch.Generator | None = None) -> Tensor:
        shape = torch.Size(sample_shape)
        z = self.prior.sample(shape.numel(), generator)
        return z.reshape(*shape, self.prior.latent_dim)

    def __repr__(self) -> str:
        return f"PriorDistribution({self.prior!r})"


def build_prior(kind: str, latent_dim: int, *, components: int = 16, layers: int = 4,
                hidden: int = 64, seed: int = 0) -> Prior:
    """The prior named ``kind`` (one of :data:`PRIORS`) over ``latent_dim`` dimensions.

    ``components`` is for ``"mixture"``, ``layers``/``hidden`` for ``"flow"``; ``seed`` seeds
    the private generator of the initial values (the global RNG is not touched).
    """
    if kind == "standard":
        return StandardNormalPrior(latent_dim)
    if kind == "mixture":
        return MixturePrior(latent_dim, components, seed=seed)
    if kind == "flow":
        return FlowPrior(latent_dim, layers, hidden, seed=seed)
    raise ValueError(unknown_name_message("prior", str(kind), list(PRIORS)))


__all__ = ["PRIORS", "FlowPrior", "MixturePrior", "Prior", "PriorDistribution",
           "StandardNormalPrior", "build_prior"]
