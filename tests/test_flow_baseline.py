"""The neural spline flow baseline of benchmarks/fidelity.py: it learns a known Gaussian, its
log-density is in the data's units (the standardisation's Jacobian), its samples are
reproducible, and a time budget ends training. A tiny budget: correctness, not fidelity."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zuko")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from flow_baseline import (  # noqa: E402
    FlowBaseline,
    fit_flow,
    log_density_in_data_units,
)

MEAN = np.array([1.0, -2.0])
COV = np.array([[2.0, 0.6], [0.6, 0.5]])
STEPS = 150
#: a small flow keeps the tests quick
SMALL = {"transforms": 2, "hidden": (32, 32)}


def gaussian_log_prob(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """The exact log-density of N(mean, cov)."""
    diff = x - mean
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return -0.5 * (maha + np.log(np.linalg.det(2 * np.pi * cov)))


def gaussian(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(MEAN, COV, size=n)


@pytest.fixture(scope="module")
def flow() -> FlowBaseline:
    return fit_flow(gaussian(400, 0), seed=0, steps=STEPS, **SMALL)


def test_the_flow_learns_a_gaussian_better_than_a_wrong_one(flow):
    assert flow.name == "flow" and flow.steps == STEPS and flow.fit_seconds > 0
    assert flow.selection["stopped_by"] == "steps"
    x = gaussian(2000, 1)
    logq = flow.log_prob(x)
    assert logq.shape == (2000,) and logq.dtype == np.float64
    assert np.all(np.isfinite(logq))
    logp = gaussian_log_prob(x, MEAN, COV)
    gap = float(np.mean(logp - logq))
    # a bad reference: the right mean, three times the true spread in each direction
    bad = float(np.mean(logp - gaussian_log_prob(x, MEAN, 9 * COV)))
    assert gap < 0.3 and gap < bad / 3


def test_log_density_is_in_data_units_through_the_jacobian(flow):
    # the same data times 10 standardises to the same points: the same seeded fit, with a
    # log-density lower by 2 log 10 (two dimensions) at the scaled points
    scaled = fit_flow(10.0 * gaussian(400, 0), seed=0, steps=STEPS, **SMALL)
    x = gaussian(500, 2)
    np.testing.assert_allclose(scaled.log_prob(10.0 * x), flow.log_prob(x) - 2 * np.log(10),
                               atol=1e-3)
    np.testing.assert_allclose(log_density_in_data_units(np.zeros(3), np.array([10.0, 0.5])),
                               np.full(3, -np.log(5.0)))


def test_samples_have_the_shape_and_are_fixed_by_the_seed(flow):
    state = torch.random.get_rng_state()
    a, b, c = flow.sample(300, seed=5), flow.sample(300, seed=5), flow.sample(300, seed=6)
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator untouched
    assert a.shape == (300, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # in the data's units: about the true mean, not the standardised 0
    big = flow.sample(4000, seed=7)
    assert np.all(np.abs(big.mean(axis=0) - MEAN) < 0.3)
    with pytest.raises(ValueError):
        flow.sample(0, seed=1)


def test_a_time_budget_ends_training_before_the_steps():
    fitted = fit_flow(gaussian(100, 3), seed=0, steps=10**6, max_seconds=1e-6, **SMALL)
    assert fitted.selection["stopped_by"] == "time"
    assert fitted.steps < 10**6
    assert np.all(np.isfinite(fitted.log_prob(gaussian(10, 4))))


# fidelity.py: the flow's rows beside the committed results, and zuko missing


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fidelity.json"


def _flow_json(tmp_path: Path) -> Path:
    """A flow run's --json file, its rows made from the committed KDE rows of seed 0."""
    import json

    payload = json.loads(RESULTS.read_text())
    rows = []
    for r in payload["results"]:
        if r["method"] == "kde" and r["seed"] == 0:
            rows.append({**r, "method": "flow", "steps": 8000, "selection": {},
                         "params": {"transforms": 4, "bins": 16, "hidden": [128, 128],
                                    "steps": 8000}})
    settings = {**payload["settings"], "presets": [], "baselines": False, "flow": True,
                "flow_steps": 8000, "flow_seconds": None, "flow_budget": "steps",
                "first_seed": 0, "seeds": 1}
    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"machine": "test", "command": "the flow's command",
                                "settings": settings, "results": rows}))
    return path


def test_fidelity_renders_the_old_results_and_the_flow_beside_them(tmp_path, capsys):
    import fidelity

    fidelity.from_json([RESULTS], write=False)
    old = capsys.readouterr().out
    assert "KernelDensity (CV)" in old and "NSF flow" not in old
    fidelity.from_json([RESULTS, _flow_json(tmp_path)], write=False, section="flow")
    out = capsys.readouterr().out
    assert "the flow's command" in out and "NSF flow (zuko) gap" in out
    side = out[out.index("| data set | `default` gap"):]
    rows = [line for line in side.splitlines() if line.startswith("| swiss_roll |")]
    # the flow's rows are seed 0 of the KDE's: one seed, and the default beats it there
    assert len(rows) == 1 and "(1)" in rows[0] and rows[0].endswith("| yes |")
    assert "`seed`" not in side  # of the presets, only the default side by side


def test_fidelity_says_in_one_line_that_zuko_is_missing(monkeypatch):
    import importlib.util

    import fidelity

    from vaelab.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "zuko" else real(name, *a))
    args = fidelity.parse_args(["--presets", "none", "--no-baselines"])
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[bench\]'"):
        fidelity.check_args(args)
    fidelity.check_args(fidelity.parse_args(["--presets", "none", "--no-flow"]))
