"""Sizes are bounded before anything is allocated or written: a train, sample or evaluate
call that cannot fit in the machine's memory is refused in one line naming the setting, and
leaves no file behind; large K and n run in bounded memory where they can."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from vaelab import sizes
from vaelab.cli.main import main
from vaelab.resolve import build_config, prepare

TINY = ["--steps", "5", "--log-every", "5", "--frame-every", "0", "--compile", "off",
        "--no-figures", "--no-report", "--quiet", "--device", "cpu"]


def _one_error(capsys) -> str:  # noqa: ANN001
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "error:" in lines[0]
    return lines[0]


@pytest.mark.parametrize(("flags", "named"), [
    (["--loss", "iwae", "--iwae-k", "100000"], "--iwae-k 100000"),
    (["--hidden-dims", "100000,100000"], "--hidden-dims 100000,100000"),
    (["--batch-size", "100000000"], "--batch-size 100000000"),
    (["--n-train", "100000000000"], "--n-train 100000000000"),
])
def test_train_too_big_is_refused_before_any_file(flags, named, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *flags, "--out", str(out), *TINY]) == 2
    line = _one_error(capsys)
    assert named in line and "memory" in line and "available" in line
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--seeds", "1000"],
                                   ["--seeds", "100", "--sweep", "lr=0.1,0.2"]])
def test_too_many_models_are_refused(flags, tmp_path, capsys):
    out = tmp_path / "group"
    assert main(["train", *flags, "--out", str(out), *TINY]) == 2
    assert str(sizes.MAX_GROUP_MODELS) in _one_error(capsys)
    assert not out.exists()


def test_check_train_names_the_costliest_setting():
    config, _ = prepare(build_config("seed", settings={"device": "cpu", "batch_size": 10**6}))
    need = sizes.train_bytes(config)
    sizes.check_train([config], available=need)  # fits exactly: accepted
    with pytest.raises(sizes.ConfigError, match="--batch-size 1000000"):
        sizes.check_train([config], available=need - 1)
    small, _ = prepare(build_config("seed", settings={"device": "cpu"}))
    one = sizes.train_bytes(small)
    with pytest.raises(sizes.ConfigError, match="8 models at once"):
        sizes.check_train([small] * 8, available=one * 4)


def test_ordinary_presets_fit_in_a_gigabyte():
    for preset in ("seed", "default"):
        config, _ = prepare(build_config(preset, settings={"device": "cpu"}))
        assert sizes.train_bytes(config) < 1e9


def test_address_space_limit_is_respected():
    code = ("import resource\n"
            "from vaelab import sizes\n"
            "mapped = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') "
            "if l.startswith('VmSize:')][0]\n"
            "resource.setrlimit(resource.RLIMIT_AS, (mapped + (1 << 30), "
            "resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
            "print(sizes.available_bytes())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert 0 < int(out.stdout) <= 1 << 30


def test_resuming_an_edited_run_too_big_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--loss", "iwae", "--iwae-k", "2", "--steps", "5",
                 "--checkpoint-every", "0", "--out", str(out), *TINY[2:]]) == 0
    (out / "model.safetensors").unlink()  # as if it had been killed after its checkpoint
    (out / "summary.json").unlink()
    cfg = json.loads((out / "config.json").read_text())
    cfg["loss"]["k"] = 100_000
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    assert "--iwae-k 100000" in _one_error(capsys)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def test_sample_too_many_is_refused(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "points.csv"
    assert main(["sample", str(tiny_run_dir), "-n", "1000000000", "-o", str(out)]) == 2
    assert "-n 1000000000" in _one_error(capsys)
    assert not out.exists()


def test_evaluate_too_many_is_refused(tiny_run_dir, tmp_path, capsys):
    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    # (the session's run may hold an earlier evaluation: it must be left as it was)
    saved = run / "evaluation.json"
    before = saved.read_bytes() if saved.exists() else None
    assert main(["evaluate", str(run), "--n", "1000000000", "--no-figures"]) == 2
    assert "--n 1000000000" in _one_error(capsys)
    assert (saved.read_bytes() if saved.exists() else None) == before


def test_sampling_decodes_in_chunks_with_the_same_draws(tiny_run_dir, monkeypatch):
    from vaelab import load
    from vaelab.models import base

    run = load(tiny_run_dir)
    gen = torch.Generator().manual_seed(3)
    whole = run.model.sample(500, generator=gen, noise=True)
    monkeypatch.setattr(base, "DECODE_MAX_VALUES", 1000)  # a few rows per chunk
    gen = torch.Generator().manual_seed(3)
    chunked = run.model.sample(500, generator=gen, noise=True)
    torch.testing.assert_close(chunked, whole)


def test_estimators_bound_a_wide_models_chunks(tiny_run_dir):
    import importlib

    from vaelab import load

    ld = importlib.import_module("vaelab.estimators.log_density")
    run = load(tiny_run_dir)
    assert ld._bounded(run.model, ld.DEFAULT_MAX_ELEMENTS) == ld.DEFAULT_MAX_ELEMENTS
    wide = torch.nn.Linear(1, 10**6)  # stands for a model a million values wide
    assert ld._bounded(wide, ld.DEFAULT_MAX_ELEMENTS) * 10**6 <= ld.MAX_VALUES
    # a K far above one chunk runs chunk by chunk
    logp = ld.log_density(run.model, torch.randn(2, 2), "iwae", k=300_000)
    assert torch.isfinite(logp).all()
