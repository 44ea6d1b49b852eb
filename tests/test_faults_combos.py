"""Every documented combination of training choices trains or is refused up front in one line.

A learned prior (``mixture``, ``flow``) under the seed's MSE loss is trained through the
loss's KL term (its one-sample estimate log q(z|x) - log p(z)), and Adam leaves parameters
without a gradient alone instead of crashing. The property test drives random combinations
of the documented choices through a few steps of ``vaelab train`` and accepts only a trained
run (files present, finite metrics) or exactly one ``error:`` line with a non-zero exit.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import vaelab
from vaelab.cli.main import main
from vaelab.config import ACTIVATIONS, LOSSES, PRIORS, SCHEDULERS
from vaelab.data import source_names
from vaelab.presets import preset_names
from vaelab.training.optim import Adam


@pytest.mark.parametrize("prior", ["mixture", "flow"])
def test_seed_loss_trains_a_learned_prior(prior):
    run = vaelab.train(preset="seed", progress=False, device="cpu", steps=20, batch_size=64,
                       log_every=10, frame_every=0, prior=prior, compile="off")
    start = vaelab.train(preset="seed", progress=False, device="cpu", steps=1, batch_size=64,
                         log_every=1, frame_every=0, prior=prior, compile="off")
    trained = dict(run.model.prior.named_parameters())
    first = dict(start.model.prior.named_parameters())
    assert trained, "a learned prior has parameters"
    assert any(not torch.equal(trained[k], first[k]) for k in trained), \
        "the seed loss must move the learned prior"
    assert math.isfinite(run.summary["final"]["loss"])


def test_seed_loss_with_a_learned_prior_uses_its_kl():
    from vaelab.models import build_model
    from vaelab.resolve import build_config, prepare

    config, source = prepare(build_config("seed", settings={"prior": "mixture",
                                                            "device": "cpu"}))
    model = build_model(config)
    torch.manual_seed(0)
    x = torch.randn(32, 2)
    out = model(x)
    terms = model.loss(out)
    terms.loss.backward()
    assert all(p.grad is not None for p in model.prior.parameters())


def test_adam_leaves_parameters_without_gradients_alone():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = Adam([a, b], [0.1])
    a.sum().backward()
    opt.step()  # b has no gradient
    assert torch.equal(b.detach(), torch.ones(2))
    assert not torch.equal(a.detach(), torch.ones(3))
    opt.zero_grad()
    opt.step()  # no parameter has one
    assert torch.equal(b.detach(), torch.ones(2))


# -- the property: trained, or refused in one line -----------------------------------------

def _dims(draw_list):  # noqa: ANN001, ANN202
    return ",".join(str(v) for v in draw_list)


combos = st.fixed_dictionaries({
    "preset": st.sampled_from(preset_names()),
    "loss": st.sampled_from(LOSSES),
    "prior": st.sampled_from(PRIORS),
    "gradients": st.sampled_from(["auto", "explicit", "autograd"]),
    "activation": st.sampled_from(ACTIVATIONS),
    "scheduler": st.sampled_from(SCHEDULERS),
    "hidden": st.lists(st.integers(1, 16), min_size=1, max_size=3),
    "latent": st.integers(1, 3),
    "batch": st.integers(1, 32),
    "iwae_k": st.integers(1, 4),
    "data": st.sampled_from(source_names()),
    "n_train": st.none() | st.integers(1, 40),
})


def _check_outcome(args: list[str], code: int, err: str, out_dir) -> None:  # noqa: ANN001
    lines = [line for line in err.splitlines() if line.strip()]
    if code != 0:
        assert len(lines) == 1 and "error:" in lines[0], (args, err)
        event("refused: " + lines[0].split("error:")[1][:40].strip())
        return
    event("trained")
    for name in ("config.json", "model.safetensors", "metrics.csv", "summary.json"):
        assert (out_dir / name).is_file(), (args, name)
    with open(out_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, args
    for row in rows:
        for key in ("loss", "reconstruction", "kld"):
            assert math.isfinite(float(row[key])), (args, row)


def _run_combo(combo: dict, steps: int, tmp_path_factory, capsys) -> None:  # noqa: ANN001
    out = tmp_path_factory.mktemp("combo") / "run"
    args = ["train", "--preset", combo["preset"], "--loss", combo["loss"],
            "--prior", combo["prior"], "--gradients", combo["gradients"],
            "--activation", combo["activation"], "--scheduler", combo["scheduler"],
            "--hidden-dims", _dims(combo["hidden"]), "--latent-dim", str(combo["latent"]),
            "--batch-size", str(combo["batch"]), "--data", combo["data"],
            "--steps", str(steps), "--log-every", "1", "--frame-every", "0",
            "--compile", "off", "--device", "cpu", "--out", str(out),
            "--no-figures", "--no-report", "--quiet"]
    if combo["loss"] == "iwae":
        args += ["--iwae-k", str(combo["iwae_k"])]
    if combo["n_train"] is not None:
        args += ["--n-train", str(combo["n_train"])]
    capsys.readouterr()
    code = main(args)
    _check_outcome(args, code, capsys.readouterr().err, out)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(combo=combos)
def test_documented_combinations_train_or_are_refused(combo, tmp_path_factory, capsys):
    _run_combo(combo, 3, tmp_path_factory, capsys)


@pytest.mark.slow
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(combo=combos)
def test_documented_combinations_train_or_are_refused_many(combo, tmp_path_factory, capsys):
    _run_combo(combo, 20, tmp_path_factory, capsys)
