"""Decorrelating a file's columns (``data.decorrelate``): PCA whitening inside the model, the
same numbers through every step, and log-densities still in the data's own units."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.errors import ConfigError
from vaelab.models import build_model
from vaelab.models.explicit import ExplicitStep
from vaelab.resolve import FULL_COVARIANCE_MAX_COLUMNS, build_config
from vaelab.training.loop import fit_standardization, principal_axes, resolve_config

F64 = torch.float64


def _correlated(n: int, seed: int = 0) -> torch.Tensor:
    """Three correlated columns of distinct spreads, with a mean away from 0: one
    distribution, ``seed`` picking the draws."""
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0),
                                       dtype=F64))
    g = torch.Generator().manual_seed(1000 + seed)
    y = torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([4.0, 1.0, 0.25], dtype=F64)
    return y @ q.T + torch.tensor([10.0, -3.0, 0.5], dtype=F64)


def test_principal_axes_whiten_the_points_in_one_orientation():
    x = _correlated(4000)
    mean, rot, scale = principal_axes(x)
    u = (x - mean) @ rot / scale
    cov = u.T @ u / (u.shape[0] - 1)
    torch.testing.assert_close(cov, torch.eye(3, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(rot.T @ rot, torch.eye(3, dtype=F64), rtol=0, atol=1e-12)
    assert bool((scale[:-1] >= scale[1:]).all())  # by decreasing spread
    # one answer per data set: each axis's largest entry is positive, so a flipped copy of an
    # eigenvector (eigh may return either) gives the same rotation
    assert bool((rot.gather(0, rot.abs().argmax(0, keepdim=True)) > 0).all())
    _, rot2, _ = principal_axes(x.flip(0))
    torch.testing.assert_close(rot2, rot, rtol=0, atol=1e-9)


def test_principal_axes_keep_a_direction_without_spread():
    x = torch.zeros(50, 3, dtype=F64)
    x[:, 0] = torch.arange(50, dtype=F64)
    x[:, 1] = 2 * x[:, 0]  # the same direction: the other two have no spread
    _, _, scale = principal_axes(x)
    assert float(scale[0]) == pytest.approx(math.sqrt(5) * float(x[:, 0].std()))
    assert scale[1:].tolist() == [1.0, 1.0]


def _model(settings: dict | None = None, dim: int = 3):
    cfg = resolve_config(build_config("default", settings={
        "data.standardize": True, "data.decorrelate": True, **(settings or {})}))
    cfg = cfg.replace({"model.in_channels": dim, "model.latent_dim": dim})
    torch.manual_seed(0)
    model = build_model(cfg).double()
    fit_standardization(model, _correlated(2000))
    return cfg, model


def test_a_decorrelating_model_has_the_rotation_and_undoes_it():
    _, model = _model()
    assert model.data_rotation is not None
    x = _correlated(100, seed=1)
    # the rotation is stored in float32, so orthogonal to float32's precision
    torch.testing.assert_close(model.unstandardize(model.standardize(x)), x, rtol=0, atol=1e-6)
    u = model.standardize(_correlated(4000, seed=2))
    assert float((u.T @ u / 3999 - torch.eye(3, dtype=F64)).abs().max()) < 0.1


def test_log_densities_stay_in_data_units():
    """log p(x) of the decorrelating model equals that of the same network, standardised
    without rotation, at the rotated points: |det R| = 1, so only the scales enter."""
    _, model = _model()
    rot, shift, scale = model.data_rotation, model.data_shift, model.data_scale
    _, plain = _model({"data.decorrelate": False})
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if k != "data_rotation"})
    plain.set_standardization(shift @ rot, scale)
    x = _correlated(64, seed=3)
    z = torch.randn(5, 64, model.latent_dim, dtype=F64)
    torch.testing.assert_close(model.log_likelihood(x, z), plain.log_likelihood(x @ rot, z),
                               rtol=1e-12, atol=1e-10)
    # and the Jacobian is -sum(log scale) of the principal axes' spreads
    assert float(model.log_jacobian()) == pytest.approx(-float(torch.log(scale).sum()))


def test_explicit_gradients_with_a_rotation_are_autograds():
    cfg, model = _model()
    step = ExplicitStep.for_model(model)
    assert step.rotation is model.data_rotation
    samples = model.training_samples()
    x = _correlated(64, seed=4)
    eps = torch.randn(samples, 64, cfg.model.latent_dim, dtype=F64)
    out = model(x, eps=eps, samples=samples)
    terms = model.loss(out, kld_weight=cfg.loss.kld_weight)
    reference = torch.autograd.grad(terms.loss, list(model.parameters()))
    got, _ = step(x, eps, cfg.loss.kld_weight)
    torch.testing.assert_close(got, torch.stack(tuple(terms)).detach(), rtol=1e-12, atol=1e-12)
    for (name, p), g in zip(model.named_parameters(), reference, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12, msg=name)


def test_decorrelate_needs_standardize():
    with pytest.raises(ConfigError, match="data.decorrelate"):
        build_config("default", settings={"data.standardize": False,
                                          "data.decorrelate": True}).validate()


def test_built_in_sets_are_not_decorrelated_unless_asked():
    cfg = resolve_config(build_config("default", settings={"data": "swiss_roll_3d"}))
    assert cfg.data.decorrelate is False
    asked = resolve_config(build_config("seed", settings={"data.decorrelate": True}))
    assert asked.data.standardize is True and asked.data.decorrelate is True


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> str:
    x = _correlated(1500).numpy()
    path = tmp_path_factory.mktemp("decor") / "table.csv"
    np.savetxt(path, x, delimiter=",", header="height,width,depth", comments="")
    return str(path)


@pytest.mark.parametrize("seeds", [1, 2])
def test_a_file_run_decorrelates_by_default_and_loads(table, tmp_path, seeds):
    out = tmp_path / "run"
    args = ["train", "--data", table, "--out", str(out), "--steps", "60", "--quiet",
            "--no-figures", "--no-report", "--compile", "off"]
    assert main([*args, *(["--seeds", "2"] if seeds > 1 else [])]) == 0
    run_dir = out / "seed-0" if seeds > 1 else out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["decorrelate"] is True
    run = vaelab.load(run_dir)
    rot = run.model.data_rotation
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), rtol=0, atol=1e-5)
    assert float((rot - torch.eye(3)).abs().max()) > 0.1  # the columns really were rotated
    assert torch.isfinite(run.log_prob(torch.as_tensor(_correlated(20, 5), dtype=torch.float32),
                                       k=8)).all()
    assert main(["sample", str(run_dir), "-n", "30", "-o", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "height,width,depth"


def test_no_decorrelate_flag_keeps_per_column_scaling(table, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", table, "--out", str(out), "--steps", "20", "--quiet",
                 "--no-figures", "--no-report", "--compile", "off", "--no-decorrelate"]) == 0
    run = vaelab.load(out)
    assert run.config.data.decorrelate is False and run.model.data_rotation is None


def test_a_run_saved_before_the_field_keeps_per_column_scaling(tmp_path):
    """A run's config.json written before ``data.decorrelate`` existed has no such key: its
    model was standardised column by column, and it loads and resumes so."""
    from vaelab.runs import _parse_config

    resolved = resolve_config(build_config("default", settings={"data": "moons"}))
    data = json.loads(resolved.to_json())
    del data["data"]["decorrelate"]
    old = _parse_config(tmp_path / "config.json", json.dumps(data).encode())
    assert old.data.decorrelate is False
    data["data"]["decorrelate"] = None  # said, not missing: left to the resolution
    assert _parse_config(tmp_path / "config.json",
                         json.dumps(data).encode()).data.decorrelate is None


def test_the_default_preset_gives_files_a_full_covariance_built_ins_sigma_z(table, tmp_path):
    on_file = resolve_config(build_config("default", settings={"data": table}))
    assert on_file.loss.decoder_std_mode == "full" and on_file.data.decorrelate is True
    wide = tmp_path / "wide.csv"
    rows = np.random.default_rng(0).normal(size=(100, FULL_COVARIANCE_MAX_COLUMNS + 1))
    np.savetxt(wide, rows, delimiter=",", comments="",
               header=",".join(f"c{j}" for j in range(rows.shape[1])))
    on_wide = resolve_config(build_config("default", settings={"data": str(wide)}))
    assert on_wide.loss.decoder_std_mode == "latent"  # a D x D factor per point costs D^2
    two = tmp_path / "two.csv"
    np.savetxt(two, _correlated(100).numpy()[:, :2], delimiter=",", header="a,b", comments="")
    on_two = resolve_config(build_config("default", settings={"data": str(two)}))
    assert on_two.loss.decoder_std_mode == "global" and on_two.data.decorrelate is True
    built_in = resolve_config(build_config("default", settings={"data": "moons"}))
    assert built_in.loss.decoder_std_mode == "global" and built_in.data.decorrelate is False
    sheet = resolve_config(build_config("default", settings={"data": "swiss_roll_3d"}))
    assert sheet.loss.decoder_std_mode == "latent" and sheet.data.decorrelate is False
    # said outright, or where the loss cannot have sigma(z), the data does not decide
    said = resolve_config(build_config("default", settings={"data": table,
                                                            "decoder_std_mode": "global"}))
    assert said.loss.decoder_std_mode == "global"
    fixed = resolve_config(build_config("default", settings={
        "data": table, "loss.learn_decoder_std": False}))
    assert fixed.loss.decoder_std_mode == "global"
    assert resolve_config(build_config("seed", settings={"data": table})
                          ).loss.decoder_std_mode == "global"


def test_the_default_latent_is_as_wide_as_the_data_and_twice_that_from_6_columns(tmp_path):
    from vaelab.resolve import WIDE_LATENT_MAX_COLUMNS, WIDE_LATENT_MIN_COLUMNS, latent_for

    assert (WIDE_LATENT_MIN_COLUMNS, WIDE_LATENT_MAX_COLUMNS) == (6, 16)
    assert [latent_for(None, d) for d in (1, 2, 3, 5, 6, 10, 16, 17)] == [2, 2, 3, 5, 12, 20,
                                                                          32, 17]
    assert latent_for(4, 10) == 4  # said outright, the data does not decide
    six = tmp_path / "six.csv"
    rows = np.random.default_rng(0).normal(size=(100, 6))
    np.savetxt(six, rows, delimiter=",", comments="", header=",".join("abcdef"))
    assert resolve_config(build_config("default", settings={"data": str(six)})
                          ).model.latent_dim == 12
    assert resolve_config(build_config("default", settings={"data": str(six),
                                                            "latent_dim": 6})
                          ).model.latent_dim == 6
    assert resolve_config(build_config("seed", settings={"data": str(six)})
                          ).model.latent_dim == 2  # the seed preset's own
    assert resolve_config(build_config("default", settings={"data": "swiss_roll_3d"})
                          ).model.latent_dim == 3


def test_set_standardization_keeps_the_rotation_unless_given_one():
    _, model = _model()
    rot = model.data_rotation.clone()
    model.set_standardization(model.data_shift * 2, model.data_scale * 2)
    assert torch.equal(model.data_rotation, rot)
    _, plain = _model({"data.decorrelate": False})
    with pytest.raises(ValueError, match="decorrelates"):
        plain.set_standardization(plain.data_shift, plain.data_scale, torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="orthogonal"):
        model.set_standardization(model.data_shift, model.data_scale, 2 * rot)
