"""The step plan (vaelab.training.plan): one function decides how a step runs, from the config
and the device alone; the run records it, and ``vaelab train --dry-run`` prints it and writes
nothing."""

from __future__ import annotations

import json
import os

import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.errors import ConfigError
from vaelab.groups import seed_group, sweep_group
from vaelab.resolve import resolve_config
from vaelab.training.plan import AOT, AUTOGRAD, EAGER, EXPLICIT, TORCH_COMPILE, plan_step

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _plan(preset: str, device: torch.device = CPU, models: int = 1, fixed: bool = False,
          **settings):
    cfg = resolve_config(vaelab.build_config(preset, settings=settings))
    return plan_step(seed_group(cfg, models), device, fixed)


@pytest.mark.parametrize(("preset", "device", "models", "settings", "expected"), [
    # (gradients, compile, cuda_graph, adam_folded)
    ("seed", CPU, 1, {}, (EXPLICIT, AOT, False, True)),  # 10,000 steps: auto compiles
    ("seed", CPU, 1, {"steps": 2000}, (EXPLICIT, EAGER, False, False)),  # too short to repay
    ("default", CPU, 8, {}, (EXPLICIT, AOT, False, True)),  # a group, one shared rate
    ("default", CPU, 1, {"prior": "flow"}, (AUTOGRAD, EAGER, False, False)),
    ("default", CPU, 1, {"prior": "flow", "compile": "on"}, (AUTOGRAD, TORCH_COMPILE, False,
                                                             False)),
    ("default", CPU, 3, {"prior": "flow", "compile": "on"}, (AUTOGRAD, EAGER, False, False)),
    ("seed", CPU, 1, {"gradients": "autograd"}, (AUTOGRAD, EAGER, False, False)),
    ("seed", CUDA, 1, {}, (EXPLICIT, EAGER, True, False)),  # replayed as one CUDA graph
    ("seed", CUDA, 1, {"compile": "on"}, (AUTOGRAD, TORCH_COMPILE, False, False)),
    ("seed", CUDA, 1, {"cuda_graph": "off"}, (EXPLICIT, EAGER, False, False)),
])
def test_the_plan_follows_the_config_and_the_device(preset, device, models, settings,
                                                    expected):
    plan = _plan(preset, device, models, **settings)
    assert (plan.gradients, plan.compile, plan.cuda_graph, plan.adam_folded) == expected
    assert plan.models == models and plan.stacked == (models > 1)
    assert plan.tally_folded == (plan.compile == AOT)
    # every choice has its reason, and the text shows each
    assert set(plan.reasons) == {"gradients", "compile", "cuda_graph", "adam_folded",
                                 "tally_folded", "handoff"}
    text = "\n".join(plan.lines())
    assert all(reason in text for reason in plan.reasons.values())


def test_models_with_their_own_rates_keep_adam_out_of_the_compiled_step():
    cfg = resolve_config(vaelab.build_config("seed"))
    plan = plan_step(sweep_group(cfg, {"lr": [1e-2, 2e-2]}), CPU, False)
    assert plan.compile == AOT and not plan.adam_folded
    assert "learning rates differ" in plan.reasons["adam_folded"]


def test_a_fixed_training_set_is_not_graphed():
    plan = _plan("seed", CUDA, fixed=True)
    assert not plan.cuda_graph and "fixed training set" in plan.reasons["cuda_graph"]


@pytest.mark.parametrize(("settings", "match"), [
    ({"gradients": "explicit", "prior": "flow"}, "closed-form losses"),
    ({"gradients": "explicit", "activation": "silu"}, "activation is 'silu'"),
    ({"cuda_graph": "on"}, "cuda_graph = 'on' cannot apply"),
])
def test_a_plan_that_cannot_run_is_refused_by_name(settings, match):
    with pytest.raises(ConfigError, match=match):
        _plan("default", CPU, **settings)


def test_the_run_records_its_plan():
    run = vaelab.train(preset="seed", progress=False, device="cpu", steps=30, batch_size=32,
                       frame_every=0, log_every=10)
    plan = run.summary["plan"]
    assert plan == _plan("seed", steps=30, batch_size=32, frame_every=0,
                         log_every=10).to_dict()
    assert plan["gradients"] == run.summary["gradients"] == EXPLICIT
    assert plan["compile"] == EAGER and not run.summary["compiled"]


def test_dry_run_prints_the_config_and_the_plan_and_writes_nothing(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "default", "--seeds", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("# resolved config of model") == 2 and "# step plan" in out
    first = out.split("# resolved config of model 0\n")[1].split("\n# ")[0]
    assert json.loads(first)["model"]["in_channels"] == 2  # resolved from the data
    assert "compile      ahead-of-time" in out and "adam_folded  yes" in out
    assert os.listdir(tmp_path) == []  # no run directory, no cache, nothing
    code = main(["train", "--preset", "seed", "--gradients", "explicit", "--prior", "flow",
                 "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "closed-form losses" in err[0]
    assert os.listdir(tmp_path) == []


def test_auto_stays_eager_on_a_cpu_where_compiling_does_not_pay():
    cfg = resolve_config(vaelab.build_config("seed"))
    blocked = plan_step([cfg], CPU, False, cpu_blocker="no C++ compiler (g++) on this PATH")
    assert blocked.compile == EAGER and blocked.gradients == EXPLICIT
    assert "no C++ compiler" in blocked.reasons["compile"]
    on = resolve_config(vaelab.build_config("seed", settings={"compile": "on"}))
    assert plan_step([on], CPU, False, cpu_blocker="any").compile == AOT  # asked for: built


def test_the_blocker_is_a_property_of_the_machine(monkeypatch):
    from vaelab.training import aot

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(aot.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert aot.compile_blocker() is None
    monkeypatch.setenv("CXX", "clang++-99")
    monkeypatch.setattr(aot.shutil, "which", lambda name: None)
    assert "no C++ compiler (clang++-99)" in aot.compile_blocker()
    monkeypatch.setattr(aot.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    reason = aot.compile_blocker()
    assert "capability DEFAULT" in reason and "measured slower" in reason


def test_the_run_plans_by_the_machine_it_runs_on(monkeypatch):
    from vaelab.data import build_source
    from vaelab.training import plan as plan_module

    cfg = resolve_config(vaelab.build_config("seed"))
    source = build_source(cfg.data)
    monkeypatch.setattr(plan_module, "compile_blocker", lambda: "this CPU was not measured")
    assert plan_module.plan_for([cfg], source, CPU).compile == EAGER
    monkeypatch.setattr(plan_module, "compile_blocker", lambda: None)
    assert plan_module.plan_for([cfg], source, CPU).compile == AOT


@pytest.mark.parametrize(("preset", "settings", "expected"), [
    ("default", {}, 0),  # opt-in: the build comes first
    ("seed", {}, 0),
    ("default", {"handoff": 500}, 500),
    ("default", {"handoff": 500, "time_limit": 60.0}, 500),
    ("seed", {"handoff": 2_000}, 2_000),
    ("default", {"handoff": 500, "compile": "on"}, 0),  # built before the first step, as asked
    ("default", {"handoff": 500, "compile": "off"}, 0),  # nothing to hand off to
    ("default", {"handoff": 500, "steps": 2_000}, 0),  # too short for auto to compile
])
def test_the_hand_off_follows_the_config_alone(preset, settings, expected):
    plan = _plan(preset, **settings)
    assert plan.handoff == expected
    shown = "\n".join(plan.lines())
    assert plan.reasons["handoff"] in shown
    if expected:
        assert plan.compile == AOT and f"after step {expected:,}" in shown


def test_a_hand_off_that_covers_the_run_leaves_it_eager():
    plan = _plan("default", steps=12_000, handoff=12_000)
    assert plan.compile == EAGER and plan.handoff == 0
    assert "covers every step" in plan.reasons["compile"]


def test_a_negative_hand_off_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--handoff", "-5", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code != 0 and len(err) == 1 and "--handoff" in err[0]
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="train.handoff"):
        resolve_config(vaelab.build_config("default", settings={"handoff": -1}))
