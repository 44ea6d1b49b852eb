"""One writer per run directory (vaelab.locks): a second train, --force or --resume while a
real vaelab process writes the directory is refused with one line naming the holder's PID, and
the lock goes with the process, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from vaelab.cli.main import main
from vaelab.locks import LOCK_FILE, run_lock

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LONG = ["--preset", "seed", "--steps", "10000000", "--checkpoint-every", "50", "--log-every",
        "50", "--frame-every", "0", "--device", "cpu", "--quiet", "--no-figures", "--no-report",
        "--compile", "off"]


def _wait_for(path, proc, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_second_writer_is_refused_while_a_run_trains(tmp_path, capsys):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "train", *LONG, "--out", str(run)],
                            env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_for(run / "checkpoint.safetensors", proc)
        config = (run / "config.json").read_text()
        for args in (["train", *LONG, "--out", str(run), "--force", "--seed", "4"],
                     ["train", "--resume", str(run), "--quiet"]):
            assert main(args) != 0
            line = _one_error_line(capsys)
            assert f"PID {proc.pid}" in line and "being written" in line
        assert (run / "config.json").read_text() == config  # nothing of it touched
        assert proc.poll() is None  # and the writer went on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    # SIGKILL released the lock with the process: free again, with no one unlocking it
    assert (run / LOCK_FILE).is_file()
    with run_lock(run):
        pass


def test_a_directory_holding_only_the_lock_is_empty(tmp_path, tiny_config):
    import vaelab

    out = tmp_path / "run"
    with run_lock(out):
        pass
    assert os.listdir(out) == [LOCK_FILE]
    run = vaelab.train(tiny_config, out=out, progress=False, figures=False)
    assert run.summary["steps"] == tiny_config.train.steps


def test_the_lock_names_its_holder_within_one_process_too(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out):
        assert main(["train", "--preset", "seed", "--steps", "5", "--out", str(out),
                     "--quiet", "--no-figures", "--no-report", "--device", "cpu"]) != 0
        line = _one_error_line(capsys)
        assert f"PID {os.getpid()}" in line
    assert not (out / "config.json").exists()
