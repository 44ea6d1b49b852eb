"""The training step a :class:`~vaelab.training.plan.StepPlan` describes, built for a loop.

A step maps (a batch x, the reparameterisation noise eps, the KL weight) to (the loss terms
stacked in :class:`~vaelab.objectives.LossTerms` order, z), with every gradient stored in its
tensor's ``.grad``, or, where the plan folds Adam in, with the weights already updated:

* autograd: the model's own forward and loss (one model, or ``torch.func.vmap`` of it over
  stacked weights), then one backward;
* explicit: :class:`~vaelab.models.explicit.ExplicitStep`, the gradients written out;
* the autograd step under ``torch.compile``, or the explicit step compiled ahead of time
  (:mod:`vaelab.training.aot`).

Compiling happens here, before the training clock starts. A compiled step rounds in another
order than the eager one (fused loops), so its run is reproducible but not bit-identical to
an eager run. If compiling fails under ``train.compile = 'auto'`` the eager step is used,
with a warning and a note in the summary; under ``'on'`` the failure is a RunError.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch

from vaelab.errors import RunError
from vaelab.training.aot import AdamTensors, WeightTensor, load_or_build
from vaelab.training.optim import Adam
from vaelab.training.plan import AOT, EXPLICIT, TORCH_COMPILE, StepPlan
from vaelab.training.stack import ModelStack
from vaelab.training.tally import Tally

StepFn = Callable[[torch.Tensor, torch.Tensor, "float | torch.Tensor"],
                  tuple[torch.Tensor, torch.Tensor]]


class Prepared(NamedTuple):
    """What a training loop steps with, and what its summary says of compiling it."""

    step: StepFn
    compiled: bool  # the plan's compiled step is in use (it did not fall back)
    updates: bool  # the step applies Adam's update itself: the loop does not
    tallies: bool  # the step keeps the loop's tally itself: the loop does not
    compile_seconds: float | None = None  # spent compiling (or failing to), before the clock
    compile_note: str | None = None  # why a compilation fell back to the eager step
    compile_cache: str | None = None  # an AOT package: "loaded" from the cache, or "built"

    def summary(self) -> dict[str, object]:
        """summary.json's compile fields."""
        fields: dict[str, object] = {"compiled": self.compiled}
        for name in ("compile_seconds", "compile_cache", "compile_note"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        return fields


def autograd_step(stack: ModelStack, optimizer: Adam,
                  loss: Callable | None = None) -> StepFn:
    """The step through autograd: ``loss`` (default: the models' own forward and loss) and
    one backward of the loss summed over the models."""
    loss = loss or stack.loss_function()

    def step(x: torch.Tensor, eps: torch.Tensor,
             kl_weight: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, terms, z = loss(x, eps, kl_weight)
        optimizer.zero_grad()
        total.backward()
        return terms.detach(), z
    return step


def torch_compiled(fn: Callable, device: torch.device) -> Callable:
    """``fn(x, eps, kl_weight)`` under ``torch.compile``, its KL weight passed as a tensor (a
    float would be baked in and recompiled at every new value); on CUDA
    ``mode="reduce-overhead"`` replays the captured kernels as CUDA graphs."""
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    compiled = torch.compile(fn, mode=mode, dynamic=False)
    weight = WeightTensor(device)

    def call(x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor) -> tuple:
        return compiled(x, eps, weight(kl_weight))
    return call


def build_step(plan: StepPlan, stack: ModelStack, optimizer: Adam, tally: Tally,
               x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor,
               required: bool, announce: Callable[[str], None] | None = None) -> Prepared:
    """The step of ``plan`` for ``stack``, compiled for inputs shaped as ``x`` and ``eps``
    where the plan says so (``required``: ``train.compile = 'on'``, a failure then raises);
    ``announce`` is told before an ahead-of-time build, with a line to show."""
    explicit = stack.explicit_step() if plan.gradients == EXPLICIT else None
    eager: StepFn = explicit if explicit is not None else autograd_step(stack, optimizer)
    if not plan.compiled:
        return Prepared(eager, False, False, False)
    # (outside the try: a plan that folds Adam over other tensors is a bug, not a compiler's)
    adam = (AdamTensors.of(optimizer, explicit)
            if plan.adam_folded and explicit is not None else None)
    started = time.perf_counter()
    cache = None
    try:
        if plan.compile == AOT:
            assert explicit is not None
            step, loaded = load_or_build(explicit, stack.device, x, eps, kl_weight, announce,
                                         adam, tally if plan.tally_folded else None)
            cache = "loaded" if loaded else "built"
            ready = Prepared(step, True, step.updates, step.tallies)
        else:
            assert plan.compile == TORCH_COMPILE and explicit is None
            fn = autograd_step(stack, optimizer,
                               torch_compiled(stack.loss_function(), stack.device))
            for _ in range(2):  # compiled now; the first call finds no .grad, later ones do
                fn(x, eps, kl_weight)
            optimizer.zero_grad()
            ready = Prepared(fn, True, False, False)
    except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one line
        if not isinstance(exc, RunError):
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            exc = RunError(f"torch.compile could not compile the training step on this "
                           f"machine ({type(exc).__name__}: {first}); train with --compile off")
        if required:
            raise exc from None
        note = f"{exc}".replace("; train with --compile off", "") + "; trained eagerly"
        warnings.warn(note, RuntimeWarning, stacklevel=2)
        return Prepared(eager, False, False, False, round(time.perf_counter() - started, 3),
                        note)
    return ready._replace(compile_seconds=round(time.perf_counter() - started, 3),
                          compile_cache=cache)


def to_stderr(line: str) -> None:
    """Show ``line`` on standard error (where progress bars go): a loop's ``announce``."""
    print(line, file=sys.stderr, flush=True)
