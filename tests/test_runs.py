"""Run directories: reproducible training, save/load, and refusal of broken runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from runfiles import resign

import vaelab
from vaelab.errors import RunError
from vaelab.runs import MODEL_FILE, load_run, write_points


def test_reloaded_run_gives_identical_samples(tiny_run_dir, tiny_config):
    run = vaelab.load(tiny_run_dir)
    again = vaelab.load(tiny_run_dir)
    a = run.sample(500, seed=3)
    assert a.shape == (500, 2)
    assert torch.equal(a, again.sample(500, seed=3))
    assert not torch.equal(a, run.sample(500, seed=4))
    # and an in-memory retraining with the same seed gives the very same model
    fresh = vaelab.train(tiny_config, progress=False)
    assert torch.equal(fresh.sample(500, seed=3), a)


def test_run_directory_contents(tiny_run_dir):
    names = {p.name for p in tiny_run_dir.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.csv", "frames.safetensors",
            "summary.json", "figures"} <= names
    cfg = json.loads((tiny_run_dir / "config.json").read_text())
    assert cfg["model"]["in_channels"] == 2 and cfg["train"]["steps"] == 200
    run = load_run(tiny_run_dir)
    assert [m["step"] for m in run.metrics] == [50, 100, 150, 200]
    assert [f.step for f in run.frames] == [1, 100, 200]
    assert all(np.isfinite(m["loss"]) for m in run.metrics)


def test_seeds_change_the_model(tiny_config):
    a = vaelab.train(tiny_config, progress=False, steps=20)
    b = vaelab.train(tiny_config, progress=False, steps=20, seed=1)
    assert not torch.equal(a.model.fc_mu.weight, b.model.fc_mu.weight)


def test_training_does_not_touch_the_global_rng(tiny_config):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    vaelab.train(tiny_config, progress=False, steps=5)
    assert torch.equal(torch.rand(3), expected)


def test_training_lowers_the_loss(tiny_run_dir):
    metrics = load_run(tiny_run_dir).metrics
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]


def _copy(run_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def test_truncated_weights_are_refused(tiny_run_dir, tmp_path):
    run = _copy(tiny_run_dir, tmp_path)
    data = (run / MODEL_FILE).read_bytes()
    (run / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="safetensors"):
        load_run(run)


def test_garbage_weights_are_refused(tiny_run_dir, tmp_path):
    run = _copy(tiny_run_dir, tmp_path)
    (run / MODEL_FILE).write_bytes(b"\x80\x04\x95not a safetensors file at all")
    with pytest.raises(RunError, match="safetensors"):
        load_run(run)


def test_weights_that_do_not_match_the_config_are_refused(tiny_run_dir, tmp_path):
    run = _copy(tiny_run_dir, tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["hidden_dims"] = [64, 64]
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="config.json was edited"):  # its checksum first
        load_run(run)
    resign(run)  # as if written so: the weights' shapes are checked against it too
    with pytest.raises(RunError, match="shape"):
        load_run(run)


@pytest.mark.parametrize("text", ["{not json", '{"train": {"steps": "x"}}', '{"extra": 1}',
                                  "[]"])
def test_bad_config_json_is_refused(tiny_run_dir, tmp_path, text):
    run = _copy(tiny_run_dir, tmp_path)
    (run / "config.json").write_text(text)
    with pytest.raises(RunError, match="config.json was edited"):
        load_run(run)
    resign(run)  # as if written so: its contents are checked too
    with pytest.raises(RunError, match="config.json: "):
        load_run(run)


def test_missing_files_are_refused(tiny_run_dir, tmp_path):
    with pytest.raises(RunError, match="not found"):
        load_run(tmp_path / "nothing")
    run = _copy(tiny_run_dir, tmp_path)
    (run / MODEL_FILE).unlink()
    with pytest.raises(RunError, match="missing"):
        load_run(run)


def test_a_non_empty_output_directory_is_refused(tiny_run_dir, tiny_config):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run_dir.iterdir()}
    with pytest.raises(RunError, match="not empty"):
        vaelab.train(tiny_config, out=tiny_run_dir, progress=False, steps=3)
    assert {p.name: p.stat().st_mtime_ns for p in tiny_run_dir.iterdir()} == before


def test_force_replaces_a_run(tiny_run_dir, tmp_path, tiny_config):
    run = _copy(tiny_run_dir, tmp_path)
    vaelab.train(tiny_config, out=run, force=True, progress=False, steps=7, figures=False)
    assert load_run(run).config.train.steps == 7


def test_write_points_csv_and_npy(tmp_path):
    pts = torch.tensor([[1.5, -2.0], [3.25, 4.0]])
    write_points(pts, tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "x0,x1"
    assert np.allclose(np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1), pts.numpy())
    write_points(pts, tmp_path / "p.npy")
    assert np.array_equal(np.load(tmp_path / "p.npy", allow_pickle=False), pts.numpy())
    with pytest.raises(RunError, match=".csv or .npy"):
        write_points(pts, tmp_path / "p.txt")


def test_loading_does_not_touch_the_global_rng(tiny_run_dir):
    torch.manual_seed(321)
    expected = torch.rand(3)
    torch.manual_seed(321)
    vaelab.load(tiny_run_dir)
    assert torch.equal(torch.rand(3), expected)
