"""The 2-D Swiss roll of the seed: ``make_swiss_roll(n, noise)``, columns 0 and 2, unscaled.

scikit-learn draws ``t = 1.5 pi (1 + 2 u)``, ``u ~ U(0, 1)``, the point
``(t cos t, 21 v, t sin t)`` with ``v ~ U(0, 1)``, and adds ``noise * N(0, I_3)``. Columns 0
and 2 are therefore ``(t cos t, t sin t) + noise * N(0, I_2)``; the height column plays no
part. The torch backend draws exactly that formula on the training device (fast, no host
round trip); the sklearn backend calls scikit-learn itself, for bit-level fidelity to the seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.data.base import DataSource

T_MIN = 1.5 * math.pi
T_MAX = 4.5 * math.pi


class SwissRoll2D(DataSource):
    """Seed's Swiss roll: columns 0 and 2 of ``make_swiss_roll(n, noise)``."""

    name = "swiss_roll"
    dim = 2

    def __init__(self, noise: float = 0.3, backend: str = "torch") -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if backend not in ("torch", "sklearn"):
            raise ValueError(f"backend must be 'torch' or 'sklearn', got {backend!r}")
        self.noise = float(noise)
        self.backend = backend

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        if self.backend == "sklearn":
            return self._sample_sklearn(n, generator).to(device)
        u = torch.rand(n, generator=generator, device=device)
        t = T_MIN + (T_MAX - T_MIN) * u
        x = torch.stack((t * torch.cos(t), t * torch.sin(t)), dim=1)
        if self.noise > 0:
            x = x + self.noise * torch.randn(n, 2, generator=generator, device=device)
        return x

    def _sample_sklearn(self, n: int, generator: torch.Generator) -> torch.Tensor:
        from sklearn.datasets import make_swiss_roll

        # Draw the numpy seed from the torch generator so one --seed still fixes everything.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator,
                                 device=generator.device).item())
        points, _ = make_swiss_roll(n, noise=self.noise, random_state=np.random.RandomState(seed))
        return torch.from_numpy(points[:, [0, 2]].astype(np.float32))

    def __repr__(self) -> str:
        return f"SwissRoll2D(noise={self.noise}, backend={self.backend!r})"
