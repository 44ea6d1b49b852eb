"""Training batches: a fresh draw every step, or minibatches of a fixed training set
(:func:`training_points`: a file's training split, or ``data.n_train`` draws).

Both live on the training device and never synchronise with the host, so the loop is never
waiting for data.
"""

from __future__ import annotations

import torch

from vaelab.config import RunConfig
from vaelab.data.base import DataSource
from vaelab.data.files import FileSource, split_points


class FreshStream:
    """A new i.i.d. batch from the source at every step (the seed's infinite stream)."""

    def __init__(self, source: DataSource, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> None:
        self.source, self.batch_size, self.generator, self.device = (
            source, batch_size, generator, device)

    def next(self) -> torch.Tensor:
        return self.source.sample(self.batch_size, self.generator, self.device)


class FixedSetStream:
    """Shuffled minibatches of a fixed training set, epoch after epoch.

    Each epoch is a fresh permutation; a batch never straddles two epochs (the last, short
    remainder of a permutation is skipped), so every batch has ``batch_size`` points unless
    the set itself is smaller, in which case the whole set is the batch.
    """

    def __init__(self, points: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.points = points
        self.batch_size = min(batch_size, points.shape[0])
        self.generator = generator
        self._perm = torch.empty(0, dtype=torch.long, device=points.device)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self._perm.numel():
            self._perm = torch.randperm(self.points.shape[0], generator=self.generator,
                                        device=self.points.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.points[idx]


def training_points(config: RunConfig, source: DataSource, generator: torch.Generator,
                    device: torch.device) -> torch.Tensor | None:
    """The fixed training set, if there is one: a file's train split, or ``n_train`` draws."""
    if isinstance(source, FileSource):
        train, _ = split_points(source.points, config.data.test_fraction, seed=config.train.seed)
        return torch.as_tensor(train, dtype=torch.float32).to(device)
    if config.data.n_train is not None:
        return source.sample(config.data.n_train, generator, device)
    return None
