"""The compiled step (vaelab.training.step, vaelab.training.aot): when it is used, that it
computes the eager step's loss and gradients, that compiling happens before the training
clock, and that a machine where torch.compile fails still trains (or says why, in one line)."""

from __future__ import annotations

import sys

import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.errors import RunError, TrainingInterrupted
from vaelab.groups import seed_group
from vaelab.models import build_model
from vaelab.models.explicit import ExplicitStep
from vaelab.resolve import build_config
from vaelab.training import aot, plan
from vaelab.training import step as step_module
from vaelab.training.loop import resolve_config
from vaelab.training.plan import plan_step

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _uses(preset: str, device: torch.device = CPU, group: bool = False, **settings) -> bool:
    cfg = resolve_config(build_config(preset, settings=settings))
    return plan_step(seed_group(cfg, 2) if group else [cfg], device, False).compiled


def test_auto_compiles_long_closed_form_runs_on_the_cpu_only():
    assert _uses("default")  # 24,000 steps of the IWAE bound, explicit gradients
    assert _uses("default", group=True)  # vaelab train --seeds N
    assert _uses("default", time_limit=10.0)
    assert _uses("default", steps=None, time_limit=30.0)
    assert not _uses("default", time_limit=5.0)  # too short to repay the compilation
    assert not _uses("default", steps=2000)
    assert not _uses("default", device=CUDA)  # CUDA graphs replay the eager step there
    assert not _uses("default", gradients="autograd")  # measured slower compiled
    assert not _uses("default", prior="flow")  # its loss goes through autograd
    assert not _uses("default", compile="off")
    assert _uses("seed")  # 10,000 steps of the seed's loss, in closed form
    assert not _uses("seed", steps=2000)
    assert not _uses("seed", prior="mixture")  # the seed's loss through autograd
    assert _uses("seed", compile="on", steps=5)
    assert _uses("seed", compile="on", steps=5, device=CUDA)  # the autograd step, there


def _eager_and_compiled(preset: str, settings: dict, batch: int):
    """The eager explicit step's and the ahead-of-time compiled step's loss terms, z and
    gradients on one batch."""
    torch.manual_seed(0)
    cfg = resolve_config(build_config(preset, settings={"device": "cpu", **settings}))
    model = build_model(cfg)
    if model.standardized:
        model.set_standardization(torch.tensor([0.5, -1.0]), torch.tensor([6.0, 5.0]))
    step = ExplicitStep.for_model(model)
    samples = model.training_samples()
    x = torch.randn(batch, 2) * 6
    eps = torch.randn(((samples,) if samples else ()) + (batch, model.latent_dim))
    params = list(model.parameters())
    fast, _ = aot.load_or_build(step, CPU, x, eps, 0.7)
    results = []
    for fn in (step, fast):
        for p in params:
            p.grad = None
        terms, z = fn(x, eps, 0.7)
        results.append((terms, z, [p.grad.clone() for p in params if p.grad is not None]))
    return results


@pytest.mark.parametrize(("preset", "settings"), [
    ("default", {}),  # IWAE k = 4, mixture prior, learned sigma
    pytest.param("seed", {}, marks=pytest.mark.slow),
])
def test_the_compiled_step_computes_the_eager_steps_loss_and_gradients(preset, settings):
    (t_eager, z_eager, g_eager), (t_comp, z_comp, g_comp) = _eager_and_compiled(
        preset, settings, 64)
    torch.testing.assert_close(t_comp, t_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z_comp, z_eager, rtol=1e-5, atol=1e-6)
    assert len(g_comp) == len(g_eager) >= 16  # every parameter the eager step trains
    for a, b in zip(g_comp, g_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_compiling_happens_before_the_training_clock(monkeypatch, fake_clock, fake_builds):
    monkeypatch.setattr(plan, "COMPILE_MIN_SECONDS", 0.5)  # so that auto compiles this run
    clock = fake_clock
    clock.tick = 0.005  # a few dozen steps fill the 0.6 s
    built, _ = fake_builds  # the package's build is faked: the clock is what is tested
    load_or_build = step_module.load_or_build

    def slow_load_or_build(*args):  # noqa: ANN002, ANN202 - a compilation of 2 s
        clock.advance(2.0)
        return load_or_build(*args)

    monkeypatch.setattr(step_module, "load_or_build", slow_load_or_build)
    result = vaelab.train(preset="default", progress=False, device="cpu", time_limit=0.6,
                          batch_size=32, frame_every=0, log_every=20)
    s = result.summary
    assert s["compiled"] and s["compile_seconds"] >= 2.0 and len(built) == 1
    # the 0.6 s clock started after the compilation: it ran its steps, not none
    assert s["stopped_by"] == "time_limit" and s["steps"] > 20
    assert result.metrics[-1]["elapsed_s"] == pytest.approx(s["train_seconds"], abs=0.01)
    assert 0.6 <= s["train_seconds"] < 0.7


def _failing_build(*args, **kwargs):
    raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore text")


def test_a_failed_compilation_falls_back_or_says_why_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(aot.CACHE_ENV, str(tmp_path / "cache"))  # empty: every step is built
    monkeypatch.setattr(aot, "_build", _failing_build)
    monkeypatch.setattr(plan, "COMPILE_MIN_STEPS", 10)  # so that auto compiles these runs
    settings = {"steps": 20, "batch_size": 32, "frame_every": 0, "log_every": 10,
                "device": "cpu"}
    with pytest.warns(RuntimeWarning, match="no working C.. compiler.*trained eagerly"):
        result = vaelab.train(preset="default", progress=False, handoff=0, **settings)
    assert not result.summary["compiled"] and result.summary["steps"] == 20
    assert "InvalidCxxCompiler" in result.summary["compile_note"]
    # with a hand-off: the background child fails too, so the step is built (and fails) at
    # the hand-off, and the run trains on eagerly
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", "/bin/false")
        with pytest.warns(RuntimeWarning, match="no working C.. compiler.*trained eagerly"):
            handed = vaelab.train(preset="default", progress=False, handoff=10, **settings)
    assert not handed.summary["compiled"] and handed.summary["steps"] == 20
    assert handed.summary["compile_background"].startswith("failed")
    assert handed.summary["compile_handoff"] == 10
    with pytest.raises(RunError, match="could not compile.*--compile off"):
        vaelab.train(preset="default", progress=False, compile="on", **settings)

    out = tmp_path / "run"
    code = main(["train", "--preset", "default", "--steps", "20", "--batch-size", "32",
                 "--compile", "on", "--device", "cpu", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "could not compile" in err[0]
    assert "Traceback" not in err[0] and not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_a_compiled_run_is_reproducible_and_resumes_bit_for_bit(tmp_path, interrupt_at,
                                                                monkeypatch):
    settings = {"steps": 60, "batch_size": 32, "frame_every": 0, "log_every": 20,
                "device": "cpu", "compile": "on", "checkpoint_every": 20}
    first = vaelab.train(preset="default", progress=False, **settings)
    again = vaelab.train(preset="default", progress=False, **settings)
    whole = vaelab.train(preset="default", out=tmp_path / "whole", progress=False,
                         **settings)
    with monkeypatch.context() as m:
        interrupt_at(m, 30)
        with pytest.raises(TrainingInterrupted):
            vaelab.train(preset="default", out=tmp_path / "cut", progress=False, **settings)
    resumed = vaelab.resume(tmp_path / "cut", progress=False)
    for run in (again, whole, resumed):
        for name, value in first.model.state_dict().items():
            assert torch.equal(value, run.model.state_dict()[name]), name


@pytest.mark.slow
def test_a_compiled_group_follows_the_eager_group():
    from vaelab.training.loop import fit_group

    runs = {}
    for mode in ("off", "on"):
        cfg = build_config("default", settings={"steps": 40, "batch_size": 32, "device": "cpu",
                                                "frame_every": 0, "log_every": 5,
                                                "checkpoint_every": 0, "compile": mode})
        runs[mode] = fit_group(seed_group(cfg, 3), progress=False)
    for eager, compiled in zip(runs["off"], runs["on"], strict=True):
        assert compiled.summary["compiled"] and not eager.summary["compiled"]
        assert compiled.summary["compile_seconds"] > 0
        # the first rows agree closely; rounding differences then grow (Adam's first steps
        # divide each gradient by its own size, so tiny gradients' rounding is amplified)
        first, last = (pytest.approx(a["loss"], rel=r) for a, r in
                       zip((eager.metrics[0], eager.metrics[-1]), (1e-3, 3e-2), strict=True))
        assert compiled.metrics[0]["loss"] == first and compiled.metrics[-1]["loss"] == last
