"""Shared fixtures: a tiny config and one tiny trained run reused across tests."""

from __future__ import annotations

import os
import signal

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


@pytest.fixture(scope="session")
def evaluated_run(tiny_run_dir, tmp_path_factory):
    """A copy of the tiny run, evaluated (small n and K, ``eval.json``) and its convergence
    measured, by the CLI, once a session; a test that changes it works on its own copy."""
    import shutil

    from vaelab.cli.main import main

    run = shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("evaluated") / "run")
    assert main(["evaluate", str(run), "--n", "600", "--k", "50",
                 "--json", str(run / "eval.json")]) == 0
    assert main(["convergence", str(run), "--points", "40", "--ks", "1,10,100",
                 "--repeats", "2"]) == 0
    return run


@pytest.fixture
def interrupt_at():
    """``interrupt_at(monkeypatch, step)``: send this process SIGINT during step ``step + 1``
    of the next training loop (single run or group), which then saves a checkpoint and stops
    after that step. Both loops ask the schedules for the learning rate once per step."""
    from vaelab.training import schedules

    def arm(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
        original = schedules.lr_factor

        def lr_factor(cfg, done, prog):  # noqa: ANN001, ANN202
            if done == step:
                os.kill(os.getpid(), signal.SIGINT)
            return original(cfg, done, prog)

        monkeypatch.setattr(schedules, "lr_factor", lr_factor)
    return arm


@pytest.fixture(scope="session", autouse=True)
def _compiled_step_cache(tmp_path_factory):
    """Compiled training steps (vaelab.training.aot) go to a folder of this session, not the
    user's cache: every session builds its own, as on a fresh machine."""
    from vaelab.training.aot import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("vaelab-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(autouse=True)
def _compiling_pays(monkeypatch):
    """``--compile auto`` plans as on a CPU where compiling was measured to pay, whatever CPU
    runs the tests, so that the tests of the plan do not depend on it; the machine's own
    answer (vaelab.training.aot.compile_blocker) has its own tests."""
    from vaelab.training import plan

    monkeypatch.setattr(plan, "compile_blocker", lambda: None)


@pytest.fixture(autouse=True)
def _few_threads():
    """One torch thread in the test process, as vaelab's own default (devices.DEFAULT_THREADS):
    deterministic, and on a busy machine no test waits for a second thread to be scheduled."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeClock:
    """``perf_counter`` for the training loop and the step builder: each reading advances
    ``tick`` seconds, and ``advance`` jumps (a compilation's time, a slow spell), so no test
    depends on how fast this machine is."""

    def __init__(self, tick: float = 0.001) -> None:
        self.now, self.tick = 100.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch):
    """The loop's and the step builder's clock replaced by a :class:`FakeClock`."""
    import types

    from vaelab.training import loop, step

    clock = FakeClock()
    fake = types.SimpleNamespace(perf_counter=clock.perf_counter)
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(step, "time", fake)
    return clock



ARTIFACTS_ENV = "VAELAB_TEST_ARTIFACTS"


@pytest.fixture(scope="session")
def artifacts(request):
    """A folder for what a person should look at after the tests (the figures vaelab draws,
    the report's screenshots): $VAELAB_TEST_ARTIFACTS, else test-artifacts/ in the checkout.
    Its path is printed at the end of the session."""
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "test-artifacts"
    folder = Path(os.environ.get(ARTIFACTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    request.config._vaelab_artifacts = folder
    return folder


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    folder = getattr(config, "_vaelab_artifacts", None)
    if folder is not None and any(folder.iterdir()):
        terminalreporter.write_line(f"figures and report screenshots for review: {folder}")


@pytest.fixture
def fake_builds(monkeypatch, tmp_path):
    """An empty cache folder, with builds that write a small file, count themselves and
    remember the step they built (``steps["step"]``: a test may set another before a load);
    a package opens as a :class:`FakeRunner` of that step."""
    from fakebuilds import FakeRunner

    from vaelab.fileio import atomic_write
    from vaelab.training import aot

    monkeypatch.setenv(aot.CACHE_ENV, str(tmp_path / "cache"))
    built = []
    steps = {}

    def build(step, args, package, adam=None, tally=None):  # noqa: ANN001, ANN202
        built.append(package)
        steps["step"] = step
        steps["folded"] = (adam, tally is not None)
        atomic_write(package, lambda tmp: tmp.write_bytes(b"package " * 100))

    monkeypatch.setattr(aot, "_build", build)
    monkeypatch.setattr(aot, "_open", lambda package: FakeRunner(
        steps["step"], *steps.get("folded", (None, False))))
    return built, steps
