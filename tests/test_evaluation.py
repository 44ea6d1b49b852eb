"""The evaluator end to end: logp, evaluate, convergence, the density figure."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.data import SwissRoll2D
from vaelab.evaluation import evaluate


def _points_csv(path, n=40, seed=5):
    pts = SwissRoll2D().sample(n, torch.Generator().manual_seed(seed)).numpy()
    np.savetxt(path, pts, delimiter=",", header="a,b", comments="")
    return pts


def _read(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


def test_logp_writes_one_value_per_row_in_order(tiny_run_dir, tmp_path):
    pts = _points_csv(tmp_path / "in.csv")
    values = {}
    for est in ("iwae", "elbo", "prior-mc"):
        out = tmp_path / f"{est}.csv"
        assert main(["logp", str(tiny_run_dir), "--input", str(tmp_path / "in.csv"), "-o",
                     str(out), "--estimator", est, "--k", "64"]) == 0
        header, table = _read(out)
        assert header == ["x0", "x1", "log_p"]
        assert table.shape == (40, 3)
        assert np.allclose(table[:, :2], pts, atol=1e-6)  # the input rows, in order
        assert np.isfinite(table[:, 2]).all()
        values[est] = table[:, 2]
    assert values["elbo"].mean() < values["iwae"].mean()  # the IWAE bound is tighter


def test_logp_refuses_bad_input_in_one_line(tiny_run_dir, tmp_path, capsys):
    (tmp_path / "three.csv").write_text("1,2,3\n4,5,6\n")
    assert main(["logp", str(tiny_run_dir), "--input", str(tmp_path / "three.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 columns" in err
    assert main(["logp", str(tiny_run_dir), "--input", str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_evaluate_reports_the_gap_and_metrics_with_floors(tiny_run_dir, tmp_path):
    out = tmp_path / "report.json"
    assert main(["evaluate", str(tiny_run_dir), "--n", "600", "--k", "64", "--json", str(out)]
                ) == 0
    report = json.loads(out.read_text())
    for key in ("nll", "elbo", "entropy", "nll_gap", "nll_minus_entropy", "sample_metrics"):
        assert key in report and report[key] is not None, key
    assert report["elbo"] <= -report["nll"] + 1e-9 + 3 * report["elbo_stderr"]
    # the gap is KL(p || model) >= 0 up to noise, and the paired and plain versions agree
    assert report["nll_gap"] > -3 * report["nll_gap_stderr"]
    assert report["nll_gap"] == pytest.approx(report["nll_minus_entropy"], abs=0.3)
    metrics = report["sample_metrics"]
    assert set(metrics) >= {"mmd2", "energy", "c2st_accuracy", "precision", "recall"}
    for name in ("mmd2", "energy", "c2st_accuracy", "precision", "recall"):
        assert {"value", "floor"} <= set(metrics[name])
    assert (tiny_run_dir / "figures" / "density.png").is_file()


def test_evaluate_uses_points_never_seen_in_training(tiny_run_dir):
    run = vaelab.load(tiny_run_dir)
    a = evaluate(run, n=200, k=8, seed=0, metrics=False)
    b = evaluate(run, n=200, k=8, seed=1, metrics=False)
    assert a["nll"] != b["nll"]  # another evaluation seed, another test set
    again = evaluate(run, n=200, k=8, seed=0, metrics=False)
    assert again["nll"] == a["nll"]  # and the same one reproduces


def test_convergence_table_and_plot(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "conv.json"
    assert main(["convergence", str(tiny_run_dir), "--points", "20", "--ks", "1,10,100",
                 "--repeats", "2", "--json", str(out), "-o", str(tmp_path / "c.png")]) == 0
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 9 and result["true_mean"] is not None
    iwae = [r for r in result["rows"] if r["estimator"] == "iwae"]
    assert iwae[-1]["mc_std"] < iwae[0]["mc_std"]  # more samples, less Monte-Carlo noise
    assert (tmp_path / "c.png").stat().st_size > 10_000
    assert "prior-mc" in capsys.readouterr().out


@pytest.mark.slow
def test_logp_agrees_with_the_true_density_as_the_gap_says(tmp_path):
    """The accept check of the evaluator: on fresh points, log p_true - log p_model averages
    to the gap that ``evaluate`` reports, within their standard errors."""
    run = vaelab.train(preset="seed", out=tmp_path / "run", progress=False, device="cpu",
                       figures=False)
    report = evaluate(run, n=10_000, k=1000, seed=0, metrics=False)
    source = SwissRoll2D(noise=0.3)
    fresh = source.sample(10_000, torch.Generator().manual_seed(12345))
    np.savetxt(tmp_path / "fresh.csv", fresh.numpy(), delimiter=",")
    assert main(["logp", str(tmp_path / "run"), "--input", str(tmp_path / "fresh.csv"), "-o",
                 str(tmp_path / "logp.csv"), "--k", "1000"]) == 0
    _, table = _read(tmp_path / "logp.csv")
    diff = source.log_prob(fresh).numpy() - table[:, 2]
    se = math.hypot(diff.std() / math.sqrt(len(diff)), report["nll_gap_stderr"])
    assert abs(diff.mean() - report["nll_gap"]) < 4 * se
    assert report["nll_gap"] > 0.05  # the seed model is measurably worse than the truth


def _train_on_file(path, out):
    # 30 steps: the two runs' data differ by float rounding, and training the seed preset
    # (lr 2e-2) carries that apart by 1e-3 to 5e-2 nats after 60 to 150 steps (measured over
    # perturbed copies of the file), against about 1e-6 after 30
    return vaelab.train(preset="seed", data=str(path), out=out, progress=False, device="cpu",
                        steps=30, batch_size=128, frame_every=0, figures=False)


def test_user_files_are_standardised_and_densities_are_in_their_units(tmp_path):
    """The same points in other units give the same model, and log p shifts by the Jacobian."""
    pts = SwissRoll2D(noise=0.5).sample(600, torch.Generator().manual_seed(1)).double().numpy()
    np.savetxt(tmp_path / "a.csv", pts, delimiter=",", header="u,v", comments="")
    np.save(tmp_path / "b.npy", pts * 10.0 + 3.0)
    run_a = _train_on_file(tmp_path / "a.csv", tmp_path / "run_a")
    run_b = _train_on_file(tmp_path / "b.npy", tmp_path / "run_b")
    assert run_a.config.data.standardize and run_b.config.data.standardize
    assert torch.allclose(run_b.model.data_scale, 10 * run_a.model.data_scale, rtol=1e-5)
    x = torch.as_tensor(pts[:50], dtype=torch.float32)
    from vaelab.estimators import log_density

    la = log_density(run_a.model, x, "iwae", k=32, seed=0)
    lb = log_density(run_b.model, x * 10 + 3, "iwae", k=32, seed=0)
    assert torch.allclose(la - lb, torch.full_like(la, 2 * math.log(10.0)), atol=2e-3)
    # evaluation uses the held-out 20% of the file, and there is no true entropy to compare
    report = evaluate(vaelab.load(tmp_path / "run_a"), k=16, metrics=True)
    assert report["n"] == 120 and report["entropy"] is None and report["nll_gap"] is None
    assert "held-out" in report["test_set"] and "sample_metrics" in report


def test_a_bad_data_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n3,nan\n")
    assert main(["train", "--data", str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def file_run(tmp_path_factory):
    """A short run on a 3-column file (a rotated roll beside a Gaussian column)."""
    root = tmp_path_factory.mktemp("filerun")
    rng = np.random.default_rng(0)
    roll = SwissRoll2D().sample(1500, torch.Generator().manual_seed(1)).numpy()
    pts = np.column_stack((roll, rng.normal(0.0, 2.0, len(roll))))
    np.savetxt(root / "three.csv", pts, delimiter=",", header="u,v,w", comments="")
    out = root / "run"
    assert main(["train", "--data", str(root / "three.csv"), "--steps", "200", "--batch-size",
                 "64", "--frame-every", "0", "--out", str(out), "--quiet", "--no-figures",
                 "--no-report", "--device", "cpu"]) == 0
    return out


def test_evaluate_on_a_file_scores_the_baselines_beside_the_model(file_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(file_run), "--k", "20", "--no-metrics", "--no-figures",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    b = report["baselines"]
    assert report["entropy"] is None and "no known density" in text
    for key, name in (("gaussian_mixture", "GaussianMixture"),
                      ("kernel_density", "KernelDensity")):
        r = b[key]
        assert math.isfinite(r["nll"]) and r["nll_stderr"] > 0
        # paired over the same held-out rows: the mean difference is the difference of means
        assert r["model_minus_baseline"] == pytest.approx(report["nll"] - r["nll"], abs=1e-9)
        assert f"{name} NLL:" in text and f"{r['nll']:.4f}" in text
    assert b["gaussian_mixture"]["params"]["components"] >= 1
    assert b["kernel_density"]["params"]["bandwidth"] > 0
    best = min(("gaussian_mixture", "kernel_density"), key=lambda k: b[k]["nll"])
    margin = b[best]["model_minus_baseline"]
    expected = ("model" if margin < -2 * b[best]["model_minus_baseline_stderr"] else
                best if margin > 2 * b[best]["model_minus_baseline_stderr"] else "tie")
    assert b["best"] == expected and b["verdict"] in text
    assert "1200 training rows" in b["fitted_on"]  # the run's own training split
    # beside them, the model on as many of its own training rows as it is scored on held out
    t = report["training_rows"]
    # (of the 1200 training rows, the 120 set aside to choose the weights were not fitted)
    assert (t["n"], t["of"]) == (report["n"], 1080) == (300, 1080)
    assert t["held_out_minus_training"] == pytest.approx(report["nll"] - t["nll"], abs=1e-9)
    assert t["held_out_minus_training_stderr"] > 0 and t["verdict"] in text
    assert f"{t['nll']:.4f}" in text and "of the 1080 the model trained on" in text
    page = vaelab.load(file_run).report().html  # the run's page says the same
    assert 'data-key="training_rows.nll"' in page and t["verdict"] in page
    assert main(["evaluate", str(file_run), "--k", "5", "--no-metrics", "--no-figures",
                 "--no-baselines", "--json", str(out)]) == 0
    assert not {"baselines", "training_rows"} & set(json.loads(out.read_text()))


def test_training_rows_report_tells_memorising_from_generalising(file_run):
    from vaelab.evaluation import training_rows_report

    run = vaelab.load(file_run)
    train = torch.from_numpy(np.load(file_run / "heldout.npy"))  # any rows stand in for them
    from vaelab.estimators import log_density

    held_nll = -log_density(run.model, train, "iwae", k=8, seed=0)
    # the same rows on both sides (the subset is all of them, in another order, so other
    # draws): a difference of the estimator's noise only, well within its standard error
    same = training_rows_report(run.model, train, held_nll, k=8, seed=0)
    assert same["n"] == same["of"] == len(train)
    diff, se = same["held_out_minus_training"], same["held_out_minus_training_stderr"]
    assert abs(diff) < se and "no sign of memorising" in same["verdict"]
    # held-out rows a nat per row worse than the same rows seen: memorised, and said so
    worse = training_rows_report(run.model, train, held_nll + 1.0, k=8, seed=0)
    assert worse["held_out_minus_training"] == pytest.approx(1.0 + diff, abs=1e-6)
    assert "partly memorised" in worse["verdict"]
    assert f"{1.0 + diff:.4f}" in worse["verdict"]
    # fewer held-out rows than training rows: a seeded subset of that many, the same each time
    few = training_rows_report(run.model, train, held_nll[:50], k=8, seed=3)
    assert few["n"] == 50 and few["nll"] == training_rows_report(
        run.model, train, held_nll[:50], k=8, seed=3)["nll"]


def test_baselines_need_a_files_training_rows(tiny_run_dir, capsys):
    run = vaelab.load(tiny_run_dir)
    assert "baselines" not in evaluate(run, n=50, k=4, metrics=False)  # built in: the truth
    code = main(["evaluate", str(tiny_run_dir), "--n", "50", "--k", "4", "--no-metrics",
                 "--no-figures", "--baselines"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "built-in source" in err[0]


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_run_refuses_data_that_changed_or_moved_and_follows_a_moved_file(file_run, tmp_path,
                                                                         capsys):
    import shutil

    record = json.loads((file_run / "data.json").read_text())
    assert record["rows"] == 1500 and record["columns"] == 3
    assert record["column_names"] == ["u", "v", "w"] and len(record["sha256"]) == 64
    data = file_run.parent / "three.csv"
    original = data.read_bytes()
    args = ["evaluate", str(file_run), "--k", "4", "--no-metrics", "--no-figures",
            "--no-baselines"]
    try:
        # the same numbers in another layout are the same data
        pts = np.loadtxt(data, delimiter=",", skiprows=1)
        np.savetxt(data, pts, delimiter=",", header="u,v,w", comments="", fmt="%.17g")
        assert main(args) == 0
        # one value edited: refused, naming the file and what to do
        pts[10, 1] += 0.5
        np.savetxt(data, pts, delimiter=",", header="u,v,w", comments="")
        capsys.readouterr()
        assert main(args) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not the data this run was trained on" in err[0]
        assert "Traceback" not in err[0]
        data.write_bytes(original)
        json_out = tmp_path / "e.json"
        assert main([*args, "--json", str(json_out)]) == 0
        reference = json.loads(json_out.read_text())
        # moved: the run's own held-out rows score it the same; --data finds the file again
        moved = tmp_path / "elsewhere.csv"
        shutil.move(data, moved)
        assert main([*args, "--json", str(json_out)]) == 0
        kept = json.loads(json_out.read_text())
        assert "held-out rows this run keeps" in kept["test_set"]
        assert kept["nll"] == reference["nll"] and kept["n"] == reference["n"]
        bare = _copy_run(file_run, tmp_path / "bare")
        (bare / "heldout.npy").unlink()
        capsys.readouterr()
        assert main(["evaluate", str(bare), *args[2:]]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--data NEW_PATH" in err[0]
        assert main([*args, "--data", str(moved), "--json", str(json_out)]) == 0
        assert json.loads(json_out.read_text())["nll"] == reference["nll"]
        (bare / "heldout.npy").write_bytes((file_run / "heldout.npy").read_bytes()[:-8] +
                                           b"\0" * 8)
        data_record = json.loads((bare / "data.json").read_text())
        assert data_record["heldout"]["kept"]
        assert main(["evaluate", str(bare), *args[2:]]) != 0
        assert "does not match the digest" in capsys.readouterr().err
        other = tmp_path / "other.csv"
        np.savetxt(other, pts, delimiter=",", header="u,v,w", comments="")
        assert main([*args, "--data", str(other)]) != 0
        assert "point --data to the file" in capsys.readouterr().err
        shutil.move(moved, data)
    finally:
        data.write_bytes(original)


def test_resume_refuses_a_data_file_edited_since_the_interrupt(tmp_path, capsys,
                                                               monkeypatch, interrupt_at):
    from vaelab.errors import TrainingInterrupted

    rng = np.random.default_rng(3)
    data = tmp_path / "d.csv"
    np.savetxt(data, rng.normal(size=(400, 2)), delimiter=",")
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, 20)
        with pytest.raises(TrainingInterrupted):
            vaelab.train(data=str(data), preset="seed", steps=60, batch_size=32,
                         frame_every=0, log_every=10, checkpoint_every=10, out=out,
                         progress=False, figures=False, device="cpu")
    assert json.loads((out / "data.json").read_text())["column_names"] is None  # no header
    np.savetxt(data, rng.normal(size=(400, 2)), delimiter=",")  # same shape, other values
    code = main(["train", "--resume", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "not the data this run was trained on" in err[0]
    assert "put the run's own data file back" in err[0]
