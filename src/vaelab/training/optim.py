"""The optimiser from an :class:`~vaelab.config.OptimConfig` (schedules: ``schedules.py``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from vaelab.config import OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig,
                    device: torch.device) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch supports it on ``device``.

    The fused and the per-parameter Adam compute the same update; fused is ~15% faster per
    step for the seed's small networks on CPU (measured with benchmarks/seed_walltime.py).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=cfg.lr, fused=True)
    except (RuntimeError, ValueError, TypeError):  # older torch, or a device without fused
        return torch.optim.Adam(params, lr=cfg.lr, foreach=True)

