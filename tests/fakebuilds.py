"""A stand-in for a compiled step's package (tests/conftest.py's ``fake_builds``)."""

from __future__ import annotations

import torch


class FakeRunner:
    """A compiled package's runner, computing with the exported program run eagerly (so that
    the cache and the loop are tested without a real build): gradients out, or, with Adam and
    the tally folded in, those updated in place."""

    def __init__(self, step, adam=None, tally: bool = False) -> None:  # noqa: ANN001
        from vaelab.training import aot

        self.program = aot._Program(step, adam, tally)

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(self.program(*inputs))

