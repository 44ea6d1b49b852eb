"""The data-source interface: anything that can draw i.i.d. points of a fixed dimension."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class DataSource(ABC):
    """A distribution p we can sample from; later sources also know log p(x)."""

    #: registry name, e.g. ``"swiss_roll"``
    name: str
    #: dimension D of one point
    dim: int

    @abstractmethod
    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``n`` i.i.d. points as a float32 tensor of shape ``[n, dim]`` on ``device``.

        ``generator`` must live on ``device``; the same generator state gives the same points.
        """
