"""Many models at once: the batched step computes each model's own loss and gradient, the
stacked Adam is torch's Adam, and a group writes ordinary, loadable runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

import vaelab
from vaelab.errors import ConfigError, RunError
from vaelab.groups import check_group, group_labels, seed_group, sweep_group
from vaelab.resolve import build_config
from vaelab.runs import load_run
from vaelab.training.loop import init_model, prepare
from vaelab.training.optim import Adam
from vaelab.training.stack import _LossOf

SMALL = {"steps": 150, "batch_size": 64, "log_every": 50, "frame_every": 75,
         "display_points": 50, "device": "cpu"}


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_the_batched_step_gives_each_model_its_own_loss_and_gradient(preset):
    torch.manual_seed(0)
    configs = [prepare(build_config(preset, settings={**SMALL, "seed": s}))[0] for s in (0, 5)]
    models = [init_model(c, 100 + i) for i, c in enumerate(configs)]
    if configs[0].data.standardize:
        for m in models:
            m.set_standardization(torch.tensor([1.0, -2.0]), torch.tensor([6.0, 7.0]))
    samples = models[0].training_samples()
    x = torch.randn(2, 32, 2) * 5
    eps = torch.randn((2,) + ((samples,) if samples else ()) + (32, 2))
    w = torch.tensor([1.0, 0.5])

    step = _LossOf(copy.deepcopy(models[0]))
    params, buffers = stack_module_state(models)
    params = {f"model.{k}": v for k, v in params.items()}
    buffers = {f"model.{k}": v for k, v in buffers.items()}
    terms, _ = vmap(lambda p, b, xx, ee, ww: functional_call(step, (p, b), (xx, ee, ww)))(
        params, buffers, x, eps, w)
    terms[:, 0].sum().backward()

    for i, model in enumerate(models):
        out = model(x[i], eps=eps[i], samples=samples)
        own = torch.stack(tuple(model.loss(out, kld_weight=float(w[i]))))
        torch.testing.assert_close(terms[i].detach(), own.detach(), rtol=1e-5, atol=1e-5)
        own[0].backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(params[f"model.{name}"].grad[i], p.grad,
                                       rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lrs", [[1e-2, 3e-3], [1e-2, 1e-2]])  # formula; fused kernel
def test_stacked_adam_is_torch_adam_with_one_learning_rate_per_model(lrs):
    torch.manual_seed(1)
    shapes = [(3, 4), (4,)]
    singles = [[torch.randn(s, requires_grad=True) for s in shapes] for _ in lrs]
    stacked = [torch.stack([singles[m][j].detach() for m in range(2)]).requires_grad_()
               for j in range(len(shapes))]
    adams = [torch.optim.Adam(p, lr=lr, foreach=False) for p, lr in zip(singles, lrs,
                                                                         strict=True)]
    ours = Adam(stacked, lrs)
    assert ours.fused == (len(set(lrs)) == 1)
    for _ in range(5):
        grads = [[torch.randn(s) for s in shapes] for _ in lrs]
        for m, adam in enumerate(adams):
            for p, g in zip(singles[m], grads[m], strict=True):
                p.grad = g.clone()
            adam.step()
        for j, p in enumerate(stacked):
            p.grad = torch.stack([grads[m][j] for m in range(2)])
        ours.step()
    for j in range(len(shapes)):
        for m in range(2):
            torch.testing.assert_close(stacked[j][m].detach(), singles[m][j].detach(),
                                       rtol=1e-6, atol=1e-7)


def test_a_group_writes_loadable_runs_that_learn(tmp_path):
    torch.set_num_threads(1)
    runs = vaelab.train_many(seeds=3, preset="seed", out=tmp_path / "g", progress=False,
                             figures=False, **SMALL)
    assert [r.path.name for r in runs] == ["seed-0", "seed-1", "seed-2"]
    for run in runs:
        loaded = load_run(run.path)
        assert loaded.config.train.seed == run.config.train.seed
        assert loaded.summary["group"]["models"] == 3
        assert [m["step"] for m in loaded.metrics] == [50, 100, 150]
        assert [f.step for f in loaded.frames] == [1, 75, 150]
        assert loaded.metrics[-1]["loss"] < 0.7 * loaded.metrics[0]["loss"]
        assert torch.equal(loaded.sample(20, seed=1), run.sample(20, seed=1))
    w = [r.model.fc_mu.weight for r in runs]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_a_group_model_trains_like_a_single_run_of_its_seed():
    torch.set_num_threads(1)
    settings = {**SMALL, "steps": 400}
    single = vaelab.train(preset="seed", progress=False, figures=False, **settings)
    group = vaelab.train_many(seeds=2, preset="seed", progress=False, figures=False,
                              **settings)
    # same initial weights (the model's own seed), different batches: close, not equal
    a, b = single.metrics[-1]["neg_elbo"], group[0].metrics[-1]["neg_elbo"]
    assert abs(a - b) < 0.15 * abs(a)


def test_hyper_parameter_groups_and_fixed_training_sets():
    torch.set_num_threads(1)
    base = build_config("seed", settings={**SMALL, "n_train": 300})
    configs = [base.replace({"optim.lr": lr, "loss.kld_weight": w})
               for lr, w in ((1e-2, 1.0), (3e-3, 2.0))]
    runs = vaelab.train_many(configs, progress=False, figures=False)
    assert [r.config.optim.lr for r in runs] == [1e-2, 3e-3]
    assert runs[0].metrics[0]["lr"] == pytest.approx(1e-2)
    assert runs[1].metrics[0]["lr"] == pytest.approx(3e-3)
    assert all(r.metrics[-1]["loss"] < r.metrics[0]["loss"] for r in runs)


def test_groups_must_share_their_shapes():
    a = build_config("seed", settings=SMALL)
    with pytest.raises(ConfigError, match="hidden_dims"):
        check_group([a, a.replace({"model.hidden_dims": [64, 64]})])
    with pytest.raises(ConfigError):
        seed_group(a, 0)


def test_a_group_refuses_occupied_directories_before_writing(tmp_path):
    (tmp_path / "g" / "seed-1").mkdir(parents=True)
    (tmp_path / "g" / "seed-1" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        vaelab.train_many(seeds=2, preset="seed", out=tmp_path / "g", progress=False, **SMALL)
    assert not (tmp_path / "g" / "seed-0").exists()
    assert (tmp_path / "g" / "seed-1" / "keep.txt").read_text() == "mine"


def test_seeds_through_the_cli(tmp_path, capsys):
    from vaelab.cli.main import main

    assert main(["train", "--preset", "seed", "--seeds", "2", "--steps", "60",
                 "--batch-size", "32", "--frame-every", "0", "--device", "cpu", "--quiet",
                 "--no-figures", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "trained 2 models x 60 steps" in out
    assert load_run(tmp_path / "g" / "seed-1").config.train.seed == 1
    assert main(["train", "--resume", str(tmp_path / "g" / "seed-1"), "--seeds", "2"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_a_sweep_is_every_combination_first_key_slowest():
    base = build_config("seed", settings={**SMALL, "seed": 7})
    group = sweep_group(base, {"lr": [1e-3, 1e-2], "loss.kld_weight": [0.5, 1.0]}, seeds=2)
    got = [(c.optim.lr, c.loss.kld_weight, c.train.seed) for c in group]
    assert got == [(lr, w, s) for lr in (1e-3, 1e-2) for w in (0.5, 1.0) for s in (7, 8)]
    assert group_labels(group)[:3] == ["lr-0.001_kld_weight-0.5_seed-7",
                                       "lr-0.001_kld_weight-0.5_seed-8",
                                       "lr-0.001_kld_weight-1_seed-7"]
    assert group_labels(seed_group(base, 3)) == ["seed-7", "seed-8", "seed-9"]
    assert group_labels([base, base]) == ["model-0", "model-1"]
    check_group(group)  # a sweep is a valid group


@pytest.mark.parametrize("sweep, seeds, message", [
    ({"batch_size": [32, 64]}, None, "cannot sweep 'batch_size'"),
    ({"lr": [1e-3], "optim.lr": [1e-2]}, None, "swept twice"),
    ({"lr": []}, None, "needs a list of values"),
    ({"lr": "0.01"}, None, "needs a list of values"),
    ({"seed": [1, 2]}, 2, "not both"),
    ({"lr": [0.0]}, None, "optim.lr"),
    ({"seed": [1.5]}, None, "train.seed"),
])
def test_bad_sweeps_are_refused_by_name(sweep, seeds, message):
    with pytest.raises(ConfigError, match=message):
        sweep_group(build_config("seed", settings=SMALL), sweep, seeds)


def test_a_sweep_through_the_api_and_the_cli(tmp_path, capsys):
    from vaelab.cli.main import main

    torch.set_num_threads(1)
    runs = vaelab.train_many(sweep={"kld_weight": [0.5, 2.0]}, preset="seed", progress=False,
                             figures=False, **SMALL)
    assert [r.config.loss.kld_weight for r in runs] == [0.5, 2.0]
    # the KL weight reaches each model: the weaker one keeps the larger KL term
    assert runs[0].metrics[-1]["kld"] > runs[1].metrics[-1]["kld"]

    assert main(["train", "--preset", "seed", "--sweep", "lr=0.01,0.003", "--seeds", "2",
                 "--steps", "60", "--batch-size", "32", "--frame-every", "0", "--device",
                 "cpu", "--quiet", "--no-figures", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "trained 4 models x 60 steps" in out
    names = sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir())
    assert names == ["lr-0.003_seed-0", "lr-0.003_seed-1", "lr-0.01_seed-0", "lr-0.01_seed-1"]
    loaded = load_run(tmp_path / "s" / "lr-0.003_seed-1")
    assert (loaded.config.optim.lr, loaded.config.train.seed) == (0.003, 1)
    assert loaded.metrics[0]["lr"] == pytest.approx(0.003)
    for argv, message in [
        (["--sweep", "lr=0.01,x"], "'x' is not a number"),
        (["--sweep", "steps=10,20"], "cannot sweep 'steps'"),
        (["--sweep", "lr=0.01", "--sweep", "lr=0.02"], "given twice"),
        (["--sweep", "lr=0.01,0.02", "--lr", "0.5"], "--sweep lr and --lr both set optim.lr"),
        (["--sweep", "seed=1,2", "--set", "train.seed=3"], "and --set train.seed both set"),
        (["--resume", str(tmp_path / "s" / "lr-0.01_seed-0"), "--sweep", "lr=0.1"],
         "drop --sweep"),
    ]:
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(main(["train", *argv]))
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_a_time_limit_stops_the_whole_group(fake_clock):
    torch.set_num_threads(1)
    runs = vaelab.train_many(seeds=2, preset="seed", progress=False, figures=False,
                             **{**SMALL, "steps": None, "time_limit": 1.0,
                                "scheduler": "cosine"})
    steps = runs[0].summary["steps"]
    assert all(r.summary["stopped_by"] == "time_limit" for r in runs)
    assert all(r.summary["steps"] == steps for r in runs) and steps > 1
    assert runs[0].summary["train_seconds"] >= 1.0  # the step that ends past the limit is the last
    # the cosine decay ran on the clock: the last step's lr is near its end, 0
    assert runs[0].metrics[-1]["step"] == steps
    assert runs[0].metrics[-1]["lr"] < 0.05 * runs[0].config.optim.lr
    capped = vaelab.train_many(seeds=2, preset="seed", progress=False, figures=False,
                               **{**SMALL, "steps": 40, "time_limit": 60.0})
    assert [r.summary["stopped_by"] for r in capped] == ["steps", "steps"]
    assert capped[0].summary["steps"] == 40
