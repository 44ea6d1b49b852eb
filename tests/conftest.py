"""Shared fixtures: a tiny config and one tiny trained run reused across tests."""

from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.config import RunConfig
from vaelab.resolve import build_config

TINY = {"steps": 200, "batch_size": 128, "log_every": 50, "frame_every": 100,
        "display_points": 100}


@pytest.fixture
def tiny_config() -> RunConfig:
    """The seed preset, shortened to a couple hundred small steps on the CPU."""
    return build_config("seed", settings={**TINY, "device": "cpu"})


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A run directory trained once per session (seed preset, 200 steps, with figures)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    vaelab.train(preset="seed", out=out, progress=False, device="cpu", **TINY)
    return out


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep tests deterministic and light on the 2-core CI machine."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
