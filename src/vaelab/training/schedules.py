"""Learning-rate and KL-weight schedules as pure functions of the step and of progress.

``done`` is the number of optimiser steps already taken (0 for the first step); ``progress`` in
[0, 1] is the fraction of training already spent: done / steps, or the elapsed fraction of the
time limit for a time-limited run (see :func:`progress`). Pure functions keep the schedules
testable on their own and make a run's state just its step and its clock.
"""

from __future__ import annotations

import math

from vaelab.config import LossConfig, OptimConfig

#: a time-limited run's time fraction never runs ahead of done / MIN_SCHEDULE_STEPS: on a slow
#: or busy machine the clock alone would spend the whole schedule (a cosine decay to nothing)
#: in a handful of steps, and save an untrained model
MIN_SCHEDULE_STEPS = 200


def progress(done: int, steps: int | None, elapsed: float, time_limit: float | None) -> float:
    """Fraction of training spent, in [0, 1]: the larger of the step fraction and the time
    fraction, the latter at most ``done / MIN_SCHEDULE_STEPS``."""
    frac = 0.0
    if steps is not None:
        frac = done / steps
    if time_limit is not None:
        frac = max(frac, min(elapsed / time_limit, done / MIN_SCHEDULE_STEPS))
    return min(max(frac, 0.0), 1.0)


def lr_factor(cfg: OptimConfig, done: int, prog: float) -> float:
    """The learning rate of the next step as a multiple of ``cfg.lr``.

    ``step``: gamma^(done // step_size), exactly the seed's StepLR stepped after each update.
    ``constant``: 1. ``cosine`` / ``linear``: from 1 down to ``min_lr_ratio`` as progress
    goes from the end of the warm-up to 1. ``warmup``: a linear ramp over its first fraction.
    """
    if cfg.scheduler == "step":
        factor = cfg.gamma ** (done // cfg.step_size)
    elif cfg.scheduler == "constant":
        factor = 1.0
    else:
        span = max(1.0 - cfg.warmup, 1e-12)
        t = min(max((prog - cfg.warmup) / span, 0.0), 1.0)
        shape = 0.5 * (1.0 + math.cos(math.pi * t)) if cfg.scheduler == "cosine" else 1.0 - t
        factor = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape
    if cfg.warmup > 0 and prog < cfg.warmup:
        factor *= max(prog / cfg.warmup, 1e-3)  # never exactly 0: the first step still moves
    return factor


def kl_weight(cfg: LossConfig, prog: float) -> float:
    """The weight of the KL term now: ``kld_weight``, ramped up from 0 over ``kl_warmup``."""
    if cfg.kl_warmup > 0 and prog < cfg.kl_warmup:
        return cfg.kld_weight * prog / cfg.kl_warmup
    return cfg.kld_weight
