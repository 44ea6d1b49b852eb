"""Issue 4's training options: schedules, IWAE training, KL warm-up, learned priors,
activations, decoder widths and the time limit."""

from __future__ import annotations

import json
import math

import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.config import LossConfig, OptimConfig, RunConfig
from vaelab.errors import ConfigError
from vaelab.estimators import log_density
from vaelab.models import SimpleVAE, build_prior
from vaelab.objectives import gaussian_loss, iwae_loss, kl_to_standard_normal, log_normal_diag
from vaelab.resolve import build_config
from vaelab.training import schedules

TINY = {"steps": 60, "batch_size": 64, "log_every": 20, "frame_every": 0, "display_points": 50,
        "device": "cpu"}
GAUSSIAN = {"loss": "gaussian", "loss.learn_decoder_std": True, "loss.decoder_std": 0.3,
            "data.standardize": True}


# -- schedules ----------------------------------------------------------------------------

def test_step_schedule_is_the_seeds_steplr():
    cfg = OptimConfig(lr=2e-2, scheduler="step", step_size=7, gamma=0.7)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.7)
    for done in range(40):
        expected = opt.param_groups[0]["lr"]
        assert cfg.lr * schedules.lr_factor(cfg, done, done / 40) == pytest.approx(expected,
                                                                                 rel=1e-12)
        opt.step()
        ref.step()


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_decaying_schedules_run_from_one_to_the_floor(name):
    cfg = OptimConfig(scheduler=name, min_lr_ratio=0.1)
    assert schedules.lr_factor(cfg, 0, 0.0) == pytest.approx(1.0)
    assert schedules.lr_factor(cfg, 0, 1.0) == pytest.approx(0.1)
    mid = 0.1 + 0.9 * 0.5
    assert schedules.lr_factor(cfg, 0, 0.5) == pytest.approx(mid)
    values = [schedules.lr_factor(cfg, 0, p / 20) for p in range(21)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_lr_warmup_ramps_then_decays():
    cfg = OptimConfig(scheduler="cosine", warmup=0.2)
    assert schedules.lr_factor(cfg, 0, 0.1) == pytest.approx(0.5)
    assert schedules.lr_factor(cfg, 0, 0.2) == pytest.approx(1.0)
    assert 0 < schedules.lr_factor(cfg, 0, 0.0) < 0.01
    assert schedules.lr_factor(cfg, 0, 0.6) == pytest.approx(0.5)


def test_kl_warmup_and_progress():
    cfg = LossConfig(kld_weight=2.0, kl_warmup=0.5)
    assert schedules.kl_weight(cfg, 0.0) == 0.0
    assert schedules.kl_weight(cfg, 0.25) == pytest.approx(1.0)
    assert schedules.kl_weight(cfg, 0.9) == 2.0
    assert schedules.kl_weight(LossConfig(kld_weight=2.0), 0.0) == 2.0
    assert schedules.progress(5, 10, 0.0, None) == 0.5
    assert schedules.progress(400, None, 3.0, 4.0) == 0.75
    # the clock's fraction never runs ahead of done / MIN_SCHEDULE_STEPS (a slow machine)
    assert schedules.progress(1, None, 3.0, 4.0) == 1 / schedules.MIN_SCHEDULE_STEPS
    assert schedules.progress(9, 10, 1.0, 4.0) == 0.9  # the larger fraction wins
    assert schedules.progress(2000, None, 9.0, 4.0) == 1.0


# -- objectives ---------------------------------------------------------------------------

def test_iwae_loss_with_one_sample_is_the_elbo():
    g = torch.Generator().manual_seed(0)
    log_lik, log_ratio = torch.randn(1, 50, generator=g), torch.rand(1, 50, generator=g)
    terms = iwae_loss(log_lik, log_ratio)
    ref = gaussian_loss(log_lik[0], log_ratio[0])
    assert torch.allclose(terms.loss, ref.loss) and torch.allclose(terms.neg_elbo, ref.neg_elbo)


def test_iwae_loss_matches_a_hand_computation_and_is_tighter():
    g = torch.Generator().manual_seed(1)
    log_lik, log_ratio = torch.randn(8, 30, generator=g), torch.rand(8, 30, generator=g)
    terms = iwae_loss(log_lik, log_ratio, kld_weight=0.5)
    w = (log_lik - 0.5 * log_ratio).double().exp()
    assert terms.loss.item() == pytest.approx(-torch.log(w.mean(0)).mean().item(), rel=1e-5)
    full = iwae_loss(log_lik, log_ratio)
    assert full.loss <= full.neg_elbo  # Jensen: the IWAE bound is above the ELBO
    with pytest.raises(ValueError, match="shape"):
        iwae_loss(log_lik, log_ratio[:, :5])


def test_log_normal_diag_is_torch_distributions():
    g = torch.Generator().manual_seed(2)
    z, mu, lv = (torch.randn(4, 3, generator=g) for _ in range(3))
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(-1)
    assert torch.allclose(log_normal_diag(z, mu, lv), ref, atol=1e-6)


# -- models ---------------------------------------------------------------------------------

def test_activation_and_decoder_widths():
    model = SimpleVAE(2, 3, [32, 16], decoder_hidden_dims=[8, 24, 40], activation="silu")
    assert any(isinstance(m, torch.nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in model.modules())
    widths = [m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert model.decoder_input.out_features == 8 and widths == [8, 24, 40]
    assert model.decode(torch.zeros(5, 3)).shape == (5, 2)
    with pytest.raises(ValueError, match="activation"):
        SimpleVAE(2, 2, [8], activation="swish")


def test_a_learned_prior_at_its_identity_start_gives_the_same_estimates():
    """An untrained flow prior is exactly N(0, I): with it the sampled-KL ELBO must agree with
    the closed-form one (in expectation) and IWAE must not change at all."""
    torch.manual_seed(0)
    model = SimpleVAE(2, 2, [16])
    x = torch.randn(40, 2)
    exact_elbo = log_density(model, x, "elbo", k=4000, seed=1)
    exact_iwae = log_density(model, x, "iwae", k=64, seed=1)
    model.set_prior(build_prior("flow", 2))
    assert not model.prior.is_standard
    assert torch.allclose(log_density(model, x, "iwae", k=64, seed=1), exact_iwae, atol=1e-4)
    sampled = log_density(model, x, "elbo", k=4000, seed=1)
    assert (sampled - exact_elbo).abs().max() < 0.1


def test_the_training_loss_uses_the_learned_prior():
    torch.manual_seed(0)
    model = SimpleVAE(2, 2, [16])
    model.configure_likelihood(0.5, learn=True)
    model.configure_objective("gaussian", 1.0)
    x = torch.randn(20, 2)
    out = model(x, generator=torch.Generator().manual_seed(0))
    standard = model.loss(out)
    model.set_prior(build_prior("mixture", 2, components=3, seed=5))
    learned = model.loss(out)
    expected = (log_normal_diag(out.z, out.mu, out.log_var) - model.log_prior(out.z)).mean()
    assert torch.allclose(learned.kld, expected)
    assert torch.allclose(standard.kld, kl_to_standard_normal(out.mu, out.log_var).mean())
    assert not torch.allclose(learned.kld, standard.kld)


# -- training -------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"loss": "iwae", "iwae_k": 4, "kl_warmup": 0.3},
    {"prior": "flow", "scheduler": "cosine", "lr_warmup": 0.1},
    {"prior": "mixture", "activation": "silu", "scheduler": "linear"},
])
def test_every_option_trains_saves_and_reloads(tmp_path, extra):
    settings = {**TINY, **GAUSSIAN, **{k: v for k, v in extra.items() if "." not in k}}
    run = vaelab.train(preset="seed", out=tmp_path / "run", progress=False, figures=False,
                       **settings)
    assert all(math.isfinite(m["loss"]) for m in run.metrics)
    assert run.summary["steps"] == 60 and run.summary["stopped_by"] == "steps"
    again = vaelab.load(tmp_path / "run")
    assert torch.equal(run.sample(200, seed=1), again.sample(200, seed=1))
    # a trained Gaussian likelihood: samples are draws from p(x), decoder noise included
    assert not torch.equal(run.sample(200, seed=1), run.sample(200, seed=1, noise=False))
    logp = log_density(again.model, run.sample(20, seed=2), "iwae", k=16)
    assert torch.isfinite(logp).all()


def test_kl_warmup_starts_with_a_zero_weight():
    cfg = build_config("seed", settings={**TINY, **GAUSSIAN, "kl_warmup": 0.5, "steps": 40,
                                         "log_every": 1})
    rows = vaelab.train(cfg, progress=False).metrics
    first = rows[0]
    assert first["loss"] == pytest.approx(first["reconstruction"], rel=1e-6)
    last = rows[-1]
    assert last["loss"] == pytest.approx(last["neg_elbo"], rel=1e-5)


def test_a_time_limit_stops_training(fake_clock):
    no_steps = {k: v for k, v in TINY.items() if k != "steps"}
    cfg = build_config("seed", settings={**no_steps, "time_limit": 0.5})
    assert cfg.train.steps is None and cfg.train.time_limit == 0.5
    run = vaelab.train(cfg, progress=False)
    assert run.summary["stopped_by"] == "time_limit"
    # the fake clock ticks 1 ms a reading, the loop reads it twice a step
    assert 200 <= run.summary["steps"] <= 260 and 0.5 <= run.summary["train_seconds"] < 0.51
    assert run.metrics[-1]["step"] == run.summary["steps"]
    capped = build_config("seed", settings={**no_steps, "time_limit": 100.0, "steps": 30})
    run = vaelab.train(capped, progress=False)
    assert run.summary["steps"] == 30 and run.summary["stopped_by"] == "steps"


def test_the_time_limit_flag(tmp_path, capsys, fake_clock):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--time-limit", "0.3", "--quiet", "--no-figures",
                 "--device", "cpu", "--batch-size", "32", "--frame-every", "0"]) == 0
    captured = capsys.readouterr()
    assert "stopped by time limit" in captured.out
    assert vaelab.load(out).config.train.time_limit == 0.3
    # 0.3 s of the fake clock buy about 150 steps: too few, said once, and kept in the summary
    warned = [line for line in captured.err.splitlines() if "vaelab: warning" in line]
    assert len(warned) == 1 and "bought only" in warned[0] and "--time-limit" in warned[0]
    assert vaelab.load(out).summary["pace"]["warnings"] == [warned[0].split("warning: ")[1]]


def test_a_slow_machine_does_not_spend_the_schedule_in_a_few_steps(fake_clock):
    """Each step takes 2 s of a 15 s limit (a machine under heavy load): the run warns, its
    summary says how many steps it got, and its cosine schedule has barely begun."""
    fake_clock.tick = 1.0
    settings = {k: v for k, v in TINY.items() if k != "steps"}
    run = vaelab.train(preset="default", progress=False, **settings, time_limit=15.0,
                       compile="off")
    s = run.summary
    assert s["stopped_by"] == "time_limit" and s["steps"] == s["pace"]["steps"] < 10
    assert run.metrics[-1]["lr"] > 0.9 * run.config.optim.lr  # not decayed to nothing
    assert any("bought only" in w for w in s["pace"]["warnings"])


@pytest.mark.parametrize(("threads", "remedy"), [(2, "--threads 1"), (1, "less busy")])
def test_a_collapse_of_the_step_rate_is_said_once(fake_clock, monkeypatch, capsys, threads,
                                                  remedy):
    from vaelab.training import schedules

    # the remedy follows the thread count; the run itself keeps one thread, so that a busy
    # machine cannot stretch this test
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)

    original = schedules.lr_factor

    def slow_down(cfg, done, prog):  # noqa: ANN001, ANN202 - from step 100: 10x slower
        if done >= 100:
            fake_clock.advance(0.02)
        return original(cfg, done, prog)

    monkeypatch.setattr(schedules, "lr_factor", slow_down)
    run = vaelab.train(preset="seed", progress=False, **{**TINY, "steps": 300, "log_every": 50})
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "slowed from" in warned[0] and remedy in warned[0]
    assert run.summary["pace"]["warnings"] and run.summary["pace"]["predicted_steps"] is None


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({"loss": {"name": "gaussian", "k": 4}}, "loss.k"),
    ({"loss": {"name": "iwae", "k": 0}}, "loss.k"),
    ({"loss": {"kl_warmup": 1.5}}, "loss.kl_warmup"),
    ({"optim": {"warmup": 1.0}}, "optim.warmup"),
    ({"optim": {"min_lr_ratio": -0.1}}, "optim.min_lr_ratio"),
    ({"model": {"prior": "flow", "latent_dim": 1}}, "model.prior"),
    ({"model": {"prior": "vamp"}}, "model.prior"),
    ({"model": {"activation": "swish"}}, "model.activation"),
    ({"model": {"decoder_hidden_dims": []}}, "model.decoder_hidden_dims"),
    ({"train": {"steps": None}}, "train.steps"),
    ({"train": {"time_limit": 0}}, "train.time_limit"),
])
def test_bad_option_values_are_refused(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        RunConfig.from_dict(data)


@pytest.mark.parametrize("argv", [
    ["--time-limit", "0"], ["--time-limit", "nan"], ["--iwae-k", "0"], ["--kl-warmup", "2"],
    ["--prior", "vamp"], ["--loss", "iwae", "--iwae-k", "abc"],
])
def test_bad_option_flags_are_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "r"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaelab train: error:")


def test_compare_draws_runs_beside_the_truth(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert main(["compare", str(tiny_run_dir), str(tiny_run_dir), "-o", str(out), "-n", "300",
                 "--labels", "a,b"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["compare", str(tiny_run_dir), "-o", str(out), "--labels", "a,b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels has 2 names for 1 runs" in err[0]


def test_threads_default_to_one_unless_the_flag_or_the_environment_says(monkeypatch):
    import os

    from vaelab.devices import DEFAULT_THREADS, choose_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert choose_threads() == (DEFAULT_THREADS, "default") == (1, "default")
    assert torch.get_num_threads() == 1
    assert choose_threads(2) == (2, "--threads") and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # read by torch at start: left as it is
    assert choose_threads() == (2, "OMP_NUM_THREADS")
    # never more than the cores this process may run on (a container, taskset)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert choose_threads(8) == (1, "--threads") and torch.get_num_threads() == 1


def test_the_threads_flag_reaches_every_command_and_the_summary(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--preset", "seed", "--steps", "20",
                 "--log-every", "10", "--no-figures", "--quiet", "--threads", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["threads"] == 2
    assert main(["sample", str(out), "-n", "5", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(out), "--threads", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaelab evaluate: error: argument --threads")


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_the_fused_adam_step_is_torch_adam_bit_for_bit(preset, monkeypatch):
    """vaelab's Adam calls torch's fused kernel directly: the weights are those of
    torch.optim.Adam(fused=True) stepping through the same run."""
    from vaelab.training import optim

    torch.set_num_threads(1)
    settings = {"steps": 120, "batch_size": 64, "frame_every": 0, "device": "cpu"}
    lean = vaelab.train(preset=preset, progress=False, **settings)

    def reference_step(self):  # noqa: ANN001, ANN202 - torch.optim.Adam's own step
        if not hasattr(self, "_torch"):
            self._torch = torch.optim.Adam(self.params, lr=self.lr, fused=True)
        self._torch.param_groups[0]["lr"] = self.lr
        self._torch.step()

    monkeypatch.setattr(optim.Adam, "step", reference_step)
    reference = vaelab.train(preset=preset, progress=False, **settings)
    for name, value in reference.model.state_dict().items():
        assert torch.equal(value, lean.model.state_dict()[name]), name


@pytest.mark.slow
def test_compiled_training_follows_eager_training():
    """The compiled autograd step (inductor on the CPU; CUDA graphs on a GPU) computes the
    eager one's loss terms and gradients on the same inputs; and training with --compile on
    (on the CPU the compiled explicit step) follows the eager loss curve."""
    from vaelab.resolve import build_config
    from vaelab.training.loop import init_model, prepare
    from vaelab.training.stack import ModelStack
    from vaelab.training.step import torch_compiled

    torch.set_num_threads(1)
    cfg = prepare(build_config("default", settings={"device": "cpu"}))[0]
    model = init_model(cfg, 0)
    samples = model.training_samples()
    x = torch.randn(64, 2) * 5
    eps = torch.randn(samples, 64, 2)
    results = []
    for compiled in (False, True):
        model.zero_grad(set_to_none=True)
        loss = ModelStack([model]).loss_function()
        if compiled:
            loss = torch_compiled(loss, torch.device("cpu"))
        total, terms, _ = loss(x, eps, 0.5)
        total.backward()
        results.append((terms.detach(), [p.grad.clone() for p in model.parameters()]))
    (t_eager, g_eager), (t_comp, g_comp) = results
    torch.testing.assert_close(t_comp, t_eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_comp, g_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    settings = {"steps": 60, "batch_size": 64, "frame_every": 0, "device": "cpu",
                "kl_warmup": 0.5, "log_every": 20}
    eager = vaelab.train(preset="default", progress=False, compile="off", **settings)
    compiled = vaelab.train(preset="default", progress=False, compile="on", **settings)
    # the explicit step, compiled: rounding differences grow over the steps (test_compiled.py)
    for a, b in zip(eager.metrics, compiled.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-2)


def test_one_slow_interval_is_a_pause_not_a_collapse(fake_clock, monkeypatch, capsys):
    from vaelab.training import schedules

    original = schedules.lr_factor

    def pause(cfg, done, prog):  # noqa: ANN001, ANN202 - one 2 s pause at step 120
        if done == 120:
            fake_clock.advance(2.0)
        return original(cfg, done, prog)

    monkeypatch.setattr(schedules, "lr_factor", pause)
    run = vaelab.train(preset="seed", progress=False, **{**TINY, "steps": 300, "log_every": 50})
    assert "warning" not in capsys.readouterr().err and run.summary["pace"]["warnings"] == []
