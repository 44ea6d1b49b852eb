"""A training step captured once as a CUDA graph and replayed at every later step (CUDA only).

A step of the seed's model is about a hundred small kernels (batch draw, noise, forward,
gradients, Adam, the loss tally). Launched one by one from Python, each launch costs the host
more time than the GPU spends running it, so the GPU mostly waits; replayed as one graph, the
step is one launch (figures: BENCHMARKS.md, ``benchmarks/gpu_speed.py``).

What a graphed step may hold (the loop keeps to it; :func:`vaelab.training.plan.graph_blocker`
names what breaks it):

* device work only, with no host synchronisation (a capture fails on one);
* every value that changes between steps in a device tensor, set before the replay (the
  learning rate, the KL weight, the tally's step count), never a Python number, which the
  capture would bake in;
* no Python state that the step advances: a fixed training set's epoch position does, so its
  runs stay eager; a fresh batch drawn from a generator does not;
* random draws from generators registered with the graph. Each replay advances their offsets
  by what the captured draws consume, as the eager draws would: a graphed run draws the same
  numbers, and its weights equal an eager run's bit for bit
  (tests/test_graphs.py, run where CUDA is present).

The first step runs eagerly on a side stream (it makes cuBLAS handles, workspaces and any
lazy state outside the capture); the second is captured, then replayed, and every later step
is a replay. The step's outputs (the batch, z) are the graph's static tensors, overwritten by
each replay: read them before the next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class GraphedStep(Generic[T]):
    """Calls ``body`` (one step's device work, returning its outputs) once per step: eagerly
    when ``enabled`` is False, else as described in the module docstring.

    ``generators``: every generator ``body`` draws from, registered with the graph.
    """

    def __init__(self, body: Callable[[], T], device: torch.device,
                 generators: Sequence[torch.Generator], enabled: bool) -> None:
        self.body, self.device, self.generators = body, device, list(generators)
        self.enabled = enabled
        self._graph: torch.cuda.CUDAGraph | None = None
        self._outputs: T | None = None
        self._warm = False

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def __call__(self) -> T:
        if not self.enabled:
            return self.body()
        if self._graph is not None:
            self._graph.replay()
            return self._outputs  # type: ignore[return-value]
        if not self._warm:  # the first step: eager, on a side stream
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                outputs = self.body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._warm = True
            return outputs
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph):  # records the step; nothing runs yet
            self._outputs = self.body()
        self._graph = graph
        graph.replay()
        return self._outputs
