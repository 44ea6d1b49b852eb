"""A trained VAE in PyTorch's conventions: ``log_prob`` per point, and the model's marginal
p(x) as a ``torch.distributions.Distribution``.

Convention: ``log p(x)`` in nats per data point, in the data's own units (the model's
standardisation u = (x - shift) / scale is undone by its log-Jacobian ``-sum(log scale)``,
exactly as ``vaelab logp`` and ``vaelab evaluate`` count it), estimated by one of
:data:`vaelab.estimators.ESTIMATORS`: ``iwae`` (default: log (1/K) sum_k p(x|z_k) p(z_k) /
q(z_k|x), z_k ~ q(z|x)), ``elbo`` or ``prior-mc``. With the same ``k`` and ``seed`` the
numbers are those of ``vaelab logp RUN --k K --seed S`` (the same draws); another seed differs
only by Monte Carlo error. No density is defined here: every term is the model's own
(:mod:`vaelab.estimators.log_density`).

Shapes and devices follow ``torch.distributions``: points ``[..., D]`` give ``[...]``, on the
points' device and in their (floating) dtype. The estimate itself runs on the model's device,
in the model's dtype, reduced in float64, with at most ``max_elements`` (points x samples) in
flight, so any number of points fits in bounded memory. It is an estimate, not a differentiable
density: no gradient flows through it.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, constraints

from vaelab.estimators.log_density import DEFAULT_MAX_ELEMENTS, ESTIMATORS
from vaelab.models.base import BaseVAE

#: ``k`` when none is given: that of ``vaelab logp`` and ``vaelab evaluate``
DEFAULT_K = 1000


def _model_generator(model: BaseVAE, seed: int | None,
                     generator: torch.Generator | None) -> torch.Generator:
    """``generator`` if given (it must live on the model's device), else one seeded by
    ``seed`` (None: a fresh, non-deterministic seed; never the global RNG)."""
    device = next(model.parameters()).device
    if generator is not None:
        if generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device}, the model on {device}")
        return generator
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _check_estimator(estimator: str, k: int) -> None:
    """A ValueError unless ``estimator`` is one of ESTIMATORS and ``k`` a positive integer."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r} (valid: {', '.join(ESTIMATORS)})")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def log_prob(model: BaseVAE, x: torch.Tensor, k: int = DEFAULT_K, estimator: str = "iwae", *,
             seed: int | None = 0, generator: torch.Generator | None = None,
             max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """log p(x) of ``model`` per point (see the module docstring): ``x`` ``[..., D]`` ->
    ``[...]`` on ``x``'s device and dtype.

    ``k``: samples per point; ``estimator``: ``iwae``, ``elbo`` or ``prior-mc``. The draws come
    from ``generator`` when given (advanced by the call), else from a generator seeded with
    ``seed`` (default 0, as ``vaelab logp``; None: not reproducible).
    """
    _check_estimator(estimator, k)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    d = model.in_channels
    if x.ndim < 1 or x.shape[-1] != d:
        raise ValueError(f"points must have shape [..., {d}], got {tuple(x.shape)}")
    batch = x.shape[:-1]
    gen = _model_generator(model, seed, generator)
    was_training = model.training
    model.eval()
    try:
        out = ESTIMATORS[estimator](model, x.detach().reshape(-1, d), int(k), generator=gen,
                                    max_elements=max_elements)
    finally:
        model.train(was_training)
    return out.to(device=x.device, dtype=x.dtype).reshape(batch)


class VAEMarginal(Distribution):
    """The model's marginal p(x) = E_{p(z)} p(x|z) over ``[D]`` (zuko's style: a small
    ``Distribution``, ``event_shape = (D,)``, real support, no ``rsample``).

    * ``log_prob(x)``: the estimate of :func:`log_prob` with this object's ``k``,
      ``estimator`` and ``seed`` (every call with the same seed draws the same samples, so
      equal points get equal numbers).
    * ``sample(shape)``: decoded prior draws, as :meth:`vaelab.models.BaseVAE.sample` with the
      same ``noise`` convention (None: what the objective trained: decoder means for the
      seed's MSE loss, full p(x) draws for ``gaussian``/``iwae``; True: always a draw from the
      p(x) that ``log_prob`` estimates; False: decoder means). Randomness from ``generator``
      when given, else from this object's own generator, seeded once by ``seed``: the same
      ``VAEMarginal(model, seed=s)`` gives the same sequence of samples. Points come back on
      the model's device, in its dtype.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, model: BaseVAE, k: int = DEFAULT_K, estimator: str = "iwae", *,
                 seed: int | None = 0, noise: bool | None = None,
                 max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
        _check_estimator(estimator, k)
        self.model, self.k, self.estimator = model, int(k), estimator
        self.seed, self.noise, self.max_elements = seed, noise, max_elements
        self._generator = _model_generator(model, seed, None)
        super().__init__(batch_shape=torch.Size(),
                         event_shape=torch.Size([model.in_channels]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return log_prob(self.model, value, self.k, self.estimator, seed=self.seed,
                        max_elements=self.max_elements)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (),
               generator: torch.Generator | None = None) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        gen = self._generator if generator is None else _model_generator(self.model, None,
                                                                         generator)
        was_training = self.model.training
        self.model.eval()
        try:
            x = self.model.sample(shape.numel(), generator=gen, noise=self.noise)
        finally:
            self.model.train(was_training)
        return x.reshape(*shape, self.model.in_channels)

    def __repr__(self) -> str:
        return (f"VAEMarginal(D={self.model.in_channels}, k={self.k}, "
                f"estimator={self.estimator!r}, noise={self.noise})")


__all__ = ["DEFAULT_K", "VAEMarginal", "log_prob"]
