"""Every file of a run is checked before it is used: an edited, corrupted or malformed file
is refused in one line naming it, with a non-zero exit, and nothing saved is touched."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest
import torch
from runfiles import edit_frames, flip, resign, rewrite

from vaelab.cli.main import main
from vaelab.errors import RunError
from vaelab.fileio import tensors_digest
from vaelab.runs import (
    CONFIG_FILE,
    COVERED_FILES,
    FRAMES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    OLD_MODEL_FORMAT,
    SUMMARY_FILE,
    load_run,
)


@pytest.fixture
def run(tiny_run_dir, tmp_path):
    """A copy of the session's tiny run, for a test to damage."""
    return shutil.copytree(tiny_run_dir, tmp_path / "run")


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def refused(run, capsys, pattern, command=("plot",)):
    """``vaelab COMMAND RUN`` exits 2 with one line matching ``pattern``; nothing changed."""
    before = snapshot(run)
    capsys.readouterr()
    assert main([*command, str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err
    assert re.search(pattern, err), err
    assert snapshot(run) == before
    return err


def test_the_model_file_records_every_other_file(run):
    from safetensors import safe_open

    with safe_open(str(run / MODEL_FILE), "pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "vaelab-model-2"
    for name, key in COVERED_FILES.items():
        assert meta[key] == hashlib.sha256((run / name).read_bytes()).hexdigest(), name
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no temporary file left


def test_an_edited_config_is_refused(run, capsys):
    cfg = json.loads((run / CONFIG_FILE).read_text())
    cfg["optim"]["lr"] = 0.5  # still a valid config: only the checksum tells
    (run / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    refused(run, capsys, r"config\.json was edited", ("sample", "-n", "3"))


@pytest.mark.parametrize("name", [METRICS_FILE, SUMMARY_FILE])
def test_an_edited_metrics_or_summary_file_is_refused(run, capsys, name):
    (run / name).write_text((run / name).read_text().replace("0", "1", 1))
    refused(run, capsys, rf"{name.replace('.', '[.]')} was edited")


def test_edited_model_metadata_is_refused(run, capsys):
    rewrite(run / MODEL_FILE, lambda t, m: m.update(vaelab_version="9.9"), sign=False)
    refused(run, capsys, "model.safetensors fails its checksum", ("sample", "-n", "3"))


def test_a_model_file_of_an_unknown_format_is_refused(run, capsys):
    rewrite(run / MODEL_FILE, lambda t, m: m.update(format="something-else"))
    refused(run, capsys, "not a vaelab model file")


def test_a_run_of_the_previous_format_still_loads(run):
    """vaelab-model-1 runs: their weights' checksum (tensors only) is still checked."""
    def downgrade(tensors, meta):
        for key in [*COVERED_FILES.values()]:
            del meta[key]
        meta["format"] = OLD_MODEL_FORMAT
        meta["sha256"] = tensors_digest(tensors)

    rewrite(run / MODEL_FILE, downgrade, sign=False)
    loaded = load_run(run)
    assert len(loaded.metrics) == 4 and len(loaded.frames) == 3
    flip(run / MODEL_FILE)
    with pytest.raises(RunError, match="fails its checksum"):
        load_run(run)


def test_frames_of_the_previous_format_still_load(run):
    """vaelab-frames-1 (no checksum of its own): its tensors are still checked."""
    def downgrade(tensors, meta):
        meta["format"] = "vaelab-frames-1"
        del meta["sha256"]

    rewrite(run / FRAMES_FILE, downgrade, sign=False)
    resign(run)
    assert [f.step for f in load_run(run).frames] == [1, 100, 200]


def test_a_flipped_byte_in_the_frames_is_refused(run, capsys):
    flip(run / FRAMES_FILE)
    refused(run, capsys, "frames.safetensors (fails its checksum|was edited)")
    resign(run)  # even where the model file was signed again, the frames' own checksum
    refused(run, capsys, "frames.safetensors fails its checksum")


def _first(tensors, panel):
    return next(name for name in sorted(tensors) if name.endswith("/" + panel))


@pytest.mark.parametrize("damage, pattern", [
    (lambda t: t[_first(t, "data")].view(-1)[0:1].fill_(float("nan")), "holds NaN or inf"),
    (lambda t: t.__setitem__(_first(t, "generated"),
                             t[_first(t, "generated")].to(torch.int64)), "floating-point"),
    (lambda t: t.__setitem__(_first(t, "data"), t[_first(t, "data")].reshape(-1)), "2-D"),
    (lambda t: t.__setitem__(_first(t, "data"), t[_first(t, "data")][:, :1].contiguous()),
     r"has \d columns, expected \d"),
    (lambda t: t.__setitem__(_first(t, "posterior_z"),
                             torch.zeros(5, 3)), r"has \d columns, expected \d"),
    (lambda t: t.pop(_first(t, "generated")), "incomplete"),
])
def test_malformed_frames_are_refused_even_when_signed(run, capsys, damage, pattern):
    edit_frames(run, lambda tensors, meta: damage(tensors))
    refused(run, capsys, pattern)


@pytest.mark.parametrize("edit, pattern", [
    (lambda lines: [lines[0].replace(",kld", ""), *lines[1:]], "column 'kld' is missing"),
    (lambda lines: [lines[0], lines[1] + ",7", *lines[2:]], "line 2 does not have"),
    (lambda lines: [lines[0], lines[1].rsplit(",", 1)[0], *lines[2:]], "line 2 does not have"),
    (lambda lines: [lines[0], lines[1].replace(lines[1].split(",")[2], "nan", 1), *lines[2:]],
     "line 2 holds a value that is not a finite number"),
    (lambda lines: [lines[0], "a,b,c,d,e,f,g", *lines[2:]], "not a vaelab metrics file"),
])
def test_malformed_metrics_are_refused_even_when_signed(run, capsys, edit, pattern):
    lines = (run / METRICS_FILE).read_text().splitlines()
    (run / METRICS_FILE).write_text("\n".join(edit(lines)) + "\n")
    resign(run)
    refused(run, capsys, pattern)


def test_a_missing_covered_file_is_refused(run, capsys):
    (run / FRAMES_FILE).unlink()
    refused(run, capsys, "not a complete vaelab run: .*frames.safetensors is missing")


def test_the_model_file_is_written_last(tiny_config, tmp_path, monkeypatch):
    """A reader that finds model.safetensors finds the files it records complete."""
    import vaelab
    from vaelab import runs

    order = []
    real = runs.atomic_write_bytes

    def record(path, data):
        order.append(path.name)
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", record)
    vaelab.train(tiny_config, out=tmp_path / "r", progress=False, steps=3, figures=False)
    assert order[-1] == MODEL_FILE and set(COVERED_FILES) <= set(order)
    load_run(tmp_path / "r")


# -- the smaller ones: data without spread, and command lines that lost a setting ---------------

def one_error_line(args, capsys, message):
    """``vaelab ARGS`` ends in one ``error:`` line holding ``message``, exit status 2."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err
    assert message in err, err
    return err


def _csv(path, columns):
    import numpy as np

    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(size=300) if c is None else c for c in columns])
    np.savetxt(path, table, delimiter=",", header="a,b", comments="", fmt="%.17g")
    return path


@pytest.mark.parametrize("column, message", [
    (lambda rng: 1.0 + 0 * rng.normal(size=300), "column 2 ('b') holds the same value, 1,"),
    (lambda rng: 5.0 + 1e-12 * rng.normal(size=300), "column 2 ('b') holds the same value, 5,"),
    (lambda rng: 1e6 + 0.1 * rng.normal(size=300), "column 2 ('b') varies by only"),
])
def test_data_without_spread_is_refused_before_training(tmp_path, capsys, column, message):
    import numpy as np

    data = _csv(tmp_path / "d.csv", [None, column(np.random.default_rng(1))])
    out = tmp_path / "r"
    err = one_error_line(["train", "--data", str(data), "--out", str(out), "--steps", "3",
                          "--quiet", "--device", "cpu"], capsys, message)
    assert "a column without spread has no density" in err
    assert not out.exists()  # refused before anything was written


def test_data_of_a_small_scale_is_not_data_without_spread(tmp_path):
    """A column in tiny units still has a density (standardisation rescales it)."""
    import numpy as np

    from vaelab.data.files import FileSource

    rng = np.random.default_rng(2)
    data = _csv(tmp_path / "d.csv", [None, 1e-12 * rng.normal(size=300)])
    assert FileSource(data).dim == 2


@pytest.mark.parametrize("args, message", [
    (["--hidden-dims", "128,,128"], "'128,,128' has an empty item"),
    (["--hidden-dims", "128,"], "has an empty item"),
    (["--set", "train.steps=1e2"], "train.steps must be an integer, got 100.0"),
    (["--set", "train.batch_size=64.0"], "train.batch_size must be an integer, got 64.0"),
    (["--steps", "10", "--set", "train.steps=20"],
     "--steps and --set train.steps both set train.steps; drop one"),
    (["--set", "train.steps=20", "--steps", "10"],  # whatever the order
     "--steps and --set train.steps both set train.steps; drop one"),
    (["--set", "steps=10", "--set", "train.steps=20"],
     "--set steps and --set train.steps both set train.steps; drop one"),
    (["--lr", "0.1", "--set", "lr=0.2"], "--lr and --set lr both set optim.lr"),
    (["--sweep", "seed=1.0,2"], "train.seed must be an integer, got 1.0"),
])
def test_a_setting_is_never_silently_lost(tmp_path, capsys, args, message):
    out = tmp_path / "r"
    one_error_line(["train", "--preset", "seed", "--out", str(out), "--device", "cpu",
                    "--quiet", "--no-figures", *args], capsys, message)
    assert not out.exists()


def test_a_sweep_of_seeds_still_takes_integers(capsys):
    assert main(["train", "--preset", "seed", "--sweep", "seed=1,2", "--dry-run"]) == 0
    assert '"seed": 2' in capsys.readouterr().out


@pytest.mark.parametrize("file_preset, flag, message", [
    ("nope", [], "unknown preset 'nope'"),
    ("nope", ["--preset", "seed"], "unknown preset 'nope'"),
    ("default", ["--preset", "seed"], "preset 'seed' is given, but"),
])
def test_a_config_file_preset_is_checked(tmp_path, capsys, file_preset, flag, message):
    config = tmp_path / "c.toml"
    config.write_text(f'preset = "{file_preset}"\n[train]\nsteps = 5\n')
    one_error_line(["train", "--config", str(config), *flag, "--out", str(tmp_path / "r"),
                    "--device", "cpu", "--quiet"], capsys, message)
    assert not (tmp_path / "r").exists()


def test_a_config_file_preset_that_agrees_is_taken(tmp_path):
    from vaelab.resolve import build_config

    config = tmp_path / "c.toml"
    config.write_text('preset = "seed"\n[train]\nsteps = 5\n')
    assert build_config("seed", config).preset == "seed"
    assert build_config(None, config).preset == "seed"


def test_evaluate_names_the_option_that_gave_too_few_points(tiny_run_dir, capsys):
    one_error_line(["evaluate", str(tiny_run_dir), "--n", "1", "--k", "5", "--no-figures"],
                   capsys, "--n 1: too few test points for the sample metrics, which need at "
                   "least 5: give --n 5 or more, or pass --no-metrics")


@pytest.fixture(scope="module")
def file_run(tmp_path_factory):
    """A few steps on a 300-row CSV file (60 held out), without figures."""
    root = tmp_path_factory.mktemp("file_run")
    data = _csv(root / "d.csv", [None, None])
    run = root / "r"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "5", "--quiet",
                 "--device", "cpu", "--no-figures", "--no-report", "--log-every", "5",
                 "--frame-every", "5"]) == 0
    return run


def test_convergence_uses_and_names_the_points_asked_for(file_run, tmp_path):
    """On a file's run: the first --points of its held-out rows, and the table says so."""
    run = shutil.copytree(file_run, tmp_path / "run")
    out = ["--json", str(tmp_path / "c.json"), "-o", str(tmp_path / "c.png")]
    assert main(["convergence", str(run), "--points", "10", "--ks", "1,2", "--repeats", "2",
                 *out]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["n_points"] == 10
    assert result["test_set"].startswith("the first 10 of the 60 held-out points")
    assert main(["convergence", str(run), "--points", "100", "--ks", "1", "--repeats", "2",
                 *out]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["n_points"] == 60 and "fewer than the 100 points" in result["test_set"]


def test_a_file_runs_data_record_is_covered(file_run, tmp_path, capsys):
    from vaelab.data.provenance import DATA_FILE

    run = shutil.copytree(file_run, tmp_path / "run")
    record = json.loads((run / DATA_FILE).read_text())
    record["rows"] += 1
    (run / DATA_FILE).write_text(json.dumps(record, indent=1) + "\n")
    refused(run, capsys, r"data\.json was edited", ("sample", "-n", "3"))


def test_a_data_record_copied_into_a_run_without_one_is_refused(file_run, run, capsys):
    from vaelab.data.provenance import DATA_FILE

    shutil.copy(file_run / DATA_FILE, run / DATA_FILE)
    refused(run, capsys, r"data\.json was not part of the run", ("sample", "-n", "3"))


def test_evaluate_refuses_data_without_spread_in_the_same_words(tmp_path, capsys):
    """A run's data file that lost its spread since: the same line as train's, no 'moved'."""
    data = _csv(tmp_path / "d.csv", [None, None])
    run = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "3", "--quiet",
                 "--device", "cpu", "--no-figures", "--no-report"]) == 0
    _csv(data, [None, [2.0] * 300])
    err = refused(run, capsys, "column 2 \\('b'\\) holds the same value, 2,",
                  ("evaluate", "--k", "5", "--no-figures"))
    assert "moved" not in err


# -- what evaluate and convergence leave in a run: an edited one is not shown as measured -------

@pytest.mark.parametrize("name", ["evaluation.json", "convergence.json"])
def test_an_edited_result_is_not_shown(evaluated_run, tmp_path, name):
    from vaelab.report import build_report
    from vaelab.results import DAMAGED, load_result

    run = shutil.copytree(evaluated_run, tmp_path / "run")
    assert load_result(run / name) not in (None, DAMAGED)
    record = json.loads((run / name).read_text())
    record["n_points" if "n_points" in record else "nll"] = 12345.0  # an edited number
    (run / name).write_text(json.dumps(record, indent=2) + "\n")
    assert load_result(run / name) is DAMAGED
    html = build_report([load_run(run)]).html
    assert "edited or corrupted after it was written" in html and "12345" not in html


def test_a_flipped_bit_in_the_density_grid_is_not_shown(evaluated_run, tmp_path):
    from vaelab.report import build_report
    from vaelab.results import DAMAGED, DENSITY_FILE, load_density

    run = shutil.copytree(evaluated_run, tmp_path / "run")
    assert load_density(run / DENSITY_FILE) not in (None, DAMAGED)
    flip(run / DENSITY_FILE)
    assert load_density(run / DENSITY_FILE) is DAMAGED
    assert "edited or corrupted after it was written" in build_report([load_run(run)]).html
