"""Extreme values at the evaluator: a value beyond float32 is one error line (as train says
it), and a point so far outside the data that the encoder's proposal overflows gets a finite
log p (prior Monte Carlo in float64), said on stderr, never NaN."""

from __future__ import annotations

import math

import pytest

from vaelab.cli.main import main


def _write(path, rows):
    path.write_text("a,b\n" + "".join(f"{x},{y}\n" for x, y in rows))
    return path


@pytest.mark.parametrize("command", ["logp", "evaluate"])
def test_a_value_beyond_float32_is_one_line(tiny_run_dir, tmp_path, capsys, command):
    data = _write(tmp_path / "huge.csv", [(1e300, 2e300), (1.0, 2.0), (3.0, 1.0)])
    out = tmp_path / "out.csv"
    args = (["logp", str(tiny_run_dir), "--input", str(data), "-o", str(out)]
            if command == "logp" else
            ["evaluate", str(tiny_run_dir), "--input", str(data), "--json", str(out),
             "--no-figures", "--no-metrics"])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit in float32" in err[0] and "row 1" in err[0]
    assert not out.exists()


def test_points_far_outside_the_data_get_a_finite_log_density(tiny_run_dir, tmp_path,
                                                                capsys):
    data = _write(tmp_path / "far.csv", [(1e30, 2.0), (-1e6, 1.0), (3.0, 1.0)])
    out = tmp_path / "out.csv"
    assert main(["logp", str(tiny_run_dir), "--input", str(data), "-o", str(out),
                 "--k", "50"]) == 0
    logp = [float(line.split(",")[-1]) for line in out.read_text().splitlines()[1:]]
    assert all(math.isfinite(v) for v in logp)
    # the farther the point, the lower its density, by orders of magnitude
    assert logp[0] < logp[1] < logp[2] and logp[0] < -1e50 and logp[1] < -1e9
    err = capsys.readouterr().err
    assert "(the first: row 1)" in err and "prior Monte Carlo" in err
