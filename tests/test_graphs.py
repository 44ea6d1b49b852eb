"""The step replayed as a CUDA graph (training/graphs.py), and the device scalars it needs.

The tests marked ``cuda`` run only where CUDA is present (the CI machine has none; they ran on
an H100 lent to the session, see BENCHMARKS.md): a graphed run must give the eager run's
weights bit for bit. The rest check, on the CPU, what a graph relies on: the learning rate, KL
weight and Adam's bias corrections read from device tensors, and the refusals.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vaelab import resume_many, train_many
from vaelab.config import RunConfig
from vaelab.errors import ConfigError
from vaelab.groups import seed_group, sweep_group
from vaelab.resolve import build_config
from vaelab.runs import resume_run, train_run
from vaelab.training.graphs import GraphedStep
from vaelab.training.loop import fit, fit_group, prepare
from vaelab.training.optim import Adam
from vaelab.training.plan import graph_blocker

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

QUICK = {"steps": 240, "frame_every": 0, "log_every": 40, "checkpoint_every": 0}


# -- on the CPU ---------------------------------------------------------------------------

def test_cuda_graph_is_a_validated_choice():
    with pytest.raises(ConfigError, match="train.cuda_graph"):
        build_config("seed", settings={"cuda_graph": "yes"})
    with pytest.raises(ConfigError, match="train.compile"):
        build_config("seed", settings={"cuda_graph": "on", "compile": "on"})
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        build_config("seed", settings={"cuda_graph": "on", "device": "cpu"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_graph_on_without_cuda_is_refused_before_anything_runs():
    cfg = build_config("seed", settings={"cuda_graph": "on"})  # device auto: the CPU here
    with pytest.raises(ConfigError, match="cuda_graph = 'on' cannot apply.*CUDA device"):
        prepare(cfg)


def test_cli_names_the_refusal_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vaelab", "train", "--preset", "seed",
                          "--steps", "5", "--device", "cpu", "--cuda-graph", "on",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.cuda_graph" in lines[0], res.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("settings", "device", "fixed", "compiled", "why"), [
    ({}, "cpu", False, False, "needs a CUDA device"),
    ({}, "cuda", True, False, "fixed training set"),
    ({}, "cuda", False, True, "reduce-overhead"),
    ({"data_backend": "sklearn"}, "cuda", False, False, "sklearn"),
    ({}, "cuda", False, False, None),
])
def test_graph_blocker_names_what_breaks_a_graph(settings, device, fixed, compiled, why):
    cfg = build_config("seed", settings=settings)
    reason = graph_blocker(cfg, torch.device(device), fixed, compiled)
    assert (reason is None) if why is None else (why in reason)


def test_a_cpu_run_says_it_ran_eagerly():
    result = fit(build_config("seed", settings={**QUICK, "steps": 20, "device": "cpu"}),
                 progress=False)
    assert result.summary["cuda_graph"] is False


def test_disabled_graphed_step_calls_its_body_every_time():
    calls = []
    step = GraphedStep(lambda: calls.append(1) or len(calls), torch.device("cpu"), [], False)
    assert [step() for _ in range(3)] == [1, 2, 3]
    assert not step.captured


def test_adam_with_a_device_learning_rate_is_adams_update():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(2)]
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ref = torch.optim.Adam(params, lr=0.1, fused=True)
    dev = Adam(twin, [RunConfig().optim.lr])
    dev.use_device_scalars()
    for i in range(12):
        factor = 0.7 ** (i // 4)
        ref.param_groups[0]["lr"] = 0.1 * factor
        dev.set_factor(factor * 0.1 / RunConfig().optim.lr)
        assert dev.lr_tensor is not None and float(dev.lr_tensor) == pytest.approx(0.1 * factor)
        grads = [torch.randn(5, 3) for _ in params]
        for p, q, g in zip(params, twin, grads, strict=True):
            p.grad, q.grad = g, g.clone()
        ref.step()
        dev.step()
    for p, q in zip(params, twin, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    assert dev.lr == pytest.approx(ref.param_groups[0]["lr"])  # a float too


def test_stacked_adam_with_device_scalars_matches_its_eager_update():
    torch.manual_seed(1)
    shapes = [(3, 4, 2), (3, 4)]
    params = [torch.randn(s) for s in shapes]
    twin = [p.clone() for p in params]
    lrs = [1e-2, 3e-3, 1e-3]
    eager, dev = Adam(params, lrs), Adam(twin, lrs)
    dev.use_device_scalars()
    for i in range(10):
        for opt in (eager, dev):
            opt.set_factor(0.5 ** (i // 3))
        for p, q in zip(params, twin, strict=True):
            p.grad = torch.randn(p.shape)
            q.grad = p.grad.clone()
        eager.step()
        dev.step()
    for p, q in zip(params, twin, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
    assert dev.export_state().step == eager.export_state().step == 10
    dev.import_state(eager.export_state())
    assert dev.export_state().step == 10


def test_a_checkpoint_saved_before_a_new_setting_still_matches_its_config():
    cfg = build_config("seed")
    saved = json.loads(cfg.to_json())
    del saved["train"]["cuda_graph"]  # as a run saved before the setting existed
    assert cfg.matches_json(json.dumps(saved))
    saved["train"]["seed"] = 7
    assert not cfg.matches_json(json.dumps(saved))
    assert not cfg.matches_json("{not json")


# -- on CUDA: a graphed run is the eager run ----------------------------------------------

def _weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@cuda
@pytest.mark.parametrize(("preset", "extra"), [
    ("seed", {}),
    ("default", {}),  # IWAE, mixture prior, learned sigma, standardised data, cosine rate
    ("seed", {"kl_warmup": 0.5, "scheduler": "cosine"}),  # KL weight and rate change per step
    ("seed", {"gradients": "autograd"}),  # backward() captured too
    ("default", {"prior": "flow", "gradients": "autograd"}),
    ("seed", {"data": "moons"}),
])
def test_graphed_run_equals_eager_run_bit_for_bit(preset, extra):
    runs = {}
    for mode in ("on", "off"):
        cfg = build_config(preset, settings={**QUICK, **extra, "device": "cuda",
                                             "cuda_graph": mode})
        runs[mode] = fit(cfg, progress=False)
    assert runs["on"].summary["cuda_graph"] is True
    assert runs["off"].summary["cuda_graph"] is False
    _weights_equal(runs["on"].model, runs["off"].model)
    assert runs["on"].metrics == [dict(r, elapsed_s=runs["on"].metrics[i]["elapsed_s"])
                                  for i, r in enumerate(runs["off"].metrics)]


@cuda
def test_graphed_run_records_frames_of_each_step_it_shows():
    cfg = build_config("seed", settings={**QUICK, "frame_every": 60, "device": "cuda"})
    result = fit(cfg, progress=False)
    assert [f.step for f in result.frames] == [1, 60, 120, 180, 240]
    # each frame holds that step's batch, not the graph's latest
    assert not torch.equal(result.frames[1].data, result.frames[2].data)


@cuda
def test_a_diverging_graphed_run_names_its_step():
    from vaelab.errors import TrainingDiverged
    cfg = build_config("seed", settings={**QUICK, "lr": 1e6, "device": "cuda"})
    with pytest.raises(TrainingDiverged, match="at step"):
        fit(cfg, progress=False)


@cuda
def test_graphed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, interrupt_at):
    from vaelab.errors import TrainingInterrupted
    cfg = build_config("default", settings={**QUICK, "device": "cuda"})
    whole = train_run(cfg, tmp_path / "whole", progress=False, figures=False)
    with monkeypatch.context() as m:
        interrupt_at(m, 97)
        with pytest.raises(TrainingInterrupted):
            train_run(cfg, tmp_path / "cut", progress=False, figures=False)
    resumed = resume_run(tmp_path / "cut", progress=False, figures=False)
    _weights_equal(whole.model, resumed.model)


@cuda
@pytest.mark.parametrize(("preset", "make"), [
    ("seed", lambda c: seed_group(c, 4)),
    ("default", lambda c: seed_group(c, 3)),
    ("seed", lambda c: seed_group(c.replace({"loss.kl_warmup": 0.3}), 3)),
    ("seed", lambda c: sweep_group(c, {"lr": [1e-2, 3e-3]})),  # one rate per model
    ("default", lambda c: sweep_group(c, {"kld_weight": [1.0, 0.5]})),
])
def test_graphed_group_equals_eager_group_bit_for_bit(preset, make):
    results = {}
    for mode in ("on", "off"):
        cfg = build_config(preset, settings={**QUICK, "device": "cuda", "cuda_graph": mode})
        results[mode] = fit_group(make(cfg), progress=False)
    assert results["on"][0].summary["cuda_graph"] is True
    for a, b in zip(results["on"], results["off"], strict=True):
        _weights_equal(a.model, b.model)




@cuda
def test_graphed_group_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch,
                                                            interrupt_at):
    from vaelab.errors import TrainingInterrupted
    settings = {**QUICK, "device": "cuda"}
    whole = train_many(seeds=3, preset="seed", out=tmp_path / "whole", progress=False,
                       figures=False, **settings)
    with monkeypatch.context() as m:
        interrupt_at(m, 101)
        with pytest.raises(TrainingInterrupted):
            train_many(seeds=3, preset="seed", out=tmp_path / "cut", progress=False,
                       figures=False, **settings)
    resumed = resume_many(tmp_path / "cut", progress=False, figures=False)
    for a, b in zip(whole, resumed, strict=True):
        _weights_equal(a.model, b.model)
