"""The HTML report (vaelab.report): self-contained, true to the run, saved atomically; the
``vaelab report`` command and its one-line errors; ``train`` writing report.html."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.describe import settings_changed
from vaelab.errors import RunError
from vaelab.report import Report, build_report
from vaelab.results import EVALUATION_FILE, RESULT_FILES, record_digest
from vaelab.runs import load_run

MB = 1_000_000
# an attribute that would make the browser fetch something: src=, href=, or CSS url()
EXTERNAL = re.compile(r"""(?:\b(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//)"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|<link\b|<script[^>]*\bsrc=""",
                      re.IGNORECASE)


def _self_contained(html: str) -> None:
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    assert html.count('id="vaelab-plotly"') == 1  # plotly.js inlined once


@pytest.fixture
def run_copy(tiny_run_dir, tmp_path):
    """A copy of the session's tiny run that a test may add results to, without the results
    other tests' ``evaluate`` and ``convergence`` may have left in the session's run."""
    return shutil.copytree(tiny_run_dir, tmp_path / "run",
                           ignore=shutil.ignore_patterns(*RESULT_FILES))


def test_an_unevaluated_run_shows_what_it_has_and_names_the_commands(run_copy):
    report = load_run(run_copy).report()
    _self_contained(report.html)
    assert report.size < 5 * MB
    assert f"vaelab evaluate {run_copy}" in report.html
    assert f"vaelab convergence {run_copy}" in report.html
    assert "three panels over training" in report.html
    assert "Training curves" in report.html
    assert "Every setting is that of the seed preset" not in report.html  # steps differ
    assert "<code>train.steps</code>" in report.html


def test_an_evaluated_run_shows_its_numbers(evaluated_run):
    html = build_report([load_run(evaluated_run)]).html
    _self_contained(html)
    ev = json.loads((evaluated_run / "eval.json").read_text())
    for key in ("nll", "elbo", "entropy", "nll_gap"):
        text = f"{ev[key]:.4f} ± {ev[f'{key}_stderr']:.4f}"
        assert f'data-key="{key}" data-value="{ev[key]!r}"' in html and text in html
    c2st = ev["sample_metrics"]["c2st_accuracy"]
    assert f'data-key="c2st_accuracy.value" data-value="{c2st["value"]!r}"' in html
    assert f'data-key="c2st_accuracy.floor" data-value="{c2st["floor"]!r}"' in html
    assert "indistinguishable from real data at this n" in html  # how to read them
    assert "not measured" not in html
    assert "IWAE, K = 256" in html  # the density map says its K


def test_a_result_of_other_weights_is_not_shown(evaluated_run, tmp_path):
    run = shutil.copytree(evaluated_run, tmp_path / "run")
    record = json.loads((run / EVALUATION_FILE).read_text())
    record["model_sha256"] = "0" * 64  # as after training the run again
    record["sha256"] = record_digest(record)  # a stale record is an intact one
    (run / EVALUATION_FILE).write_text(json.dumps(record))
    html = build_report([load_run(run)]).html
    assert "measured an earlier model in this directory" in html
    assert f'data-value="{record["nll"]!r}"' not in html


def test_report_object_displays_in_a_notebook_and_saves(run_copy, tmp_path):
    report = load_run(run_copy).report()
    assert isinstance(report, Report) and isinstance(report, vaelab.Report)
    shown = report._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in shown
    path = report.save(tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8") == report.html
    assert not list(path.parent.glob(".*tmp*"))  # atomic: no temporary file left
    with pytest.raises(RunError, match="is a directory"):
        report.save(tmp_path)


def test_a_run_in_memory_has_a_report_too():
    run = vaelab.train(preset="seed", steps=60, batch_size=64, log_every=20, frame_every=30,
                       display_points=50, device="cpu", progress=False)
    html = run.report().html
    _self_contained(html)
    assert "Save the run" in html


def test_the_public_api_reports_several_runs_and_a_group(tiny_run_dir, tmp_path):
    runs = vaelab.train_many(seeds=2, preset="seed", steps=60, batch_size=64, log_every=20,
                             frame_every=30, display_points=50, device="cpu", progress=False,
                             out=tmp_path / "g", figures=False)
    group = vaelab.build_report(tmp_path / "g")
    assert group.title == "vaelab group g (2 models)"
    assert group.html.count("<tr>") == 1 + 2 and 'class="sortable"' in group.html
    both = vaelab.build_report(runs[0], tiny_run_dir)
    assert "vaelab comparison of 2 runs" in both.html
    _self_contained(both.html)


def test_settings_changed_names_what_differs_from_the_preset(tiny_run_dir):
    changed = {path: (before, after)
               for path, before, after in settings_changed(load_run(tiny_run_dir).config)}
    assert changed["train.steps"] == (10_000, 200)
    assert "model.in_channels" not in changed and "data.noise" not in changed


def test_what_the_data_decides_is_no_change_unless_the_user_said_otherwise(tmp_path):
    from vaelab.resolve import build_config, resolve_config

    assert settings_changed(resolve_config(build_config("default"))) == []
    six = tmp_path / "six.csv"
    six.write_text("a,b,c,d,e,f\n" + "\n".join(
        ",".join(str((i * 7 + j * 3) % 11 + 0.5 * j) for j in range(6)) for i in range(60)))
    on_file = resolve_config(build_config("default", settings={"data": str(six)}))
    assert [p for p, _, _ in settings_changed(on_file)] == ["data.name"]
    said = resolve_config(build_config("default", settings={
        "data": str(six), "latent_dim": 6, "decorrelate": False, "decoder_std_mode": "latent"}))
    assert {p: after for p, _, after in settings_changed(said)} == {
        "data.name": str(six.resolve()), "data.decorrelate": False, "model.latent_dim": 6,
        "loss.decoder_std_mode": "latent"}


# -- the command line ------------------------------------------------------------------------

def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_report_command_writes_the_run_report(run_copy, capsys):
    assert main(["report", str(run_copy)]) == 0
    assert (run_copy / "report.html").is_file()
    assert f"wrote {run_copy / 'report.html'}" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "file", "several", "output_dir", "group_file"])
def test_report_command_errors_are_one_line(case, run_copy, tmp_path, capsys):
    args = {"missing": [str(tmp_path / "nope")],
            "file": [str(run_copy / "config.json")],
            "several": [str(run_copy), str(run_copy)],
            "output_dir": [str(run_copy), "-o", str(tmp_path)],
            "group_file": [str(tmp_path / "g")]}[case]
    if case == "group_file":
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "group.json").write_text("{not json")
    assert main(["report", *args]) == 2
    line = _error_line(capsys)
    assert line.startswith("vaelab report: error: ")
    expected = {"missing": "run directory not found", "file": "run directory not found",
                "several": "name its file with -o FILE", "output_dir": "is a directory",
                "group_file": "not readable JSON"}[case]
    assert expected in line


def test_train_writes_a_report_unless_told_not_to(tmp_path, capsys):
    common = ["--preset", "seed", "--steps", "40", "--batch-size", "64", "--log-every", "20",
              "--frame-every", "20", "--set", "display.points=50", "--device", "cpu",
              "--quiet", "--no-figures"]
    assert main(["train", *common, "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "report.html").is_file()
    assert "report: " in capsys.readouterr().out
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / "report.html").exists()
    assert main(["train", *common, "--out", str(tmp_path / "g"), "--seeds", "2"]) == 0
    html = (tmp_path / "g" / "report.html").read_text(encoding="utf-8")
    assert "vaelab group g (2 models)" in html and ">seed-1<" in html
    assert not (tmp_path / "g" / "seed-0" / "report.html").exists()


def test_training_again_with_force_drops_the_old_results(evaluated_run, tmp_path):
    run = shutil.copytree(evaluated_run, tmp_path / "run")
    assert main(["train", "--preset", "seed", "--steps", "40", "--batch-size", "64",
                 "--device", "cpu", "--quiet", "--no-figures", "--no-report", "--force",
                 "--out", str(run)]) == 0
    assert not (run / EVALUATION_FILE).exists()


# -- one meaning for sample --------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["seed", "default"])
def test_model_and_run_sample_share_their_default(preset):
    run = vaelab.train(preset=preset, steps=30, batch_size=64, log_every=10, frame_every=0,
                       display_points=20, device="cpu", progress=False)
    a = run.sample(200, seed=3)
    b = run.model.sample(200, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    means = run.sample(200, seed=3, noise=False)
    assert torch.equal(a, means) == (preset == "seed")  # the seed's loss: decoder means
    assert not torch.equal(run.sample(200, seed=3, noise=True), means)


def test_sample_command_decoder_noise(tiny_run_dir, tmp_path):
    outs = {}
    for mode in ("auto", "off", "on"):
        out = tmp_path / f"{mode}.npy"
        assert main(["sample", str(tiny_run_dir), "-n", "50", "--decoder-noise", mode,
                     "-o", str(out)]) == 0
        outs[mode] = out.read_bytes()
    assert outs["auto"] == outs["off"] != outs["on"]  # seed preset: means by default


def test_train_writes_its_figures_and_report_without_importing_sklearn_or_scipy(tmp_path):
    """A run's report and figures name the sample metrics but compute none of them, so
    `vaelab train` leaves scikit-learn and SciPy's distance module unimported (seconds of
    every command's start); the metrics import them when they run."""
    code = ("import sys\n"
            "from vaelab.cli.main import main\n"
            f"assert main(['train', '--preset', 'seed', '--steps', '60', '--log-every', '20',"
            f" '--frame-every', '30', '--quiet', '--out', {str(tmp_path / 'run')!r}]) == 0\n"
            "print(sorted(m for m in ('sklearn', 'scipy.spatial') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    assert (tmp_path / "run" / "report.html").is_file()
    assert any((tmp_path / "run" / "figures").glob("*.png"))
