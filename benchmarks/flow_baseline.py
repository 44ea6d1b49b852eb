"""A neural spline flow (zuko's ``NSF``) as a third baseline for ``benchmarks/fidelity.py``.

zuko is a benchmark extra (``pip install -e '.[bench]'``), never a runtime dependency: vaelab
itself does not import it; only this module does.

The flow is fitted to the same training points as the classical baselines of
:mod:`vaelab.baselines` and offers the same interface: :meth:`FlowBaseline.log_prob` is the
natural log-density in nats per point, in the data's own units, as float64;
:meth:`FlowBaseline.sample` draws ``n`` points fixed by a seed. So it is scored exactly like the
GaussianMixture and the KernelDensity: ``mean(log p_true - log q)`` over test points.

Standardisation. The flow is trained on z = (x - m) / s, with m and s the per-dimension mean
and standard deviation of the training points. Its density in data units follows from the
change of variables, whose Jacobian is diag(1 / s)::

    log q(x) = log q_std((x - m) / s) - sum_d log s_d

and samples are x = m + s * z with z drawn from the flow.

Budget. Training runs Adam with a cosine-decayed learning rate for at most ``steps`` steps
and, if ``max_seconds`` is given, at most that much wall-clock time. The schedule follows
the fraction of the budget used, whichever budget binds first:
progress = max(step / steps, elapsed / max_seconds), lr = lr0 * (1 + cos(pi * progress)) / 2,
and training stops when progress reaches 1. So a time budget gets a full cosine decay too,
however fast the machine is on the day, and a step budget alone gives a fixed, seeded run.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import zuko

#: the reference configuration: 4 autoregressive transforms of 16-bin rational-quadratic
#: splines, each conditioner an MLP with two hidden layers of 128
TRANSFORMS = 4
BINS = 16
HIDDEN = (128, 128)
LR = 2e-3
BATCH = 256
STEPS = 8000
#: points per forward pass when scoring or sampling (bounds the memory of a large test set)
CHUNK = 8192


@dataclass
class FlowBaseline:
    """A fitted neural spline flow, scored like the classical baselines.

    ``name`` is ``"flow"``; ``params`` its architecture and the steps it trained;
    ``fit_seconds`` the wall time of the training loop; ``selection`` how the budget ended
    (``stopped_by``: ``"steps"`` or ``"time"``) and the last training losses.
    """

    name: str
    params: dict[str, Any]
    fit_seconds: float
    flow: zuko.flows.Flow
    mean: np.ndarray
    scale: np.ndarray
    dim: int
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """The optimiser steps taken."""
        return int(self.params["steps"])

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log q(x) per point: ``[N, D]`` -> float64 ``[N]``, nats, in the data's units."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"x must be [n, {self.dim}], got shape {arr.shape}")
        z = torch.from_numpy(standardise(arr, self.mean, self.scale))
        with torch.no_grad():
            dist = self.flow()
            logq = torch.cat([dist.log_prob(c) for c in z.split(CHUNK)]).numpy()
        return log_density_in_data_units(logq, self.scale)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` points drawn from the flow, ``[n, D]`` float64 in data units, fixed by
        ``seed`` (the global torch generator is left as it was)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            dist = self.flow()
            parts = [dist.sample((min(CHUNK, n - i),)) for i in range(0, int(n), CHUNK)]
        z = torch.cat(parts).numpy()
        return self.mean + self.scale * z


def standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - mean) / scale, per dimension."""
    return (np.asarray(x, dtype=np.float64) - mean) / scale


def log_density_in_data_units(log_q_std: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The change of variables from standardised to data units:
    log q(x) = log q_std((x - m) / s) - sum_d log s_d (float64)."""
    return np.asarray(log_q_std, dtype=np.float64) - float(np.sum(np.log(scale)))


def fit_flow(points: np.ndarray, seed: int = 0, steps: int = STEPS,
             max_seconds: float | None = None, batch: int = BATCH, lr: float = LR,
             transforms: int = TRANSFORMS, bins: int = BINS,
             hidden: tuple[int, ...] = HIDDEN, threads: int = 1) -> FlowBaseline:
    """Fit a zuko ``NSF`` to ``points`` ``[n, D]`` by maximum likelihood on standardised data.

    Minibatches of ``batch`` points are drawn with replacement from ``points``; the weights'
    initialisation and the batches are fixed by ``seed`` (the global torch generator is
    restored afterwards). The budget is ``steps`` optimiser steps, and at most ``max_seconds``
    of wall-clock time if given, under one cosine schedule (module docstring). Training runs
    on the CPU with ``threads`` torch threads (restored afterwards); after training the flow
    is kept in float64 for scoring and sampling.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"points must be a finite [n >= 2, d] array, got shape {arr.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    mean = arr.mean(axis=0)
    scale = arr.std(axis=0)
    if np.any(scale <= 0):
        raise ValueError("points have zero spread in some dimension: cannot standardise")
    dim = arr.shape[1]
    data = torch.from_numpy(standardise(arr, mean, scale)).float()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    losses: deque[float] = deque(maxlen=100)  # the last 100, for the record
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flow = zuko.flows.NSF(dim, transforms=transforms, bins=bins,
                                  hidden_features=tuple(hidden))
            gen = torch.Generator().manual_seed(seed)
            opt = torch.optim.Adam(flow.parameters(), lr=lr)
            stopped_by = "steps"
            t0 = time.perf_counter()
            step = 0
            while step < steps:
                elapsed = time.perf_counter() - t0
                progress = step / steps
                if max_seconds is not None:
                    if elapsed >= max_seconds:
                        stopped_by = "time"
                        break
                    progress = max(progress, elapsed / max_seconds)
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * progress))
                idx = torch.randint(0, len(data), (batch,), generator=gen)
                loss = -flow().log_prob(data[idx]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
            seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
    flow = flow.double().eval()
    params = {"transforms": transforms, "bins": bins, "hidden": list(hidden), "lr": lr,
              "batch": batch, "steps": step}
    selection = {"planned_steps": steps, "max_seconds": max_seconds, "stopped_by": stopped_by,
                 "final_loss": float(np.mean(losses)) if losses else None,
                 "standardise_mean": mean.tolist(), "standardise_scale": scale.tolist()}
    return FlowBaseline("flow", params, seconds, flow, mean, scale, dim, selection)
