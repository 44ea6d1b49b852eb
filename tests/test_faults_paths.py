"""Unwritable or full destinations and mistyped output paths are one ``error:`` line, never a
traceback, and are named before the expensive work; ``--force`` replaces only a vaelab run or
group (and the old group's models with it); a killed writer's temporary files go on the next
write.

Read-only folders are read-only bind mounts (root writes through a chmod) and the full disk
a small tmpfs: both need the right to mount, and those tests are skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vaelab.cli.main import main

TINY = ["--steps", "5", "--log-every", "5", "--frame-every", "0", "--compile", "off",
        "--no-figures", "--no-report", "--quiet", "--device", "cpu"]


def _one_error(capsys) -> str:  # noqa: ANN001
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "error:" in lines[0] and "Traceback" not in lines[0]
    return lines[0]


def _mount(*args: str) -> bool:
    if shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def readonly_run(tiny_run_dir, tmp_path):
    """A copy of the tiny run in a folder mounted read-only (a bind mount)."""
    folder = tmp_path / "ro"
    shutil.copytree(tiny_run_dir, folder / "run")
    if not (_mount("--bind", str(folder), str(folder))):
        pytest.skip("cannot bind-mount a folder here (needs root): no read-only folder")
    try:
        if not _mount("-o", "remount,bind,ro", str(folder)):
            pytest.skip("cannot remount a bind mount read-only here")
        try:
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("the read-only mount is still writable")
        yield folder / "run"
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.parametrize("args", [
    ["plot", "{run}"],
    ["convergence", "{run}", "--points", "10", "--ks", "1,10", "--repeats", "1"],
    ["sample", "{run}", "-n", "10", "-o", "{run}/x.csv"],
    ["train", "--resume", "{run}", "--quiet"],
])
def test_read_only_run_is_one_line(args, readonly_run, capsys):
    capsys.readouterr()
    assert main([a.format(run=readonly_run) for a in args]) != 0
    line = _one_error(capsys)
    assert "Read-only" in line


def test_evaluate_in_a_read_only_run_reports_and_notes(readonly_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(readonly_run), "--n", "200", "--k", "5",
                 "--no-metrics"]) == 0
    captured = capsys.readouterr()
    assert "nll" in captured.out.lower()
    assert "Traceback" not in captured.err
    assert all(line.startswith("note:") for line in captured.err.splitlines() if line)


@pytest.mark.parametrize(("args", "expect"), [
    (["logp", "{run}", "--input", "{pts}", "-o", "{dir}"], "is a directory"),
    (["evaluate", "{run}", "--json", "{dir}", "--n", "50", "--k", "2"], "is a directory"),
    (["convergence", "{run}", "-o", "{dir}"], "is a directory"),
    (["compare", "{run}", "-o", "{dir}/x.xyz"], "extension '.xyz'"),
    (["compare", "{run}", "-o", "{dir}/x"], "no extension"),
    (["plot", "{run}", "--out", "{pts}"], "not a directory"),
    (["sample", "{run}", "-o", "{dir}/p.txt"], "extension '.txt'"),
    (["sample", "{run}", "-o", "{pts}/p.csv"], "not a directory"),
])
def test_mistyped_output_paths_are_one_line(args, expect, tiny_run_dir, tmp_path, capsys):
    pts = tmp_path / "points.csv"
    pts.write_text("x0,x1\n0.1,0.2\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    filled = [a.format(run=tiny_run_dir, pts=pts, dir=out_dir) for a in args]
    assert main(filled) == 2
    assert expect in _one_error(capsys)
    assert list(out_dir.iterdir()) == []


def test_full_disk_during_training_keeps_the_last_checkpoint(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    # room for one checkpoint of the seed's model (~640 kB) but not for its successor
    if not _mount("-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root): no full disk to test")
    try:
        out = disk / "run"
        code = main(["train", "--preset", "seed", "--steps", "3000", "--checkpoint-every",
                     "500", "--log-every", "100", "--out", str(out), *TINY[4:]])
        assert code == 2
        line = _one_error(capsys)
        assert "No space left" in line and "checkpoint.safetensors" in line
        assert "is kept" in line
        from vaelab.training.checkpoint import CHECKPOINT_FILE, read_checkpoint
        from vaelab.training.loop import METRIC_FIELDS

        ckpt = read_checkpoint(out / CHECKPOINT_FILE, METRIC_FIELDS)  # whole and verified
        assert ckpt.loop.step == 500
        assert not [p for p in out.iterdir() if ".tmp" in p.name]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_force_refuses_a_directory_that_holds_no_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"unrelated": true}\n')
    (out / "metrics.csv").write_text("a,b\n1,2\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--out", str(out), "--force", *TINY]) == 2
    assert "--force" in _one_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["train", "--seeds", "2", "--out", str(out), "--force", *TINY]) == 2
    assert "--force" in _one_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_force_over_a_group_removes_its_old_models(tmp_path, capsys):
    out = tmp_path / "group"
    assert main(["train", "--seeds", "3", "--out", str(out), *TINY]) == 0
    assert (out / "seed-2").is_dir()
    assert main(["train", "--seeds", "2", "--out", str(out), "--force", *TINY]) == 0
    names = json.loads((out / "group.json").read_text())["models"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    assert not (out / "seed-2").exists()


def test_force_replaces_a_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert main(["train", "--out", str(out), "--force", *TINY]) == 0


def test_a_killed_writers_temporary_files_go_on_the_next_write(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--steps", "5", "--checkpoint-every", "0", "--out", str(out),
                 *TINY[2:]]) == 0
    (out / "model.safetensors").unlink()  # as if killed after its last checkpoint
    (out / "summary.json").unlink()
    stale = [out / ".checkpoint.safetensors.k1ll3d.tmp.safetensors",
             out / ".metrics.csv.k1ll3d.tmp.csv"]
    for path in stale:
        path.write_bytes(b"half")
    assert main(["train", "--resume", str(out), "--quiet", "--no-figures",
                 "--no-report"]) == 0
    assert not any(p.exists() for p in stale)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_atomic_write_names_the_file_not_its_temporary(tmp_path):
    from vaelab.errors import WriteError
    from vaelab.fileio import atomic_write_text

    target = tmp_path / "a" / "b.txt"
    (tmp_path / "a").write_text("a file where a folder should be")
    with pytest.raises(WriteError, match="b.txt") as info:
        atomic_write_text(target, "x")
    assert isinstance(info.value, OSError)
    assert os.listdir(tmp_path) == ["a"]
    assert Path(tmp_path / "a").read_text().startswith("a file")
