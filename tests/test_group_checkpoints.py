"""Checkpoints and resume of a group of models (``--seeds`` / ``--sweep``).

The promise is a single run's: a step-limited group interrupted (SIGINT in process, SIGKILL
of a real ``vaelab train``) and resumed ends on the CPU with exactly the weights, metrics and
frames of an uninterrupted group. A damaged or mismatched group checkpoint is refused by name,
and nothing is written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

import vaelab
from vaelab.errors import RunError, TrainingInterrupted
from vaelab.fileio import safetensors_metadata
from vaelab.runs import GROUP_FILE, MODEL_FILE, load_run, resume_run
from vaelab.training.checkpoint import GROUP_CHECKPOINT_FILE, read_checkpoint
from vaelab.training.loop import METRIC_FIELDS

SMALL = {"steps": 200, "batch_size": 64, "log_every": 40, "frame_every": 80,
         "display_points": 50, "checkpoint_every": 50, "device": "cpu"}
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _assert_same_runs(a: list, b: list) -> None:
    assert [r.path.name for r in a] == [r.path.name for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.model.state_dict().items():
            assert torch.equal(v, rb.model.state_dict()[k]), (ra.path.name, k)
        strip = [{k: v for k, v in m.items() if k != "elapsed_s"} for m in ra.metrics]
        assert strip == [{k: v for k, v in m.items() if k != "elapsed_s"} for m in rb.metrics]
        assert [f.step for f in ra.frames] == [f.step for f in rb.frames]
        for fa, fb in zip(ra.frames, rb.frames, strict=True):
            assert all(torch.equal(p, q) for p, q in zip(fa[1:], fb[1:], strict=True))


@pytest.mark.parametrize("kwargs", [
    {"seeds": 2, "preset": "seed"},  # one learning rate: torch's fused Adam, explicit step
    {"sweep": {"lr": [1e-3, 3e-3]}, "preset": "seed"},  # one learning rate per model
    {"seeds": 2, "preset": "seed", "n_train": 300},  # fixed sets: each model's permutation
    {"seeds": 2, "preset": "default", "steps": 120},  # vmap + autograd, standardised data
    # fixed sets with rows set aside: each model's best weights so far are restored too
    {"seeds": 2, "preset": "default", "steps": 120, "n_train": 300},
])
def test_an_interrupted_group_resumes_to_the_same_state(tmp_path, monkeypatch, interrupt_at,
                                                        kwargs):
    torch.set_num_threads(1)
    settings = {**SMALL, **kwargs}
    whole = vaelab.train_many(out=tmp_path / "whole", progress=False, figures=False,
                              **settings)
    with monkeypatch.context() as m:
        interrupt_at(m, 70)
        with pytest.raises(TrainingInterrupted, match="at step 71.*--resume"):
            vaelab.train_many(out=tmp_path / "cut", progress=False, figures=False, **settings)
    assert not any((p / MODEL_FILE).exists() for p in (tmp_path / "cut").iterdir()
                   if p.is_dir())
    ckpt = read_checkpoint(tmp_path / "cut" / GROUP_CHECKPOINT_FILE, METRIC_FIELDS)
    assert ckpt.loop.step == 71 and not ckpt.loop.finished
    for r in whole:  # each model's metrics.csv grew as it trained: the rows before the cut
        lines = (tmp_path / "cut" / r.path.name / "metrics.csv").read_text().splitlines()
        assert [int(line.split(",")[0]) for line in lines[1:]] == [40]
    resumed = vaelab.resume_many(tmp_path / "cut", progress=False, figures=False)
    assert all(r.summary["resumed_from_step"] == 71 for r in resumed)
    _assert_same_runs(whole, resumed)
    _assert_same_runs(whole, [load_run(r.path) for r in resumed])  # and as written


def test_a_time_limited_group_resumes_with_the_time_it_had_left(tmp_path, monkeypatch,
                                                                 interrupt_at, fake_clock):
    torch.set_num_threads(1)
    settings = {**SMALL, "steps": None, "time_limit": 1.5, "scheduler": "cosine"}
    with monkeypatch.context() as m:
        interrupt_at(m, 30)
        with pytest.raises(TrainingInterrupted):
            vaelab.train_many(seeds=2, preset="seed", out=tmp_path / "g", progress=False,
                              figures=False, **settings)
    spent = read_checkpoint(tmp_path / "g" / GROUP_CHECKPOINT_FILE,
                                  METRIC_FIELDS).loop.elapsed_s
    assert 0 < spent < 1.5
    runs = vaelab.resume_many(tmp_path / "g", progress=False, figures=False)
    assert all(r.summary["stopped_by"] == "time_limit" for r in runs)
    assert all(r.summary["resumed_from_step"] == 31 for r in runs)
    assert runs[0].summary["train_seconds"] >= 1.5
    # the clock went on from where it stopped (not from 0), and the cosine decay with it
    after = [row for row in runs[0].metrics if row["step"] > 31]
    assert after and all(row["elapsed_s"] > spent for row in after)
    assert runs[0].metrics[-1]["lr"] < 0.05 * runs[0].config.optim.lr


@pytest.fixture
def cut_group(tmp_path, monkeypatch, interrupt_at) -> Path:
    """A seed-preset group of 2, interrupted after its step-50 checkpoint."""
    with monkeypatch.context() as m:
        interrupt_at(m, 60)
        with pytest.raises(TrainingInterrupted):
            vaelab.train_many(seeds=2, preset="seed", out=tmp_path / "cut", progress=False,
                              figures=False, **SMALL)
    return tmp_path / "cut"


def test_a_model_of_a_group_cannot_resume_alone(cut_group):
    with pytest.raises(RunError, match="one model of the group.*--resume"):
        resume_run(cut_group / "seed-1", progress=False)
    with pytest.raises(RunError, match="holds a group"):
        resume_run(cut_group, progress=False)
    with pytest.raises(RunError, match="group of models.*e.g. .*seed-0"):
        load_run(cut_group)  # vaelab evaluate / sample / plot take one model's directory


def test_training_into_an_interrupted_group_points_to_resume(cut_group):
    with pytest.raises(RunError, match="interrupted group.*--resume"):
        vaelab.train_many(seeds=2, preset="seed", out=cut_group, progress=False, **SMALL)
    runs = vaelab.train_many(seeds=2, preset="seed", out=cut_group, force=True,
                             progress=False, figures=False, **SMALL)
    assert all("resumed_from_step" not in r.summary for r in runs)
    assert read_checkpoint(cut_group / GROUP_CHECKPOINT_FILE, METRIC_FIELDS).loop.finished


def test_a_run_and_a_group_do_not_share_a_directory(tmp_path):
    small = {**SMALL, "steps": 20, "frame_every": 0}
    vaelab.train(preset="seed", out=tmp_path / "r", progress=False, figures=False, **small)
    with pytest.raises(RunError, match="holds a run"):
        vaelab.train_many(seeds=2, preset="seed", out=tmp_path / "r", progress=False, **small)
    vaelab.train_many(seeds=2, preset="seed", out=tmp_path / "r", force=True, progress=False,
                      figures=False, **small)
    assert not (tmp_path / "r" / "config.json").exists()  # the run's files went
    vaelab.train(preset="seed", out=tmp_path / "r", force=True, progress=False, figures=False,
                 **small)
    assert not (tmp_path / "r" / GROUP_FILE).exists()  # and the group's
    assert load_run(tmp_path / "r").config.train.steps == 20


def test_a_complete_group_is_refused_and_a_lost_model_is_rebuilt(cut_group):
    runs = vaelab.resume_many(cut_group, progress=False, figures=False)
    with pytest.raises(RunError, match="complete"):
        vaelab.resume_many(cut_group, progress=False)
    with pytest.raises(RunError, match="holds a group of models; choose another"):
        vaelab.train_many(seeds=2, preset="seed", out=cut_group, progress=False, **SMALL)
    (cut_group / "seed-0" / MODEL_FILE).unlink()
    rebuilt = vaelab.resume_many(cut_group, progress=False, figures=False)
    for k, v in runs[0].model.state_dict().items():
        assert torch.equal(v, rebuilt[0].model.state_dict()[k])


def _rewrite(path: Path, edit) -> None:
    data = path.read_bytes()
    tensors, meta = load_tensors(data), safetensors_metadata(data)
    edit(tensors, meta)
    path.write_bytes(save_tensors(tensors, metadata=meta))


def _digest_kept(edit):
    """An edit that recomputes the checksum, so that only the deeper checks can catch it."""
    from vaelab.fileio import tensors_digest

    def apply(tensors, meta):
        edit(tensors, meta)
        meta["sha256"] = tensors_digest(tensors, meta)
    return apply


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "not a readable safetensors"),
    (lambda p: _rewrite(p, lambda t, m: t["params/fc_mu.bias"].add_(1e-3)), "checksum"),
    (lambda p: _rewrite(p, _digest_kept(lambda t, m: t.update(
        {"params/fc_mu.bias": torch.zeros(3, 2)}))), "params/fc_mu.bias"),
    (lambda p: _rewrite(p, _digest_kept(lambda t, m: t.pop("optim/3/exp_avg"))),
     "optimiser state is incomplete"),
    (lambda p: _rewrite(p, _digest_kept(lambda t, m: m.update(
        configs=json.dumps([json.loads(m["configs"])[1]] * 2)))), "other configs"),
    (lambda p: _rewrite(p, _digest_kept(lambda t, m: m.update(format="x"))), "format"),
])
def test_damaged_group_checkpoints_are_refused_and_nothing_is_written(cut_group, damage,
                                                                      message):
    damage(cut_group / GROUP_CHECKPOINT_FILE)
    with pytest.raises(RunError, match=message):
        vaelab.resume_many(cut_group, progress=False)
    assert not (cut_group / "seed-0" / MODEL_FILE).exists()


@pytest.mark.parametrize("text, message", [
    ("{", "not readable JSON"),
    ('{"format": "vaelab-group-1", "models": ["../x"]}', "not a vaelab group file"),
    ('{"format": "vaelab-group-1", "models": ["seed-0"]}', "does not match"),
])
def test_a_bad_group_file_is_refused(cut_group, text, message):
    (cut_group / GROUP_FILE).write_text(text)
    with pytest.raises(RunError, match=message):
        vaelab.resume_many(cut_group, progress=False)


def test_a_group_resumes_through_the_cli(cut_group, capsys):
    from vaelab.cli.main import main

    assert main(["train", "--resume", str(cut_group / "seed-0")]) == 2
    err = capsys.readouterr().err
    assert "one model of the group" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--resume", str(cut_group), "--quiet", "--no-figures"]) == 0
    assert "trained 2 models x 200 steps" in capsys.readouterr().out
    assert main(["train", "--resume", str(cut_group)]) == 2
    assert "complete" in capsys.readouterr().err


@pytest.mark.slow
def test_a_group_killed_by_sigkill_resumes_to_the_same_weights(tmp_path):
    args = ["-m", "vaelab", "train", "--preset", "seed", "--seeds", "3", "--steps", "1500",
            "--checkpoint-every", "100", "--log-every", "50", "--frame-every", "500",
            "--device", "cpu", "--quiet", "--no-figures"]
    ref = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "ref")],
                         env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, *args, "--out", str(cut)], env=CHILD_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / GROUP_CHECKPOINT_FILE).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (cut / "seed-0" / MODEL_FILE).exists()  # killed mid-run
    done = subprocess.run([sys.executable, "-m", "vaelab", "train", "--resume", str(cut),
                           "--quiet", "--no-figures"], env=CHILD_ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("seed-0", "seed-1", "seed-2"):
        a, b = load_run(tmp_path / "ref" / name), load_run(cut / name)
        for k, v in a.model.state_dict().items():
            assert torch.equal(v, b.model.state_dict()[k]), (name, k)
        assert a.summary["steps"] == b.summary["steps"] == 1500
