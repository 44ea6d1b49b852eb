"""Device choice and the seed plumbing: one integer seed -> independent RNG streams."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import torch

from vaelab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


class Seeds(NamedTuple):
    """Independent seeds for each random stream of a run, all derived from ``--seed``."""

    init: int  # weight initialisation
    data: int  # training data (fresh batches, or the fixed set and its shuffles)
    noise: int  # reparameterisation noise
    display: int  # the fixed prior draws decoded in every display frame
    standardize: int  # the sample that fits the standardisation of an infinite source
    evaluation: int  # fresh test sets drawn by ``vaelab evaluate`` (never the training data)
    validation: int  # the rows a fixed training set sets aside to choose the weights by


def derive_seeds(seed: int) -> Seeds:
    """Spawn independent child seeds with numpy's SeedSequence (stable across versions)."""
    children = np.random.SeedSequence(seed).spawn(len(Seeds._fields))
    return Seeds(*(int(c.generate_state(1, dtype=np.uint32)[0]) for c in children))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


#: the environment variable that, when set, decides the thread count (OpenMP's own)
THREADS_ENV = "OMP_NUM_THREADS"
#: torch's CPU threads when neither ``--threads`` nor ``OMP_NUM_THREADS`` says. One, by
#: measurement (BENCHMARKS.md, "Threads under load"): vaelab's products are small, a second
#: thread buys at most a few tens of per cent on an idle machine, and when another process
#: holds a core the threads wait for each other and a step runs many times slower.
DEFAULT_THREADS = 1


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's CPU threads for this process; return (the count, where it came from).

    ``requested`` (``--threads``) wins; else ``OMP_NUM_THREADS`` when set (the user's or the
    launcher's choice, which torch has read already); else :data:`DEFAULT_THREADS`. Never more
    than the cores this process may run on (a container or ``taskset`` may allow fewer than
    the machine has).
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--threads must be a positive integer, got {requested}")
    allowed = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count()) or 1
    if requested is not None:
        count, source = requested, "--threads"
    elif os.environ.get(THREADS_ENV):
        count, source = torch.get_num_threads(), THREADS_ENV
    else:
        count, source = DEFAULT_THREADS, "default"
    count = max(1, min(count, allowed))
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    return count, source
