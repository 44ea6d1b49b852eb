"""The vaelab command end to end, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vaelab.cli.main import main


def vaelab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_train_sample_plot_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    res = vaelab("train", "--preset", "seed", "--out", str(run), "--steps", "300",
                 "--batch-size", "256", "--frame-every", "100", "--device", "cpu", "--seed", "7",
                 "--quiet")
    assert res.returncode == 0, res.stderr
    assert "trained 300 steps" in res.stdout
    for name in ("config.json", "model.safetensors", "metrics.csv", "frames.safetensors",
                 "figures/panels_final.png", "figures/training.gif", "figures/loss.png"):
        assert (run / name).is_file(), name

    # the rest in this process: the subprocess above covers the console entry point
    assert main(["sample", str(run), "-n", "1000", "-o", str(tmp_path / "p.csv"),
                 "--seed", "1"]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "x0,x1" and len(lines) == 1001
    csv_points = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert np.isfinite(csv_points).all()

    assert main(["sample", str(run), "-n", "1000", "-o", str(tmp_path / "p.npy"),
                 "--seed", "1"]) == 0
    npy_points = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert npy_points.shape == (1000, 2)
    assert np.allclose(npy_points, csv_points, rtol=1e-6, atol=1e-6)  # same seed, same points

    capsys.readouterr()
    assert main(["sample", str(run), "-n", "4"]) == 0  # CSV to stdout
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "x0,x1" and len(out) == 5

    (run / "figures" / "loss.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "figures" / "loss.png").is_file()


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["plot"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: vaelab" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--preset", "sead"], "unknown preset 'sead'"),
        (["train", "--lr", "0"], "--lr: '0' must be a positive number"),
        (["train", "--lr", "abc"], "--lr: 'abc' is not a valid float"),
        (["train", "--steps", "-5"], "--steps: '-5' must be a positive integer"),
        (["train", "--batch-size", "1.5"], "--batch-size: '1.5' is not a valid int"),
        (["train", "--latent-dim", "0"], "--latent-dim: '0' must be a positive integer"),
        (["train", "--latent-dim", "-3"], "--latent-dim: '-3' must be a positive integer"),
        (["train", "--lr", "nan"], "--lr: 'nan' is not a finite number"),
        (["train", "--lr=-inf"], "--lr: '-inf' is not a finite number"),
        (["train", "--batch-size", "0"], "--batch-size: '0' must be a positive integer"),
        (["train", "--steps", "ten"], "--steps: 'ten' is not a valid int"),
        (["train", "--iwae-k", "0"], "--iwae-k: '0' must be a positive integer"),
        (["train", "--time-limit", "-1"], "--time-limit: '-1' must be a positive number"),
        (["train", "--checkpoint-every", "-2"], "--checkpoint-every: '-2' must be >= 0"),
        (["train", "--seeds", "0"], "--seeds: '0' must be a positive integer"),
        (["train", "--set", "optim.lr=NaN"], "optim.lr must be a finite number"),
        (["train", "--set", "loss.k=0", "--loss", "iwae"], "loss.k = 0 must be >= 1"),
        (["train", "--preset", "defualt"], "did you mean: default"),
        (["train", "--data", "moon"], "did you mean: moons"),
        (["train", "--hidden-dims", "128,x"], "comma-separated list of integers"),
        (["train", "--data", "swissroll"], "did you mean: swiss_roll"),
        (["train", "--device", "tpu"], "train.device"),
        (["train", "--set", "optim.gama=1"], "unknown key optim.gama"),
        (["train", "--config", "missing.toml"], "config file not found"),
        (["sample", "no-such-run"], "run directory not found"),
        (["sample", "no-such-run", "-n", "0"], "-n: '0' must be a positive integer"),
        (["plot", "no-such-run"], "run directory not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_error_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        code = main(args)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "error:" in err and message in err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that cannot start


def test_errors_through_a_real_process_have_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 'many'\n")
    res = vaelab("train", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert res.stderr.strip() == "vaelab train: error: train.steps must be an integer, got 'many'"
    assert not (tmp_path / "r").exists()
