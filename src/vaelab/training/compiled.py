"""The compiled explicit training step: the CPU's fast path for long runs.

:class:`~vaelab.training.explicit.ExplicitStep` computes a step as about a hundred (the seed's
loss) to two hundred (the IWAE bound with the mixture prior) separate tensor operations around
the matrix products. Inductor, torch.compile's backend, fuses the element-wise ones into a few
generated C++ loops, keeps the products on the BLAS, and calls them all from generated C++.

:func:`prepare_step` picks how: a closed-form loss (the seed's, the IWAE bound) is compiled
ahead of time into a package cached on disk (:mod:`vaelab.training.aot`: built once per
machine and shapes, then loaded in milliseconds, and called with no guards); a loss through
autograd runs under ``torch.compile`` here (:class:`CompiledStep`), which traces it again in
every process (about 3 s once torch's own cache holds the generated code, 15-22 s the first
time) and checks its guards at every call. On 2 CPU cores the ahead-of-time step made the
seed preset's whole step about 1.6x faster and the default preset's 1.8x
(benchmarks/speed.py).

The compiled step computes the same formulas, but it rounds differently (fused loops sum and
multiply in another order), so a compiled run is not bit-identical to an eager one; it is
reproducible run to run, and a compiled run resumed from its checkpoint ends bit for bit as
an uninterrupted compiled run.

What is compiled is the gradient computation (network passes, loss, gradients); for a single
model's ahead-of-time step also Adam's update and the loop's tally. The batch draw stays eager
(its random streams are torch's generators). The KL weight enters as a tensor, so that a KL
warm-up does not recompile at each new value.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch

from vaelab.errors import RunError
from vaelab.training.aot import AotStep, WeightTensor, adam_state, load_or_build
from vaelab.training.explicit import ExplicitStep
from vaelab.training.optim import LeanAdam
from vaelab.training.tally import Tally


class CompiledStep:
    """``step`` (an :class:`ExplicitStep`, one model or a stack) under ``torch.compile``,
    called as the step itself: ``(x, eps, kl_weight) -> (loss terms, z)``, the gradients in
    ``.grad``. :meth:`warm_up` compiles it before training, so that the training clock (and
    ``train.time_limit``) counts training only."""

    def __init__(self, step: ExplicitStep, device: torch.device) -> None:
        self.step = step
        # cpp_wrapper: the generated code calls its kernels and products from C++, not
        # Python; for this step's ~50 calls that measured 1.07-1.2x, same compile time
        self.fn = torch.compile(step.__call__, dynamic=False, options={"cpp_wrapper": True})
        self.weight = WeightTensor(device)

    def __call__(self, x: torch.Tensor, eps: torch.Tensor,
                 kl_weight: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fn(x, eps, self.weight(kl_weight))

    def warm_up(self, x: torch.Tensor, eps: torch.Tensor,
                kl_weight: float | torch.Tensor) -> None:
        """Compile for inputs shaped as ``x`` and ``eps`` (any values: the loops pass zeros).
        Only ``.grad`` is written, which the first training step overwrites. Raises
        :class:`RunError` (one line) if torch.compile fails here, for example with no C++
        compiler on the machine."""
        try:
            # twice: the first call finds no .grad on the parameters, the later ones do
            for _ in range(2):
                self(x, eps, kl_weight)
        except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise RunError(f"torch.compile could not compile the training step on this "
                           f"machine ({type(exc).__name__}: {first}); train with "
                           "--compile off") from exc


class Prepared(NamedTuple):
    """What a training loop steps with, and what its summary says of compiling it."""

    step: ExplicitStep | CompiledStep | AotStep | None
    compile_seconds: float | None = None  # spent compiling (or failing to), before the clock
    compile_note: str | None = None  # why a compilation fell back to the eager step
    compile_cache: str | None = None  # an AOT package: "loaded" from the cache, or "built"

    @property
    def updates(self) -> bool:
        """Whether the step also updates the weights (Adam folded in): the loop then does not
        call the optimizer."""
        return isinstance(self.step, AotStep) and self.step.updates

    @property
    def tallies(self) -> bool:
        """Whether the step also keeps the loop's tally: the loop then does not."""
        return isinstance(self.step, AotStep) and self.step.tallies

    def summary(self, compiled: bool) -> dict[str, object]:
        """summary.json's fields: ``compiled`` (``compiled``, the run's intent, unless it
        fell back), and ``compile_seconds``, ``compile_cache`` and ``compile_note`` where
        there are any."""
        fields: dict[str, object] = {"compiled": compiled and self.compile_note is None}
        if self.compile_seconds is not None:
            fields["compile_seconds"] = self.compile_seconds
        if self.compile_cache is not None:
            fields["compile_cache"] = self.compile_cache
        if self.compile_note is not None:
            fields["compile_note"] = self.compile_note
        return fields


def prepare_step(step: ExplicitStep | None, compile_it: bool, device: torch.device,
                 x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor,
                 required: bool, announce: Callable[[str], None] | None = None,
                 optimizer: LeanAdam | None = None, tally: Tally | None = None) -> Prepared:
    """The explicit ``step`` (None: the loop's autograd step), compiled for inputs shaped as
    ``x`` and ``eps`` if ``compile_it``: a closed-form loss on the CPU ahead of time
    (:mod:`vaelab.training.aot`, loaded from the cache or built and cached), any other under
    torch.compile, warmed up. If compiling fails here and the compilation was not
    ``required`` (``train.compile = 'auto'``), the step itself, with a warning and a note
    saying why; with ``required`` (``'on'``) a failure raises :class:`RunError`.
    ``announce``: told before an ahead-of-time build (the slow case), with a line to show.
    ``optimizer``: a single model's Adam, whose update the ahead-of-time step then folds in
    where it can (:func:`~vaelab.training.aot.adam_state`; :attr:`Prepared.updates`);
    ``tally``: the loop's tally, which the ahead-of-time step then keeps
    (:attr:`Prepared.tallies`)."""
    if step is None or not compile_it:
        return Prepared(step)
    started = time.perf_counter()
    cache = None
    try:
        if step.closed and device.type == "cpu":
            ready, loaded = load_or_build(step, device, x, eps, kl_weight, announce,
                                          adam_state(step, optimizer), tally)
            cache = "loaded" if loaded else "built"
        else:
            ready = CompiledStep(step, device)
            ready.warm_up(x, eps, kl_weight)
    except RunError as exc:
        if required:
            raise
        note = f"{exc}".replace("; train with --compile off", "") + "; trained eagerly"
        warnings.warn(note, RuntimeWarning, stacklevel=2)
        return Prepared(step, round(time.perf_counter() - started, 3), note)
    return Prepared(ready, round(time.perf_counter() - started, 3), None, cache)


def to_stderr(line: str) -> None:
    """Show ``line`` on standard error (where progress bars go): a loop's ``announce``."""
    print(line, file=sys.stderr, flush=True)
