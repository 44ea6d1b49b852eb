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


def derive_seeds(seed: int) -> Seeds:
    """Spawn independent child seeds with numpy's SeedSequence (stable across versions)."""
    children = np.random.SeedSequence(seed).spawn(len(Seeds._fields))
    return Seeds(*(int(c.generate_state(1, dtype=np.uint32)[0]) for c in children))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def choose_threads() -> int:
    """Cap torch's CPU threads at the cores this process may run on, and return the count.

    torch starts one thread per physical core of the machine; in a container or under
    ``taskset`` the process may be allowed fewer, and more threads than cores makes small
    matrix products slower, not faster. ``OMP_NUM_THREADS``, when set, is left to decide.
    """
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        allowed = len(os.sched_getaffinity(0))
        if 0 < allowed < torch.get_num_threads():
            torch.set_num_threads(allowed)
    return torch.get_num_threads()
