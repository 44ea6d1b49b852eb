"""The M models one training loop trains, as one set of tensors.

One model (M = 1) is trained as itself: its own parameters, its own forward and loss. A group
(M > 1, configs differing only in seed, learning rate and KL weight) has its weights stacked
along a leading model axis (``torch.func.stack_module_state``): one ``torch.func.vmap`` of
the model's own forward and loss runs all M, every Linear becoming one batched matrix
product, and one backward of the summed loss gives each model its own gradient (the models
share nothing). Batched kernels round differently from one model's, so a model trained in a
group is the same training process as a single run with its seed, not a bit-copy of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from vaelab.models import BaseVAE
from vaelab.models.explicit import ExplicitStep, split_parameters


class _LossOf(nn.Module):
    """forward(x, eps, kld_weight) -> (the loss terms stacked, z): what vmap maps over."""

    def __init__(self, model: BaseVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor,
                kld_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x, eps=eps, samples=self.model.training_samples())
        return torch.stack(tuple(self.model.loss(out, kld_weight=kld_weight))), out.z


class ModelStack:
    """``models`` as the loop trains them: ``params`` and ``buffers`` by name, the models'
    own tensors (M = 1) or stacked ``[M, ...]`` copies (M > 1), which :meth:`sync` copies
    back into the modules."""

    def __init__(self, models: list[BaseVAE]) -> None:
        self.models = models
        self.count = len(models)
        self.stacked = self.count > 1
        self.device = next(models[0].parameters()).device
        if self.stacked:
            self.template = copy.deepcopy(models[0])
            self.params, self.buffers = stack_module_state(models)
        else:
            self.template = models[0]
            self.params = dict(models[0].named_parameters())
            self.buffers = dict(models[0].named_buffers())
        self.samples = self.template.training_samples()

    def eps_shape(self, batch: int) -> tuple[int, ...]:
        """The noise of one step: ``[(M,) (S,) B, latent]``."""
        return (((self.count,) if self.stacked else ())
                + ((self.samples,) if self.samples is not None else ())
                + (batch, self.template.latent_dim))

    def per_model(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` with a leading model axis (a view; unchanged when stacked)."""
        return t if self.stacked else t.unsqueeze(0)

    def loss_function(self) -> Callable:
        """(x, eps, kl_weight) -> (the loss to backpropagate, the loss terms stacked, z)."""
        if not self.stacked:
            model, samples = self.models[0], self.samples

            def single(x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                out = model(x, eps=eps, samples=samples)
                terms = model.loss(out, kld_weight=kl_weight)
                return terms.loss, torch.stack(terms), out.z
            return single
        module = _LossOf(self.template)
        prefixed = ({f"model.{k}": v for k, v in self.params.items()},
                    {f"model.{k}": v for k, v in self.buffers.items()})
        batched = vmap(lambda p, b, x, eps, w: functional_call(module, (p, b), (x, eps, w)))

        def stacked(x: torch.Tensor, eps: torch.Tensor, kl_weight: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            terms, z = batched(*prefixed, x, eps, kl_weight)
            return terms[:, 0].sum(), terms, z
        return stacked

    def explicit_step(self) -> ExplicitStep:
        """The explicit gradients of these weights (:mod:`vaelab.models.explicit`)."""
        if not self.stacked:
            return ExplicitStep.for_model(self.models[0])
        std = self.template.standardized
        net, extras = split_parameters(self.template, self.params, self.buffers)
        return ExplicitStep(self.template, net, self.buffers["data_shift"] if std else None,
                            self.buffers["data_scale"] if std else None, extras=extras,
                            rotation=self.buffers.get("data_rotation") if std else None)

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the stacked weights into the modules (nothing to do for one model)."""
        if not self.stacked:
            return
        for i, model in enumerate(self.models):
            for name, t in model.named_parameters():
                t.copy_(self.params[name][i])
            for name, t in model.named_buffers():
                t.copy_(self.buffers[name][i])

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The weights with a model axis (views), for a checkpoint."""
        return {kind: {name: self.per_model(t.detach()) for name, t in tensors.items()}
                for kind, tensors in (("params", self.params), ("buffers", self.buffers))}

    @torch.no_grad()
    def load_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Copy checked checkpoint tensors (with a model axis) into the weights."""
        live = self.state()
        for kind, tensors in live.items():
            for name, t in tensors.items():
                t.copy_(state[kind][name])
