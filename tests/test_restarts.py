"""A run tries a few initial weights for the first steps and trains the best
(``train.restarts``, :mod:`vaelab.training.restarts`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tables import write_table

from vaelab.cli.main import main
from vaelab.devices import derive_seeds
from vaelab.errors import ConfigError, TrainingDiverged
from vaelab.resolve import build_config, prepare
from vaelab.runs import load_run, resume_run, train_group, train_run
from vaelab.training.checkpoint import CHECKPOINT_FILE
from vaelab.training.loop import fit, fit_models
from vaelab.training.restarts import (
    candidate_seed,
    choose,
    probe_score,
    probe_steps,
    restart_words,
)

SHORT = {"steps": 240, "batch_size": 32, "log_every": 20, "frame_every": 0,
         "display_points": 50, "device": "cpu", "checkpoint_every": 0}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """600 rows of a 3-column table."""
    return write_table(tmp_path / "table.csv", 600, seed=5)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_preset_trains_its_own_initial_weights_unless_told(table):
    def resolved(preset: str, **settings: object) -> int:
        return prepare(build_config(preset, settings=settings))[0].train.restarts

    assert resolved("default", data=str(table)) == 1
    assert resolved("default") == 1
    assert resolved("seed", n_train=800) == 1  # the seed preset stays the blog's run
    assert resolved("default", data=str(table), restarts=3) == 3
    once = prepare(build_config("default", settings={"data": str(table), "restarts": 3}))[0]
    assert prepare(once)[0].to_json() == once.to_json()


def test_the_probe_is_a_twelfth_of_the_steps():
    assert probe_steps(24_000) == 2_000
    assert probe_steps(240) == 20
    assert probe_steps(2) == 1
    for steps in (2, 3, 11, 50, 1_000):
        assert 1 <= probe_steps(steps) < steps


def test_candidates_are_the_runs_own_initialisation_then_children_of_it():
    init = derive_seeds(7).init
    seeds = [candidate_seed(init, j) for j in range(5)]
    assert seeds[0] == init
    assert len(set(seeds)) == 5
    assert seeds == [candidate_seed(init, j) for j in range(5)]  # stable


def test_the_lowest_mean_loss_of_the_probes_last_quarter_is_chosen():
    rows = [{"step": s, "loss": v} for s, v in [(20, 9.0), (40, 1.0), (60, 3.0), (80, 5.0)]]
    assert probe_score(rows, 80) == pytest.approx(5.0)  # only step 80 is past 60
    assert probe_score(rows, 40) == pytest.approx(1.0)  # step 40: past 30, within 40
    assert probe_score(rows, 70) == pytest.approx(3.0)  # step 60: past 52.5, within 70
    assert probe_score(rows, 50) == pytest.approx(1.0)  # step 40: past 37.5, within 50
    wide = [{"step": s, "loss": float(s)} for s in range(10, 110, 10)]
    assert probe_score(wide, 100) == pytest.approx(90.0)  # steps 80, 90, 100
    assert probe_score([{"step": 20, "loss": math.nan}], 20) == math.inf
    assert choose([3.0, 1.0, 2.0]) == 1
    assert choose([2.0, math.inf, 2.0]) == 0  # the first of equals
    assert choose([math.inf, math.inf]) == 0  # none finite: the run's own


def test_a_run_trains_the_chosen_candidate_from_its_initial_weights(table):
    config = build_config("default", settings={"data": str(table), "restarts": 3, **SHORT})
    result = fit(config, progress=False)
    r = result.summary["restarts"]
    assert r["candidates"] == 3 and r["probe_steps"] == 20
    losses = r["probe_losses"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert r["chosen"] == int(np.argmin(losses))
    assert len(set(losses)) == 3  # the candidates differ
    # the run is an ordinary run from the chosen candidate's initial weights
    resolved = prepare(config)[0]
    init = candidate_seed(derive_seeds(resolved.train.seed).init, r["chosen"])
    plain = fit_models([resolved], progress=False, inits=[init])[0]
    assert "restarts" not in plain.summary
    assert _same(_weights(result.model), _weights(plain.model))
    # and the probe's scores are those of the candidates' own first steps
    probe = fit_models([resolved] * 3, progress=False,
                       inits=[candidate_seed(derive_seeds(resolved.train.seed).init, j)
                              for j in range(3)], stop_after=20)
    assert [probe_score(p.metrics, 20) for p in probe] == pytest.approx(losses, rel=1e-6)
    assert restart_words(result.summary).startswith("tried 3 initial weights for 20 steps")


def test_a_probe_shorter_than_a_metrics_interval_is_scored_on_its_last_step(table):
    config = build_config("default", settings={"data": str(table), "restarts": 2,
                                               **SHORT, "log_every": 100})
    r = fit(config, progress=False).summary["restarts"]
    assert r["probe_steps"] == 20
    assert all(v is not None and math.isfinite(v) for v in r["probe_losses"])


def test_one_restart_is_the_run_without_a_probe(table):
    config = build_config("default", settings={"data": str(table), "restarts": 1, **SHORT})
    result = fit(config, progress=False)
    assert "restarts" not in result.summary
    resolved = prepare(config)[0]
    plain = fit_models([resolved], progress=False,
                       inits=[derive_seeds(resolved.train.seed).init])[0]
    assert _same(_weights(result.model), _weights(plain.model))
    assert restart_words(result.summary) is None


def test_a_resumed_run_ends_as_an_uninterrupted_one_and_keeps_its_choice(
        table, tmp_path, monkeypatch, interrupt_at):
    settings = {"data": str(table), "restarts": 2, **SHORT, "checkpoint_every": 40}
    whole = train_run(build_config("default", settings=settings), tmp_path / "whole",
                       progress=False, figures=False)
    interrupt_at(monkeypatch, 100)  # (the probe is steps 1-20, before the run's own)
    from vaelab.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        train_run(build_config("default", settings=settings), tmp_path / "cut",
                  progress=False, figures=False)
    monkeypatch.undo()
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file()
    resumed = resume_run(tmp_path / "cut", progress=False, figures=False)
    assert resumed.summary["restarts"] == {**whole.summary["restarts"],
                                           "probe_seconds": resumed.summary["restarts"][
                                               "probe_seconds"]}
    assert resumed.summary["restarts"]["chosen"] == whole.summary["restarts"]["chosen"]
    assert _same(_weights(resumed.model), _weights(whole.model))
    saved = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert saved["restarts"]["candidates"] == 2
    assert load_run(tmp_path / "cut").summary["restarts"]["chosen"] == \
        whole.summary["restarts"]["chosen"]


def test_each_model_of_a_group_probes_its_own(table):
    from vaelab.groups import seed_group

    config = build_config("default", settings={"data": str(table), "restarts": 2, **SHORT})
    runs = train_group(seed_group(config, 2), progress=False, figures=False)
    records = [r.summary["restarts"] for r in runs]
    assert [r["candidates"] for r in records] == [2, 2]
    assert records[0]["probe_losses"] != records[1]["probe_losses"]  # their own seeds


def test_a_probe_that_diverges_keeps_the_runs_own_weights_and_the_run_says_so(table):
    config = build_config("default", settings={"data": str(table), "restarts": 2,
                                               "lr": 1e9, **SHORT})
    with pytest.raises(TrainingDiverged, match="diverged"):
        fit(config, progress=False)


@pytest.mark.parametrize("value", [0, -1])
def test_a_bad_count_is_refused(value):
    with pytest.raises(ConfigError, match="train.restarts"):
        build_config("default", settings={"restarts": value}).validate()


def test_restarts_need_steps(table):
    with pytest.raises(ConfigError, match="train.restarts.*needs train.steps"):
        build_config("default", settings={"data": str(table), "restarts": 3,
                                          "time_limit": 5.0}).validate()


def test_a_bad_count_on_the_command_line_is_one_line(capsys, tmp_path, table):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(table), "--restarts", "0", "--out", str(tmp_path / "r")])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--restarts" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_the_command_line_says_which_weights_it_trained(capsys, tmp_path, table):
    args = ["train", "--data", str(table), "--restarts", "2", "--quiet", "--no-figures",
            "--no-report", "--out", str(tmp_path / "r")]
    for key, value in SHORT.items():
        if key not in ("display_points", "checkpoint_every"):
            args += [f"--{key.replace('_', '-')}", str(value)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tried 2 initial weights for 20 steps" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["restarts"]["chosen"] in (0, 1)
