"""Explicit gradients (vaelab.models.explicit): the same loss and gradients as autograd."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from gradients import assert_each_models_own
from torch.func import stack_module_state

import vaelab
from vaelab.cli.main import main
from vaelab.errors import ConfigError
from vaelab.groups import seed_group
from vaelab.models import build_model
from vaelab.models.explicit import (
    FLUSH_BELOW,
    SKINNY,
    ExplicitStep,
    _flush_tiny,
    split_parameters,
)
from vaelab.resolve import build_config
from vaelab.training.loop import fit_group, resolve_config
from vaelab.training.plan import plan_step

CPU = torch.device("cpu")
CASES = [
    ("seed", {}),
    ("seed", {"hidden_dims": [64, 32, 16], "activation": "relu", "kld_weight": 0.3,
              "latent_dim": 3}),
    # a latent wider than SKINNY: decoder_input runs by itself (no _Pair)
    ("seed", {"hidden_dims": [32, 16], "latent_dim": 12}),
    ("default", {}),  # IWAE k = 4, mixture prior, learned sigma: closed form
    ("default", {"prior": "standard", "iwae_k": 2, "kld_weight": 0.7}),  # closed form
    ("default", {"iwae_k": 1, "loss.learn_decoder_std": False, "loss.decoder_std": 0.3}),
    ("default", {"decoder_std_mode": "latent"}),  # sigma(z): its head and the decoder's h
    ("default", {"decoder_std_mode": "latent", "prior": "standard", "latent_dim": 12,
                 "hidden_dims": [32, 16]}),
    ("default", {"decoder_std_mode": "full"}),  # L(z): the head's entry below the diagonal
]


def _model(preset: str, settings: dict, standardize: bool = True):
    torch.manual_seed(0)
    cfg = resolve_config(build_config(preset, settings=settings))
    model = build_model(cfg).double()
    if standardize:
        model.set_standardization(torch.tensor([1.0, -2.0], dtype=torch.float64),
                                  torch.tensor([3.0, 0.5], dtype=torch.float64))
    _spread_std_head(model)
    return cfg, model


def _spread_std_head(model) -> None:
    """sigma(z)'s head starts at 0 weights (sigma(z) = the global sigma): spread them, so
    that the gradient through h is not zero by construction."""
    if model.std_head is not None:
        with torch.no_grad():
            model.std_head.weight.normal_(0.0, 3.0)
            model.std_head.bias.add_(0.2 * torch.randn_like(model.std_head.bias))


@pytest.mark.parametrize(("preset", "settings"), CASES)
def test_explicit_gradients_are_autograds(preset, settings):
    cfg, model = _model(preset, settings)
    step = ExplicitStep.for_model(model)
    assert step.pair == (cfg.model.latent_dim <= SKINNY)
    assert step.kind == ("seed" if cfg.loss.name == "seed_mse" else "iwae")
    samples = model.training_samples()
    x = torch.randn(64, 2, dtype=torch.float64) * 5
    eps = torch.randn(*((samples,) if samples else ()), 64, cfg.model.latent_dim,
                      dtype=torch.float64)
    out = model(x, eps=eps, samples=samples)
    terms = model.loss(out, kld_weight=cfg.loss.kld_weight)
    reference = torch.autograd.grad(terms.loss, list(model.parameters()))

    got, z = step(x, eps, cfg.loss.kld_weight)
    torch.testing.assert_close(got, torch.stack(tuple(terms)).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z, out.z.detach(), rtol=1e-12, atol=1e-12)
    for (name, p), g in zip(model.named_parameters(), reference, strict=True):
        assert p.grad is not None and p.grad.is_contiguous(), name  # fused Adam needs this
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12, msg=name)


def test_stacked_explicit_gradients_are_each_models_own():
    """A group's step: model m's loss and gradient depend on model m alone, with its own KL
    weight and standardisation."""
    torch.manual_seed(1)
    cfg = resolve_config(build_config("seed", settings={"hidden_dims": [32, 16]}))
    models = [build_model(cfg).double() for _ in range(3)]
    for i, m in enumerate(models):
        m.set_standardization(torch.tensor([float(i), 1.0], dtype=torch.float64),
                              torch.tensor([2.0 + i, 0.5], dtype=torch.float64))
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    x = torch.randn(3, 40, 2, dtype=torch.float64) * 4
    eps = torch.randn(3, 40, 2, dtype=torch.float64)
    params, buffers = stack_module_state(models)
    step = ExplicitStep(models[0], params, buffers["data_shift"], buffers["data_scale"])
    terms, _ = step(x, eps, weights)
    for i, m in enumerate(models):
        own = m.loss(m(x[i], eps=eps[i]), kld_weight=float(weights[i]))
        torch.testing.assert_close(terms[i], torch.stack(tuple(own)).detach())
        grads = torch.autograd.grad(own.loss, list(m.parameters()))
        for (name, _), g in zip(m.named_parameters(), grads, strict=True):
            torch.testing.assert_close(params[name].grad[i], g, rtol=1e-10, atol=1e-12,
                                       msg=name)


@pytest.mark.parametrize("settings", [
    {},  # the default: IWAE k = 4, mixture prior, learned sigma
    {"prior": "standard", "iwae_k": 2, "loss.learn_decoder_std": False,
     "loss.decoder_std": 0.3},
    {"decoder_std_mode": "latent"},  # each model's own sigma(z) head
    {"decoder_std_mode": "full"},  # each model's own L(z)
])
def test_stacked_iwae_gradients_are_each_models_own(settings):
    """The closed-form IWAE bound on stacked weights: model m's terms and gradients (network,
    prior and sigma) are what autograd gives model m alone, with its own KL weight,
    standardisation, prior and sigma."""
    torch.manual_seed(2)
    cfg = resolve_config(build_config("default", settings={"hidden_dims": [32, 16],
                                                           **settings}))
    models = [build_model(cfg).double() for _ in range(3)]
    for i, m in enumerate(models):
        m.set_standardization(torch.tensor([float(i), 1.0], dtype=torch.float64),
                              torch.tensor([2.0 + i, 0.5], dtype=torch.float64))
        with torch.no_grad():  # make each model's prior and sigma its own
            for name, t in m.named_parameters():
                if name.startswith("prior.") or name == "obs_std_raw":
                    t.add_(0.3 * torch.randn_like(t))
        _spread_std_head(m)
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    k = models[0].training_samples()
    x = torch.randn(3, 40, 2, dtype=torch.float64) * 4
    eps = torch.randn(3, k, 40, 2, dtype=torch.float64)
    params, buffers = stack_module_state(models)
    net, extras = split_parameters(models[0], params, buffers)
    step = ExplicitStep(models[0], net, buffers["data_shift"], buffers["data_scale"],
                        extras=extras)
    assert step.kind == "iwae"
    terms, z = step(x, eps, weights)
    assert terms.shape == (3, 4) and z.shape == (3, k, 40, 2)
    assert_each_models_own(models, params, terms, x, eps, weights, k)


def test_tiny_gradients_are_flushed_and_the_rest_kept():
    g = torch.tensor([1e-42, -1e-30, FLUSH_BELOW * 2, -0.5, 0.0, 3.0])
    assert _flush_tiny(g.clone()).tolist() == [0.0, 0.0, pytest.approx(2e-20), -0.5, 0.0, 3.0]
    assert _flush_tiny(None) is None


def _explicit(cfg, device=CPU, group=False) -> bool:  # noqa: ANN001
    configs = [cfg, dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, seed=cfg.train.seed + 1))] if group else [cfg]
    try:
        return plan_step(configs, device, False).gradients == "explicit"
    except ConfigError:
        return False


def test_auto_takes_explicit_gradients_where_the_loss_is_in_closed_form():
    seed = resolve_config(build_config("seed"))
    default = resolve_config(build_config("default"))
    assert _explicit(seed) and _explicit(seed, group=True)
    assert _explicit(default) and _explicit(default, group=True)
    flow = resolve_config(build_config("default", settings={"prior": "flow"}))
    assert not _explicit(flow)  # its loss would go through autograd: little gain
    with pytest.raises(ConfigError, match="closed-form losses"):  # not in closed form
        resolve_config(build_config("default", settings={"gradients": "explicit",
                                                         "prior": "flow"}))
    off = resolve_config(build_config("seed", settings={"gradients": "autograd"}))
    assert not _explicit(off)
    compiled = resolve_config(build_config("seed", settings={"compile": "on"}))
    assert _explicit(compiled)  # the explicit step, compiled (test_compiled.py)
    assert not _explicit(compiled, torch.device("cuda"))  # the compiled autograd step
    silu = resolve_config(build_config("seed", settings={"activation": "silu"}))
    assert not _explicit(silu)


def test_impossible_gradient_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="train.gradients"):
        build_config("seed", settings={"gradients": "manual"}).validate()
    with pytest.raises(ConfigError, match="activation is 'silu'"):
        resolve_config(build_config("seed", settings={"gradients": "explicit",
                                                      "activation": "silu"}))
    group = seed_group(build_config("default", settings={"gradients": "explicit", "prior": "flow",
                                                         "steps": 5, "device": "cpu"}), 2)
    with pytest.raises(ConfigError, match="explicit.*closed-form losses"):
        fit_group(group, progress=False)
    with pytest.raises(ValueError, match="closed-form losses only"):
        ExplicitStep.for_model(build_model(resolve_config(build_config(
            "default", settings={"prior": "flow"}))))


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_explicit_and_autograd_training_agree(preset):
    """Same start, same batches: the two paths stay together (up to float rounding, which
    grows over training, so only the first metrics row is compared closely: to 0.1 %, later
    ones to 1 %, where a wrong gradient is off by far more; on an AMD EPYC the default's
    second row differed by 0.27 %). Adam's first steps move a weight whose gradient is ~0 by
    about +-lr whatever its size, so rounding can flip such a weight's step: each weight
    tensor's difference is compared against how far training moved it, both as norms."""
    torch.set_num_threads(1)
    settings = {"steps": 30, "batch_size": 64, "log_every": 10, "frame_every": 0,
                "device": "cpu"}
    runs = {g: vaelab.train(preset=preset, progress=False, gradients=g, **settings)
            for g in ("explicit", "autograd")}
    start = vaelab.train(preset=preset, progress=False, **{**settings, "steps": 1})
    assert runs["explicit"].summary["gradients"] == "explicit"
    assert runs["autograd"].summary["gradients"] == "autograd"
    for row, (a, b) in enumerate(zip(runs["explicit"].metrics, runs["autograd"].metrics,
                                     strict=True)):
        for key in ("loss", "reconstruction", "kld", "neg_elbo"):
            assert a[key] == pytest.approx(b[key], rel=1e-3 if row == 0 else 1e-2), (
                a["step"], key)
    for name, value in runs["autograd"].model.state_dict().items():
        # over the tensor: a tipped weight or two among thousands moves the largest
        # element's difference (on an AMD EPYC, 11 % of the largest move), not the norm's
        moved = (value - start.model.state_dict()[name]).norm()
        apart = (runs["explicit"].model.state_dict()[name] - value).norm()
        assert apart <= 0.05 * moved, (name, float(apart), float(moved))


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_explicit_and_autograd_groups_agree(preset):
    """A group of models trained with explicit gradients (batched products) and with vmap +
    autograd: the same metrics, model by model, over the first steps (the two round
    differently, and at the seed's learning rate the difference grows about tenfold every
    ten steps, so later steps are not compared closely)."""
    torch.set_num_threads(1)
    settings = {"steps": 10, "batch_size": 64, "log_every": 2, "frame_every": 0,
                "device": "cpu"}
    groups = {g: vaelab.train_many(sweep={"kld_weight": [0.5, 1.0]}, preset=preset,
                                   progress=False, gradients=g, **settings)
              for g in ("explicit", "autograd")}
    for g, runs in groups.items():
        assert {r.summary["gradients"] for r in runs} == {g}
    for ra, rb in zip(groups["explicit"], groups["autograd"], strict=True):
        for a, b in zip(ra.metrics, rb.metrics, strict=True):
            for key in ("loss", "reconstruction", "kld", "neg_elbo"):
                assert a[key] == pytest.approx(b[key], rel=1e-3), (a["step"], key)


def test_explicit_training_is_reproducible():
    torch.set_num_threads(1)
    settings = {"steps": 40, "batch_size": 64, "frame_every": 0, "device": "cpu"}
    a = vaelab.train(preset="seed", progress=False, **settings)
    b = vaelab.train(preset="seed", progress=False, **settings)
    assert a.summary["gradients"] == "explicit"
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), name


def test_the_gradients_flag_reaches_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "seed", "--steps", "20", "--batch-size", "32",
                 "--frame-every", "0", "--device", "cpu", "--gradients", "autograd",
                 "--out", str(out), "--quiet", "--no-figures"]) == 0
    assert '"gradients": "autograd"' in (out / "config.json").read_text()
    with pytest.raises(SystemExit) as stop:
        main(["train", "--gradients", "by-hand", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
    assert "--gradients" in capsys.readouterr().err
