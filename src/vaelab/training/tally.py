"""The loop's tally, kept on the device between metrics rows: the loss terms summed, the
number of the last step, and the first step whose loss was not finite. It is updated at every
step by a few device operations (inside the compiled step where there is one, and inside a
CUDA graph's replay), and read by the host (one synchronisation) only at metrics rows and
checkpoints."""

from __future__ import annotations

from typing import NamedTuple

import torch


def tally_update(sums: torch.Tensor, step: torch.Tensor, bad_step: torch.Tensor,
                 terms: torch.Tensor) -> None:
    """One step's tally, in place: ``sums += terms``; ``step += 1``; ``bad_step = step`` if
    this step's loss (``terms[..., 0]``) is NaN or infinite and no earlier step's was (0: none).

    Shapes: ``terms`` and ``sums`` ``[..., T]``, ``bad_step`` ``[...]`` (one per model),
    ``step`` 0-d. A non-finite gradient makes Adam's update, and so the next loss, non-finite:
    the first bad loss names the step to within one."""
    finite = torch.isfinite(terms[..., 0])
    step.add_(1)
    bad_step.copy_(torch.where(finite | (bad_step > 0), bad_step, step))
    sums.add_(terms)


class Tally(NamedTuple):
    """The tally's device tensors (see the module docstring)."""

    sums: torch.Tensor  # [..., T] float32, since the last metrics row
    step: torch.Tensor  # 0-d int64: the last step tallied
    bad_step: torch.Tensor  # [...] int64: the first step with a non-finite loss, 0: none

    @classmethod
    def start(cls, sums: torch.Tensor, step: int, bad_step: torch.Tensor | None = None,
              device: torch.device | str = "cpu") -> Tally:
        """A tally on ``device`` holding ``sums`` after ``step`` steps (a resumed run's)."""
        sums = sums.to(device=device, dtype=torch.float32)
        bad = (torch.zeros(sums.shape[:-1], dtype=torch.long, device=device)
               if bad_step is None else bad_step.to(device))
        return cls(sums, torch.full((), step, dtype=torch.long, device=device), bad)

    def add(self, terms: torch.Tensor) -> None:
        tally_update(self.sums, self.step, self.bad_step, terms)

    def tensors(self) -> list[torch.Tensor]:
        return [self.sums, self.step, self.bad_step]
