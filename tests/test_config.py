"""RunConfig: round trips, strict parsing, presets, and the preset < file < flag layering."""

from __future__ import annotations

import json

import pytest

from vaelab.config import RunConfig, load_config_file
from vaelab.errors import ConfigError
from vaelab.presets import get_preset
from vaelab.resolve import build_config, resolve_config


def test_json_round_trip_is_exact():
    cfg = build_config("seed", settings={"n_train": 5000, "hidden_dims": [64, 32],
                                         "device": "cpu", "lr": 1e-3})
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == cfg.to_dict()


def test_seed_preset_is_the_blog_run():
    cfg = resolve_config(get_preset("seed"))  # noise unset in the preset: the roll's own 0.3
    assert (cfg.data.name, cfg.data.noise, cfg.data.n_train) == ("swiss_roll", 0.3, None)
    assert cfg.data.standardize is False  # unscaled, as in the seed
    assert (cfg.model.latent_dim, cfg.model.hidden_dims) == (2, [128, 128])
    assert (cfg.loss.name, cfg.loss.kld_weight) == ("seed_mse", 1.0)
    assert (cfg.optim.lr, cfg.optim.scheduler, cfg.optim.step_size, cfg.optim.gamma) == (
        2e-2, "step", 1000, 0.7)
    assert (cfg.train.steps, cfg.train.batch_size) == (10_000, 512)


def test_toml_file_then_flags_override_the_preset(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('preset = "seed"\n[optim]\nlr = 0.001\ngamma = 0.5\n[train]\nsteps = 300\n')
    cfg = build_config(None, path, {"steps": 42})
    assert cfg.preset == "seed"
    assert cfg.optim.lr == 0.001 and cfg.optim.gamma == 0.5
    assert cfg.train.steps == 42  # the flag wins over the file
    assert cfg.train.batch_size == 512  # the preset fills the rest


def test_json_config_file(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"train": {"batch_size": 64}}))
    assert build_config(None, path).train.batch_size == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"stepz": 3}}, "unknown key train.stepz"),
        ({"trian": {}}, "unknown key trian"),
        ({"train": {"steps": "ten"}}, "train.steps must be an integer"),
        ({"train": {"steps": True}}, "train.steps must be an integer"),
        ({"train": {"steps": 0}}, "train.steps = 0 must be >= 1"),
        ({"optim": {"lr": -1.0}}, "optim.lr = -1.0 must be > 0"),
        ({"optim": {"lr": float("nan")}}, "optim.lr must be a finite number"),
        ({"optim": {"scheduler": "plateau"}}, "optim.scheduler"),
        ({"model": {"hidden_dims": [128, 0]}}, "model.hidden_dims"),
        ({"model": {"hidden_dims": 128}}, "model.hidden_dims must be a list"),
        ({"loss": {"kld_weight": 0.0}}, "loss.kld_weight"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"data": {"noise": -0.1}}, "data.noise"),
        ({"train": []}, "train must be a table"),
    ],
)
def test_bad_values_are_refused_with_their_name(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RunConfig.from_dict(data)


def test_unknown_setting_and_preset_names():
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config("seed", settings={"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="did you mean: seed"):
        build_config("sead")


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(bad_json)


def test_int_valued_float_is_refused_for_int_fields():
    """As the CLI's --steps 1e2 is: one rule wherever a value comes from."""
    for value in (100.0, 1e2):
        with pytest.raises(ConfigError, match="train.steps must be an integer, got 100.0"):
            RunConfig.from_dict({"train": {"steps": value}})
    assert RunConfig.from_dict({"train": {"steps": 100}}).train.steps == 100


def test_the_example_config_file_is_the_seed_preset():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / "seed.toml"
    assert resolve_config(build_config(None, path)) == resolve_config(build_config("seed"))


def test_the_default_config_file_is_the_default_preset():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / "default.toml"
    assert resolve_config(build_config(None, path)) == resolve_config(build_config("default"))
    assert build_config().preset == "default"  # no preset named: the default
