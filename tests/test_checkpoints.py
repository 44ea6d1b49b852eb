"""Checkpoints, resume, interrupts and the divergence guard.

The central promise: a step-limited run killed at any moment (SIGKILL) and resumed, any
number of times, ends on the CPU with exactly the weights, metrics and frames of an
uninterrupted run with the same seed. The subprocess tests kill real ``vaelab train``
processes at random times; the in-process ones interrupt with SIGINT at a chosen step and
corrupt checkpoints on purpose.
"""

from __future__ import annotations

import json
import os
import random
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
from vaelab.errors import RunError, TrainingDiverged, TrainingInterrupted
from vaelab.fileio import safetensors_metadata
from vaelab.frames import load_frames
from vaelab.resolve import build_config
from vaelab.runs import CHECKPOINT_FILE, MODEL_FILE, load_run, resume_run, train_run
from vaelab.training import loop as loop_module
from vaelab.training.checkpoint import read_checkpoint
from vaelab.training.loop import METRIC_FIELDS

# -- helpers ------------------------------------------------

#: one thread in every child process: the reference and the resumed runs must do the very
#: same floating-point work (and the CI machine has 2 cores)
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
COMMON = ["--device", "cpu", "--quiet", "--no-figures"]
KILL_SETTINGS = {
    "seed": ["--preset", "seed", "--steps", "1000", "--checkpoint-every", "100",
             "--log-every", "50", "--frame-every", "250"],
    "default": ["--steps", "800", "--checkpoint-every", "100", "--log-every", "50",
                "--frame-every", "200"],
}


def _launch(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaelab", *args], env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete(run: Path) -> bool:
    return (run / MODEL_FILE).is_file() and (run / "summary.json").is_file()


def _next_command(settings: list[str], run: Path) -> list[str]:
    """Resume when there is something to resume; a run killed before it wrote its
    config.json has nothing, and is started again with the same command."""
    if (run / "config.json").is_file():
        return ["train", "--resume", str(run), "--quiet", "--no-figures"]
    return ["train", *settings, *COMMON, "--out", str(run)]


def _same_file_contents(a: Path, b: Path) -> bool:
    """Same tensors, bit for bit, and the same metadata (safetensors may order the header
    differently from one write to the next, so the bytes are not compared), but for the
    checksums: a model file records those of the run's other files, and summary.json and
    metrics.csv hold the wall-clock times."""
    da, db = a.read_bytes(), b.read_bytes()
    ta, tb = load_tensors(da), load_tensors(db)

    def meta(data: bytes) -> dict[str, str]:
        return {k: v for k, v in safetensors_metadata(data).items() if not k.endswith("sha256")}

    return (meta(da) == meta(db) and ta.keys() == tb.keys()
            and all(torch.equal(ta[k], tb[k]) for k in ta))


def _assert_same_run(a: Path, b: Path) -> None:
    assert _same_file_contents(a / MODEL_FILE, b / MODEL_FILE)
    ra, rb = load_run(a), load_run(b)
    assert [m["step"] for m in ra.metrics] == [m["step"] for m in rb.metrics]
    for ma, mb in zip(ra.metrics, rb.metrics, strict=True):
        assert {k: v for k, v in ma.items() if k != "elapsed_s"} == \
               {k: v for k, v in mb.items() if k != "elapsed_s"}
    fa, fb = load_frames(a / "frames.safetensors"), load_frames(b / "frames.safetensors")
    assert [f.step for f in fa] == [f.step for f in fb]
    for x, y in zip(fa, fb, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x[1:], y[1:], strict=True))


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs of each KILL_SETTINGS entry, with their wall times."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, settings in KILL_SETTINGS.items():
        start = time.perf_counter()
        proc = _launch(["train", *settings, *COMMON, "--out", str(root / name)])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        out[name] = (root / name, time.perf_counter() - start)
    return out


def _kill_and_resume(reference_runs, tmp_path, name: str, kills: int, seed: int) -> int:
    """Kill the run ``kills`` times at random moments, then let it finish; returns how many
    kills landed while a process was still running."""
    settings = KILL_SETTINGS[name]
    ref, wall = reference_runs[name]
    run = tmp_path / name
    rng = random.Random(seed)
    landed = 0
    for _ in range(kills):
        if _complete(run):
            break
        proc = _launch(_next_command(settings, run))
        time.sleep(rng.uniform(0.0, wall))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.communicate(timeout=300)
    while not _complete(run):
        proc = _launch(_next_command(settings, run))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _assert_same_run(ref, run)
    return landed


# -- kill and resume ------------------------------------------------

def test_sigkill_at_random_moments_then_resume_gives_identical_weights(reference_runs,
                                                                       tmp_path):
    _kill_and_resume(reference_runs, tmp_path, "seed", kills=2, seed=1)


def test_the_default_preset_killed_after_a_checkpoint_resumes_identically(reference_runs,
                                                                          tmp_path):
    settings = KILL_SETTINGS["default"]
    ref, _ = reference_runs["default"]
    run = tmp_path / "default"
    proc = _launch(["train", *settings, *COMMON, "--out", str(run)])
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT_FILE).is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(2).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert (run / CHECKPOINT_FILE).is_file() and not _complete(run)
    proc = _launch(_next_command(settings, run))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _assert_same_run(ref, run)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KILL_SETTINGS))
def test_many_random_kills_then_resume_give_identical_weights(reference_runs, tmp_path, name):
    landed = _kill_and_resume(reference_runs, tmp_path, name, kills=8, seed=10)
    assert landed >= 4  # most kills hit a live process, so the test exercised resuming


def test_sigint_saves_a_checkpoint_and_stops_cleanly(reference_runs, tmp_path):
    settings = KILL_SETTINGS["seed"]
    run = tmp_path / "seed"
    proc = _launch(["train", *settings, *COMMON, "--out", str(run)])
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT_FILE).is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "checkpoint saved" in err and "--resume" in err
    assert not (run / MODEL_FILE).exists()
    ckpt = read_checkpoint(run / CHECKPOINT_FILE, METRIC_FIELDS)
    assert 100 <= ckpt.loop.step < 1000 and not ckpt.loop.finished
    proc = _launch(["train", "--resume", str(run), "--quiet", "--no-figures"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _assert_same_run(reference_runs["seed"][0], run)


# -- in-process resume ------------------------------------------------

IN_PROCESS = {"steps": 240, "batch_size": 64, "log_every": 40, "frame_every": 80,
              "display_points": 50, "checkpoint_every": 60, "device": "cpu"}


@pytest.mark.parametrize("preset,extra", [
    ("seed", {}),
    ("default", {}),
    ("seed", {"n_train": 500}),  # a fixed training set: its permutation is restored too
    ("default", {"n_train": 500}),  # and the weights chosen on its validation rows so far
])
def test_interrupted_in_process_resumes_to_the_same_state(tmp_path, monkeypatch, interrupt_at,
                                                         preset, extra):
    torch.set_num_threads(1)
    cfg = build_config(preset, settings={**IN_PROCESS, **extra})
    whole = train_run(cfg, tmp_path / "whole", progress=False, figures=False)
    with monkeypatch.context() as m:
        interrupt_at(m, 130)
        with pytest.raises(TrainingInterrupted, match="at step 131"):
            train_run(cfg, tmp_path / "cut", progress=False, figures=False)
    assert not (tmp_path / "cut" / MODEL_FILE).exists()
    resumed = resume_run(tmp_path / "cut", progress=False, figures=False)
    assert resumed.summary["resumed_from_step"] == 131
    _assert_same_run(tmp_path / "whole", tmp_path / "cut")
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resuming_a_complete_run_is_refused(tmp_path):
    cfg = build_config("seed", settings={**IN_PROCESS, "steps": 60})
    train_run(cfg, tmp_path / "r", progress=False, figures=False)
    with pytest.raises(RunError, match="complete"):
        resume_run(tmp_path / "r", progress=False)


def test_a_lost_model_file_is_rebuilt_from_the_final_checkpoint(tmp_path):
    cfg = build_config("seed", settings={**IN_PROCESS, "steps": 60})
    train_run(cfg, tmp_path / "r", progress=False, figures=False)
    (tmp_path / "r" / MODEL_FILE).rename(tmp_path / "before.safetensors")
    resume_run(tmp_path / "r", progress=False, figures=False)
    assert _same_file_contents(tmp_path / "r" / MODEL_FILE, tmp_path / "before.safetensors")


def test_a_checkpoint_deleted_mid_run_is_written_again(tmp_path, monkeypatch):
    cfg = build_config("seed", settings=IN_PROCESS)
    original = loop_module.schedules.lr_factor

    def lr_factor(c, done, prog):
        if done == 150:
            (tmp_path / "r" / CHECKPOINT_FILE).unlink()
        return original(c, done, prog)

    monkeypatch.setattr(loop_module.schedules, "lr_factor", lr_factor)
    train_run(cfg, tmp_path / "r", progress=False, figures=False)
    ckpt = read_checkpoint(tmp_path / "r" / CHECKPOINT_FILE, METRIC_FIELDS)
    assert ckpt.loop.finished and ckpt.loop.step == 240


# -- untrusted checkpoints ------------------------------------------------

@pytest.fixture
def interrupted_run(tmp_path, monkeypatch, interrupt_at) -> Path:
    cfg = build_config("seed", settings=IN_PROCESS)
    with monkeypatch.context() as m:
        interrupt_at(m, 70)
        with pytest.raises(TrainingInterrupted):
            train_run(cfg, tmp_path / "cut", progress=False, figures=False)
    return tmp_path / "cut"


def _rewrite(path: Path, edit) -> None:
    data = path.read_bytes()
    tensors, meta = load_tensors(data), safetensors_metadata(data)
    edit(tensors, meta)
    path.write_bytes(save_tensors(tensors, metadata=meta))


def _flip(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "safetensors"),
    (lambda p: p.write_bytes(b""), "safetensors"),
    (lambda p: p.write_bytes(b"\x80\x04\x95 a pickle, not a checkpoint"), "safetensors"),
    (lambda p: _flip(p, 5), "checksum"),  # a flipped bit inside a tensor
    (lambda p: _rewrite(p, lambda t, m: m.update(format="x")), "not a vaelab checkpoint"),
    (lambda p: _rewrite(p, lambda t, m: m.update(step="-1")), "checksum|impossible"),
])
def test_damaged_checkpoints_are_refused_and_nothing_is_written(interrupted_run, damage,
                                                                message):
    damage(interrupted_run / CHECKPOINT_FILE)
    before = {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()}
    with pytest.raises(RunError, match=message):
        resume_run(interrupted_run, progress=False, figures=False)
    after = {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()}
    assert after == before


def test_a_checkpoint_with_a_recomputed_checksum_but_wrong_shapes_is_refused(interrupted_run):
    from vaelab.fileio import tensors_digest

    def edit(tensors, meta):
        tensors["params/fc_mu.weight"] = torch.zeros(1, 3, 3)
        meta["sha256"] = tensors_digest(tensors, meta)

    _rewrite(interrupted_run / CHECKPOINT_FILE, edit)
    with pytest.raises(RunError, match="fc_mu.weight"):
        resume_run(interrupted_run, progress=False, figures=False)


@pytest.mark.parametrize("old", ["vaelab-checkpoint-1", "vaelab-group-checkpoint-1"])
def test_a_checkpoint_of_an_earlier_format_is_refused_in_one_line(interrupted_run, old):
    """Checkpoints written before the one loop (per-model or group formats) do not resume;
    the error says so, and the run's files stay as they were."""
    from vaelab.fileio import tensors_digest

    def edit(tensors, meta):
        meta["format"] = old
        meta["sha256"] = tensors_digest(tensors, meta)

    _rewrite(interrupted_run / CHECKPOINT_FILE, edit)
    before = {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()}
    with pytest.raises(RunError, match=f"earlier vaelab.*{old}.*cannot resume") as caught:
        resume_run(interrupted_run, progress=False, figures=False)
    assert "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()} == before


def test_a_checkpoint_of_another_config_is_refused(interrupted_run):
    cfg = json.loads((interrupted_run / "config.json").read_text())
    cfg["optim"]["lr"] = 1e-3
    (interrupted_run / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    with pytest.raises(RunError, match="another config|not a resolved config"):
        resume_run(interrupted_run, progress=False, figures=False)


def test_a_flipped_bit_in_the_model_file_is_refused(tmp_path):
    cfg = build_config("seed", settings={**IN_PROCESS, "steps": 60})
    train_run(cfg, tmp_path / "r", progress=False, figures=False)
    _flip(tmp_path / "r" / MODEL_FILE, 3)
    with pytest.raises(RunError, match="checksum"):
        load_run(tmp_path / "r")


# -- divergence ------------------------------------------------

def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                            monkeypatch):
    cfg = build_config("seed", settings=IN_PROCESS)
    original = loop_module.schedules.lr_factor
    # from step 131 on, a learning rate no network survives
    monkeypatch.setattr(loop_module.schedules, "lr_factor",
                        lambda c, done, prog: 1e12 if done >= 130 else original(c, done, prog))
    with pytest.raises(TrainingDiverged, match=r"step 13\d.*learning rate.*step 120"):
        train_run(cfg, tmp_path / "r", progress=False, figures=False)
    assert not (tmp_path / "r" / MODEL_FILE).exists()
    ckpt = read_checkpoint(tmp_path / "r" / CHECKPOINT_FILE, METRIC_FIELDS)
    assert ckpt.loop.step == 120
    assert all(torch.isfinite(t).all() for t in ckpt.weights["params"].values())


def test_divergence_through_the_cli_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--preset", "seed", "--steps", "50",
         "--lr", "1e6", *COMMON, "--out", str(tmp_path / "r")],
        env=CHILD_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "diverged at step" in proc.stderr and "--lr" in proc.stderr


def test_divergence_at_a_frame_is_one_line_not_a_failed_draw(tmp_path, capsys):
    """A frame decodes draws of the learned prior; with non-finite weights the mixture's
    draw used to fail with a traceback before the loop's check said what happened."""
    from vaelab.cli.main import main

    assert main(["train", "--data", "moons", "--steps", "20", "--lr", "1e9",
                 "--frame-every", "1", "--batch-size", "32", "--quiet", "--no-figures",
                 "--no-report", "--compile", "off", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step" in err[0] and "--lr" in err[0]


# -- the command line ------------------------------------------------

@pytest.mark.parametrize("extra,message", [
    (["--lr", "0.1"], "drop --lr"),
    (["--out", "x"], "drop --out"),
    (["--preset", "seed"], "drop --preset"),
])
def test_resume_takes_no_other_settings(interrupted_run, capsys, extra, message):
    from vaelab.cli.main import main

    assert main(["train", "--resume", str(interrupted_run), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_training_into_an_interrupted_run_points_to_resume(interrupted_run):
    cfg = build_config("seed", settings=IN_PROCESS)
    with pytest.raises(RunError, match="interrupted run.*--resume"):
        train_run(cfg, interrupted_run, progress=False, figures=False)


def test_resume_of_nothing_is_refused(tmp_path, capsys):
    from vaelab.cli.main import main

    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_checkpoint_every_is_validated(capsys):
    from vaelab.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--checkpoint-every", "-1"])
    assert exc.value.code == 2
    with pytest.raises(vaelab.ConfigError, match="checkpoint_every"):
        build_config("seed", settings={"checkpoint_every": -5})


@pytest.mark.parametrize(("key", "value"), [("step", "10"), ("finished", "1"),
                                            ("elapsed_s", "0.0"), ("stream_pos", "[3]")])
def test_edited_checkpoint_metadata_fails_its_checksum(interrupted_run, key, value):
    """The checksum covers the metadata as well as the tensors: an edited step count, or a
    half-trained run marked finished, is refused in one line and nothing is changed."""
    def edit(tensors, meta):
        assert meta[key] != value
        meta[key] = value

    _rewrite(interrupted_run / CHECKPOINT_FILE, edit)
    before = {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()}
    with pytest.raises(RunError, match="fails its checksum") as caught:
        resume_run(interrupted_run, progress=False, figures=False)
    assert "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in interrupted_run.iterdir() if p.is_file()} == before
