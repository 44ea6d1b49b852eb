"""Rows set aside from a fixed training set choose the weights a run keeps
(``train.validation``, :mod:`vaelab.training.validation`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tables import write_table

from vaelab.cli.main import main
from vaelab.devices import derive_seeds
from vaelab.errors import ConfigError
from vaelab.estimators import log_density
from vaelab.resolve import build_config, prepare
from vaelab.runs import load_run, train_group, train_run
from vaelab.training.validation import (
    AUTO_BELOW_ROWS,
    VALIDATION_K,
    check_every,
    split_validation,
    validation_for,
)

#: (the widths fixed, so that the choices below do not follow the short-file widths rule)
SHORT = {"steps": 300, "batch_size": 32, "log_every": 20, "frame_every": 0,
         "display_points": 50, "device": "cpu", "hidden_dims": [128, 128, 128]}


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    """250 rows of a 3-column table: a set small enough to be learned by heart."""
    return write_table(tmp_path / "small.csv", 250, seed=3)


def test_the_default_sets_rows_aside_only_for_a_small_fixed_training_set():
    assert validation_for(None, None) == 0.0  # fresh batches of a built-in set
    assert validation_for(None, 19) == 0.0
    assert validation_for(None, 20) == 0.1
    assert validation_for(None, AUTO_BELOW_ROWS - 1) == 0.1
    assert validation_for(None, AUTO_BELOW_ROWS) == 0.0
    assert validation_for(0.25, 50_000) == 0.25  # an explicit setting is kept
    assert validation_for(0.0, 100) == 0.0


def test_resolving_fills_it_in_per_data(small_file, tmp_path):
    assert prepare(build_config("default", settings={"data": str(small_file)}))[0] \
        .train.validation == 0.1
    assert prepare(build_config("default"))[0].train.validation == 0.0  # the Swiss roll
    assert prepare(build_config("default", settings={"n_train": 800}))[0] \
        .train.validation == 0.1
    assert prepare(build_config("seed", settings={"n_train": 800}))[0] \
        .train.validation == 0.0  # the seed preset stays the blog's run
    off = build_config("default", settings={"data": str(small_file), "validation": 0})
    assert prepare(off)[0].train.validation == 0.0
    big = tmp_path / "big.csv"
    np.savetxt(big, np.random.default_rng(0).normal(size=(5_000, 2)), delimiter=",")
    assert prepare(build_config("default", settings={"data": str(big)}))[0] \
        .train.validation == 0.0  # 4,000 training rows


def test_resolving_twice_changes_nothing(small_file):
    once = prepare(build_config("default", settings={"data": str(small_file)}))[0]
    assert prepare(once)[0].to_json() == once.to_json()


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_a_bad_fraction_is_refused(value):
    with pytest.raises(ConfigError, match="train.validation"):
        build_config("default", settings={"validation": value}).validate()


def test_a_bad_fraction_on_the_command_line_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--validation", "2", "--out", "unused"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--validation" in err and "Traceback" not in err


def test_the_split_is_disjoint_ordered_and_fixed_by_its_seed():
    points = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    train, held = split_validation(points, 0.1, seed=7)
    assert held is not None and len(held) == 10 and len(train) == 90
    assert set(held.flatten().tolist()).isdisjoint(train.flatten().tolist())
    assert sorted(held.flatten().tolist()) == held.flatten().tolist()  # original order
    assert torch.equal(split_validation(points, 0.1, seed=7)[1], held)
    assert not torch.equal(split_validation(points, 0.1, seed=8)[1], held)
    assert split_validation(points, 0.0, seed=7)[1] is None
    assert len(split_validation(points[:2], 0.01, seed=7)[1]) == 1  # at least one row each


def test_checks_fall_on_metrics_rows():
    assert check_every(24_000, 100) == 500
    assert check_every(300, 20) == 20
    assert check_every(None, 100) == 500
    assert check_every(24_000, 100) % 100 == 0


#: a table of 120 rows (96 training rows, half of them set aside) trained long enough to be
#: learned by heart: the last step fits the rows set aside far worse than an early one
OVERFIT = {**SHORT, "steps": 3000, "validation": 0.5}


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("overfit")
    path = write_table(tmp / "tiny.csv", 120, seed=3)
    cfg = build_config("default", settings={**OVERFIT, "data": str(path)})
    return train_run(cfg, tmp / "r", progress=False, figures=False)


def _held_rows(run) -> torch.Tensor:  # noqa: ANN001
    """The rows ``run`` set aside, drawn again as the loop drew them."""
    from vaelab.data.pipeline import training_points

    resolved, source = run.config, prepare(run.config)[1]
    rows = training_points(resolved, source, torch.Generator(), torch.device("cpu"))
    return split_validation(rows, resolved.train.validation,
                            derive_seeds(resolved.train.seed).validation)[1]


def _score(run, rows: torch.Tensor, seed: int) -> float:  # noqa: ANN001
    """The saved model's validation score on ``rows``, as the loop computes it."""
    model = load_run(run.path).model
    return float(-log_density(model, rows, "iwae", k=VALIDATION_K, seed=seed).double().mean())


def test_the_run_keeps_the_weights_that_fit_the_rows_set_aside_best(overfit_run):
    v = overfit_run.summary["validation"]
    held = _held_rows(overfit_run)
    assert v["rows"] == len(held) == 48
    assert v["kept"] == "best" and v["kept_step"] == v["best_step"] < 3000 and v["restored"]
    assert v["best_step"] % v["every"] == 0
    assert v["final_minus_best"] > v["final_minus_best_stderr"] > 0
    assert v["final_nll"] - v["best_nll"] == pytest.approx(v["final_minus_best"], abs=1e-5)
    # the saved model is the best step's: scoring it again gives the best score
    seed = derive_seeds(overfit_run.config.train.seed).validation
    assert _score(overfit_run, held, seed) == pytest.approx(v["best_nll"], abs=1e-5)
    summary = json.loads((overfit_run.path / "summary.json").read_text())
    assert summary["validation"]["best_step"] == v["best_step"]


def test_a_best_check_within_its_noise_keeps_the_last_step(small_file, tmp_path):
    """A check better than the last step by less than the standard error of their
    difference does not replace it: the last step's weights are kept, and saved."""
    torch.set_num_threads(1)
    cfg = build_config("default", settings={**SHORT, "data": str(small_file)})
    run = train_run(cfg, tmp_path / "r", progress=False, figures=False)
    v = run.summary["validation"]
    assert v["rows"] == 20 and v["best_step"] < v["final_step"] == 300  # (with this seed)
    assert v["final_minus_best"] <= v["final_minus_best_stderr"]
    assert v["kept"] == "final" and v["kept_step"] == 300 and not v["restored"]
    seed = derive_seeds(run.config.train.seed).validation
    assert _score(run, _held_rows(run), seed) == pytest.approx(v["final_nll"], abs=1e-5)


def test_without_rows_set_aside_the_last_step_is_kept(small_file, tmp_path):
    torch.set_num_threads(1)
    cfg = build_config("default", settings={**SHORT, "data": str(small_file),
                                            "validation": 0})
    run = train_run(cfg, tmp_path / "r", progress=False, figures=False)
    assert "validation" not in run.summary


def test_the_rows_set_aside_are_not_trained_on(small_file, tmp_path, monkeypatch):
    """The fixed set the loop draws batches from lacks exactly the rows set aside."""
    from vaelab.data import FixedSetStream
    from vaelab.training import loop as loop_module

    seen: list[torch.Tensor] = []

    class Recording(FixedSetStream):
        def __init__(self, points, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            seen.append(points.clone())
            super().__init__(points, *args, **kwargs)

    monkeypatch.setattr(loop_module, "FixedSetStream", Recording)
    cfg = build_config("default", settings={**SHORT, "steps": 40, "data": str(small_file)})
    train_run(cfg, tmp_path / "r", progress=False, figures=False)
    resolved, source = prepare(cfg)
    from vaelab.data.pipeline import training_points

    rows = training_points(resolved, source, torch.Generator(), torch.device("cpu"))
    kept, held = split_validation(rows, 0.1, derive_seeds(resolved.train.seed).validation)
    assert len(seen) == 1 and torch.equal(seen[0], kept)
    trained = {tuple(r) for r in seen[0].tolist()}
    assert not any(tuple(r) in trained for r in held.tolist())


def test_each_model_of_a_group_chooses_on_its_own_rows(overfit_run, tmp_path):
    from vaelab.groups import seed_group

    torch.set_num_threads(1)
    runs = train_group(seed_group(overfit_run.config, 2), tmp_path / "g", progress=False,
                       figures=False)
    chosen = [r.summary["validation"] for r in runs]
    assert all(c["rows"] == 48 for c in chosen)
    # their own rows (a model's split follows its seed), each scored as its summary says
    assert not torch.equal(_held_rows(runs[0]), _held_rows(runs[1]))
    assert chosen[0]["best_nll"] != chosen[1]["best_nll"]
    seed = derive_seeds(runs[0].config.train.seed).validation  # the group's scoring draws
    for run, c in zip(runs, chosen, strict=True):
        kept = c["best_nll"] if c["kept"] == "best" else c["final_nll"]
        assert _score(run, _held_rows(run), seed) == pytest.approx(kept, abs=1e-5)


def test_the_command_says_which_step_it_kept(small_file, tmp_path, capsys):
    assert main(["train", "--data", str(small_file), "--steps", "200", "--batch-size", "32",
                 "--log-every", "20", "--out", str(tmp_path / "r"), "--quiet",
                 "--no-figures", "--no-report", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "20 training rows set aside" in out


def test_evaluate_scores_training_rows_without_the_rows_set_aside(small_file, tmp_path):
    """``vaelab evaluate``'s NLL on the training rows is on rows the model fitted: the rows
    set aside, which it never fitted, are not among them."""
    from vaelab.evaluation import evaluate

    torch.set_num_threads(1)
    cfg = build_config("default", settings={**SHORT, "steps": 40, "data": str(small_file)})
    run = train_run(cfg, tmp_path / "r", progress=False, figures=False)
    report = evaluate(load_run(tmp_path / "r"), k=20, metrics=False)
    # 250 rows: 50 held out, 200 training rows of which 20 were set aside
    assert report["training_rows"]["of"] == 180 == 200 - run.summary["validation"]["rows"]


def test_the_report_says_which_step_it_kept(overfit_run):
    v = overfit_run.summary["validation"]
    html = load_run(overfit_run.path).report().html
    assert f"kept the weights of step {v['best_step']:,}" in html
    assert "48 training rows set aside" in html


# -- a short file's layers ------------------------------------------------------------------

def test_a_short_file_gets_narrower_layers_and_a_longer_one_the_defaults(small_file, tmp_path):
    from vaelab.presets import DEFAULT_WIDTHS, SHORT_FILE_ROWS, SHORT_FILE_WIDTHS
    from vaelab.resolve import widths_for

    assert widths_for(None, None) == DEFAULT_WIDTHS  # fresh batches of a built-in set
    assert widths_for(None, SHORT_FILE_ROWS - 1) == SHORT_FILE_WIDTHS == [64, 64, 64]
    assert widths_for(None, SHORT_FILE_ROWS) == DEFAULT_WIDTHS == [128, 128, 128]
    assert widths_for([32, 16], 100) == [32, 16]  # an explicit setting is kept
    short = prepare(build_config("default", settings={"data": str(small_file)}))[0]
    assert short.model.hidden_dims == [64, 64, 64]
    assert prepare(build_config("default"))[0].model.hidden_dims == [128, 128, 128]
    assert prepare(build_config("seed", settings={"n_train": 500}))[0] \
        .model.hidden_dims == [128, 128]  # the seed preset stays the blog's run
    mine = build_config("default", settings={"data": str(small_file), "hidden_dims": [128]})
    assert prepare(mine)[0].model.hidden_dims == [128]
    run = train_run(build_config("default", settings={**SHORT, "steps": 20, "hidden_dims": None,
                                                      "data": str(small_file)}),
                    tmp_path / "r", progress=False, figures=False)
    assert run.model.hidden_dims == [64, 64, 64]
    assert [block[0].out_features for block in run.model.encoder] == [64, 64, 64]
