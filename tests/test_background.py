"""The compiled step built in a second process while the first steps train eagerly
(vaelab.training.background): the child builds the very step the run expects, and a machine's
first run (built meanwhile) ends bit for bit as a later one (loaded from the cache)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.models import build_model
from vaelab.resolve import build_config, resolve_config
from vaelab.training import aot, background, plan
from vaelab.training.optim import Adam
from vaelab.training.stack import ModelStack
from vaelab.training.tally import Tally

SETTINGS = {"steps": 160, "batch_size": 32, "frame_every": 0, "log_every": 20,
            "device": "cpu", "checkpoint_every": 0, "handoff": 80}


def _spec(tmp_path) -> dict:
    cfg = resolve_config(build_config("default", settings=SETTINGS))
    model = build_model(cfg)
    model.set_standardization(torch.zeros(2), torch.ones(2))
    stack = ModelStack([model])
    optimizer = Adam(list(stack.params.values()), [cfg.optim.lr])
    tally = Tally.start(torch.zeros(4), 0)
    x, eps = torch.zeros(32, 2), torch.zeros(stack.eps_shape(32))
    key = background.step_key(stack, optimizer, tally, x, eps, 1.0, True, True)
    return background.build_spec([cfg], key, tuple(x.shape), tuple(eps.shape), None, True,
                                 True, tuple(tally.sums.shape))


def test_the_child_rebuilds_the_step_the_run_expects(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(background, "load_or_build", lambda *args: built.append(args))
    spec = _spec(tmp_path)
    background.build_from_spec(spec)  # the same key: it builds
    assert len(built) == 1
    with pytest.raises(RuntimeError, match="expects"):
        background.build_from_spec({**spec, "key": "0" * 16})
    assert len(built) == 1


def test_a_child_that_fails_says_why_in_its_last_line(tmp_path):
    spec = {**_spec(tmp_path), "configs": ["{not json"]}
    build = background.BackgroundBuild(spec)
    assert build.wait() is False
    assert "Error" in build.failure() and "\n" not in build.failure()
    build.stop()
    assert not build.folder.exists()


def _train(out, **extra):
    return vaelab.train(preset="default", out=out, progress=False, **SETTINGS, **extra)


def _same_weights(a, b) -> bool:
    return all(torch.equal(value, b.model.state_dict()[name])
               for name, value in a.model.state_dict().items())


@pytest.mark.slow  # a real build (the hand-off is opt-in)
def test_a_first_run_and_a_cached_run_hand_off_to_the_same_bits(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "COMPILE_MIN_STEPS", 10)  # so that auto compiles these runs
    monkeypatch.setenv(aot.CACHE_ENV, str(tmp_path / "cache"))  # empty: a machine's first run
    first = _train(tmp_path / "first")
    assert first.summary["plan"]["handoff"] == 80
    assert first.summary["compile_background"] == "built"
    assert first.summary["compile_handoff"] == 80 and first.summary["compiled"]
    assert list(aot.cache_dir().glob("*.pt2"))  # the child left the package in the cache
    later = _train(tmp_path / "later")
    assert "compile_background" not in later.summary  # loaded: nothing built
    assert later.summary["compile_cache"] == "loaded"
    assert _same_weights(first, later)
    eager = _train(tmp_path / "eager", compile="off")
    assert not _same_weights(first, eager)  # the compiled half ran: it rounds otherwise


@pytest.mark.slow
def test_a_failed_background_build_is_built_at_the_hand_off_and_resumes(tmp_path, monkeypatch,
                                                                       interrupt_at):
    monkeypatch.setattr(plan, "COMPILE_MIN_STEPS", 10)
    monkeypatch.setenv(aot.CACHE_ENV, str(tmp_path / "cache"))
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", "/bin/false")  # the child cannot start python
        failed = _train(tmp_path / "failed")
    assert failed.summary["compile_background"].startswith("failed")
    assert failed.summary["compiled"]  # built in the foreground at the hand-off instead
    with monkeypatch.context() as m:
        interrupt_at(m, 40)  # before the hand-off: the resumed run hands off at step 80
        with pytest.raises(vaelab.errors.TrainingInterrupted):
            _train(tmp_path / "cut")
    resumed = vaelab.resume(tmp_path / "cut", progress=False)
    assert _same_weights(failed, resumed)


@pytest.mark.slow
def test_a_child_stopped_mid_build_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setenv(aot.CACHE_ENV, str(tmp_path / "cache"))
    build = background.BackgroundBuild(_spec(tmp_path))
    folder = aot.cache_dir()
    # the package's temporary file exists while AOTInductor compiles into it: stop it then
    seen: list[Path] = []
    for _ in range(30_000):
        seen = list(folder.glob("*.tmp.pt2")) if folder.is_dir() else []
        if seen or build.done():
            break
        time.sleep(0.01)
    assert seen, "the child finished (or failed) before it began writing its package"
    build.stop()
    assert build.process.returncode not in (None, 0)
    assert list(folder.glob("*tmp*")) == [] and not list(folder.glob("*.pt2"))
    assert not build.folder.exists()


def test_a_child_that_cannot_start_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    made = []
    real_mkdtemp = background.tempfile.mkdtemp
    monkeypatch.setattr(background.tempfile, "mkdtemp",
                        lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    with pytest.raises(OSError):
        background.BackgroundBuild(_spec(tmp_path))
    assert made and not any(Path(m).exists() for m in made)


@pytest.mark.parametrize(("summary", "out", "err"), [
    ({"compile_handoff": 80, "compile_background": "built", "compile_wait_seconds": 2.0,
      "compiled": True}, "built in a second process meanwhile; 2.0 s waited", ""),
    ({"compile_handoff": 80, "compile_cache": "loaded", "compiled": True},
     "loaded from the cache", ""),
    ({"compile_handoff": 80, "compile_background": "failed: exit status 1", "compiled": True},
     "built at the hand-off; the second process failed: exit status 1", ""),
    # the build at the hand-off failed too: the run trained on eagerly, and says so only
    ({"compile_handoff": 80, "compile_background": "failed: exit status 1", "compiled": False,
      "compile_note": "torch.compile could not compile ...; trained eagerly"}, "",
     "trained eagerly"),
])
def test_train_says_what_the_hand_off_did(summary, out, err, capsys):
    from vaelab.cli.main import _report_compile

    _report_compile(summary)
    captured = capsys.readouterr()
    assert out in captured.out and err in captured.err
    assert ("then the compiled step" in captured.out) == summary["compiled"]
