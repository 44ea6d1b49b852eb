"""SIGINT and SIGTERM at any moment (start-up, building the compiled step, training) end the
command with one line and leave no temporary file behind; a second signal during training
still says how to resume. Real processes, each signal sent when a marker shows where the
process is (never after a guessed delay)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.signals import SignalExit, StopOnSignal

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _wait_for(stream, marker: str) -> str:  # noqa: ANN001
    seen = ""
    while marker not in seen:
        char = stream.read(1)
        if not char:
            break
        seen += char
    return seen


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _maps_mention(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/PID/maps")
@pytest.mark.parametrize(("sig", "name", "code"), [(signal.SIGINT, "interrupted", 130),
                                                   (signal.SIGTERM, "terminated", 143)])
def test_a_signal_at_start_up_is_one_line(sig, name, code, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "train", "--out",
                             str(tmp_path / "run"), "--quiet", "--device", "cpu"],
                            env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    # the marker: torch's library is mapped, so the process is loading torch (start-up)
    while proc.poll() is None and not _maps_mention(proc.pid, "libtorch"):
        time.sleep(0.01)
    assert proc.poll() is None
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    lines = _lines(err)
    assert len(lines) == 1 and name in lines[0], err
    assert "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_sigterm_while_the_step_is_built_is_one_line_and_leaves_no_temporary(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "train", "--preset", "seed", "--compile", "on",
         "--steps", "20000", "--out", str(tmp_path / "run"), "--no-figures", "--no-report",
         "--device", "cpu"],
        env=_env(VAELAB_CACHE_DIR=str(cache)), stderr=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    seen = _wait_for(proc.stderr, "compiling the training step")
    assert "compiling the training step" in seen, seen
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "terminated (SIGTERM)" in _lines(err)[-1]
    leftovers = [p for p in cache.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_sigterm_during_training_saves_and_names_the_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "train", "--preset", "seed", "--compile", "off",
         "--steps", "10000000", "--log-every", "10", "--out", str(out), "--no-figures",
         "--no-report", "--device", "cpu"],
        env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    # a metrics row shows the loop is running (its header is written before)
    metrics = out / "metrics.csv"
    while proc.poll() is None and not (metrics.is_file()
                                       and len(metrics.read_text().splitlines()) > 1):
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert f"--resume {out}" in err
    assert (out / "checkpoint.safetensors").is_file()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_with_the_resume_hint(sig):
    with StopOnSignal(enabled=True, hint="continue with: vaelab train --resume RUN") as stop:
        os.kill(os.getpid(), sig)
        assert stop.signum == sig
        with pytest.raises(SignalExit) as info:
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert info.value.signum == sig
    assert "--resume RUN" in str(info.value)
    assert "second time" in str(info.value)


def test_signal_exit_is_no_ordinary_exception():
    # a compiler failure's `except Exception` must not turn a signal into an error line
    assert not issubclass(SignalExit, Exception)
