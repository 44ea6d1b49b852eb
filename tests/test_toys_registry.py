"""Every built-in source: reachable by name, seedable, with a density and documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaelab.config import DataConfig
from vaelab.data import build_source, source_names
from vaelab.data.registry import BUILTIN_NAMES
from vaelab.data.toys import TOY_SOURCES
from vaelab.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "datasets.md"
README = Path(__file__).resolve().parent.parent / "README.md"
EXPECTED = {"swiss_roll", "swiss_roll_3d", "moons", "circles", "8gaussians", "pinwheel",
            "2spirals", "checkerboard", "rings"}


@pytest.mark.parametrize("name", sorted(TOY_SOURCES))
def test_every_source_by_name(name):
    src = build_source(DataConfig(name=name))
    assert src.name == name and src.has_density
    a = src.sample(256, torch.Generator().manual_seed(0))
    b = src.sample(256, torch.Generator().manual_seed(0))
    assert a.shape == (256, src.dim) and a.dtype == torch.float32 and torch.equal(a, b)
    logp = src.log_prob(a)
    assert logp.shape == (256,) and logp.dtype == torch.float64 and torch.isfinite(logp).all()
    assert torch.isfinite(torch.tensor(src.entropy()))
    assert f"`{name}`" in DOCS.read_text() and f"`{name}`" in README.read_text()


def test_all_listed_sets_are_registered():
    assert set(source_names()) == EXPECTED
    assert set(BUILTIN_NAMES) == set(TOY_SOURCES)  # (the names known without torch)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="did you mean: 8gaussians") as exc:
        build_source(DataConfig(name="8gaussian"))
    assert "checkerboard" in str(exc.value)
