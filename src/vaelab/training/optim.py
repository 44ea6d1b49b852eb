"""Adam, the one optimiser of every training path: one model's weights or M models' stacked.

The update (betas, eps; no weight decay, amsgrad or maximize), per parameter at step t::

    m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

:func:`adam_update` writes it once, with ``torch._foreach`` kernels; it runs a group whose
models have their own learning rates, and the ahead-of-time step traces it to fold the
update in (:mod:`vaelab.training.aot`). Where every model shares one rate, :class:`Adam`
calls torch's fused Adam kernel instead: the same formula in one kernel, bit for bit what
``torch.optim.Adam(fused=True)`` computes, without the optimiser's per-step Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_update(params: list[torch.Tensor], grads: list[torch.Tensor],
                exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
                step_size: float | torch.Tensor | list[torch.Tensor],
                bias2_sqrt: float | torch.Tensor,
                betas: tuple[float, float] = BETAS, eps: float = EPS) -> None:
    """The module docstring's update, in place: ``step_size`` = lr / (1 - beta1^t) (one
    number, or one tensor per parameter broadcasting a model axis), ``bias2_sqrt`` =
    sqrt(1 - beta2^t)."""
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_mul(exp_avgs, step_size)
    torch._foreach_div_(update, denom)
    torch._foreach_sub_(params, update)


class AdamState(NamedTuple):
    """Adam's state as a checkpoint holds it: one step count, each parameter's moments."""

    step: int
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]


class Adam:
    """Adam over ``params`` (one model's, or stacked along a leading model axis ``[M, ...]``)
    with learning rates ``lrs`` (one per model; ``set_factor`` scales them all, as the
    schedules do).

    One shared rate takes torch's fused kernel where this torch has it; otherwise
    :func:`adam_update` runs, with each model's rate broadcast over its slice. With
    :meth:`use_device_scalars` the step count and the rate live in device tensors that a
    CUDA graph's replay reads, instead of Python numbers its capture would bake in.
    """

    def __init__(self, params: Sequence[torch.Tensor], lrs: Sequence[float]) -> None:
        self.params = list(params)
        self.lrs = [float(lr) for lr in lrs]
        self.shared = len(set(self.lrs)) == 1
        self.betas, self.eps = BETAS, EPS
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        device = self.params[0].device
        self.fused = self.shared and hasattr(torch, "_fused_adam_")
        # the step count: every parameter's in one tensor (the fused kernel takes a list of
        # per-parameter counts; these are views of it, so a step is one increment)
        self.step_all = torch.zeros(len(self.params), dtype=torch.float32, device=device)
        self._steps = [self.step_all[i] for i in range(len(self.params))]
        self.steps = 0  # the same count as a Python number, for the unfused update
        self.lr = self.lrs[0]  # the shared rate now (lrs[0] * factor)
        self.factor = 1.0
        self.lr_tensor: torch.Tensor | None = None  # the shared rate on the device
        self._rates = torch.tensor(self.lrs, device=device)
        self._views = [(p.shape[0],) + (1,) * (p.ndim - 1) for p in self.params]
        self._factor_t: torch.Tensor | None = None

    def use_device_scalars(self) -> None:
        """Keep the rate (and, unfused, the rate factor) in device tensors (CUDA graphs, and
        a compiled step that folds the update in)."""
        device = self.params[0].device
        self.lr_tensor = torch.full((), self.lr, dtype=torch.float32, device=device)
        self._factor_t = torch.full((), self.factor, device=device)

    def set_factor(self, factor: float) -> None:
        """The next steps' learning rates are ``lrs * factor``."""
        lr = self.lrs[0] * factor
        if self.lr_tensor is not None and lr != self.lr:
            self.lr_tensor.fill_(lr)
        if self._factor_t is not None and factor != self.factor:
            self._factor_t.fill_(factor)
        self.factor, self.lr = factor, lr

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            self.step_all.add_(1)
            self._update(self.params, grads, self.exp_avgs, self.exp_avg_sqs, self._steps,
                         self._views)
            return
        # a parameter the loss does not reach (no gradient) is left as it is, as torch's
        # Adam leaves it
        keep = [i for i, g in enumerate(grads) if g is not None]
        if not keep:  # nothing reached: nothing to update (torch's kernels refuse [])
            return
        steps = [self._steps[i] for i in keep]
        torch._foreach_add_(steps, 1)
        self._update(*([seq[i] for i in keep] for seq in (
            self.params, grads, self.exp_avgs, self.exp_avg_sqs)), steps,
            [self._views[i] for i in keep])

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor],
                exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
                steps: list[torch.Tensor], views: list[tuple[int, ...]]) -> None:
        b1, b2 = self.betas
        if self.fused:
            lr = self.lr if self.lr_tensor is None else self.lr_tensor
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                               lr=lr, beta1=b1, beta2=b2, weight_decay=0.0, eps=self.eps,
                               maximize=False, grad_scale=None, found_inf=None)
            return
        if self._factor_t is None:
            self.steps += 1
            bias2: float | torch.Tensor = math.sqrt(1.0 - b2 ** self.steps)
            size = self._rates * (self.factor / (1.0 - b1 ** self.steps))
        else:  # the same bias corrections, computed on the device
            t = self.step_all[0]
            bias2 = torch.sqrt(1.0 - torch.pow(b2, t))
            size = self._rates * (self._factor_t / (1.0 - torch.pow(b1, t)))
        adam_update(params, grads, exp_avgs, exp_avg_sqs, [size.view(v) for v in views], bias2,
                    self.betas, self.eps)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def export_state(self) -> AdamState:
        return AdamState(round(float(self.step_all[0])) if self.params else 0,
                         self.exp_avgs, self.exp_avg_sqs)

    @torch.no_grad()
    def import_state(self, state: AdamState) -> None:
        for live, saved in zip(self.exp_avgs + self.exp_avg_sqs,
                               list(state.exp_avg) + list(state.exp_avg_sq), strict=True):
            live.copy_(saved.view_as(live))  # (one model's saved with a model axis)
        self.step_all.fill_(float(state.step))
        self.steps = state.step
