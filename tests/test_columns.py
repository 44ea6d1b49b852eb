"""Every dimension: a file run keeps its column names; ``sample`` writes them, ``compare``
draws a 6-column run as a pair plot (or the two columns asked for) named by them."""

from __future__ import annotations

import csv
import io
import itertools
import shutil

import numpy as np
import pytest

import vaelab
from vaelab.cli.main import main
from vaelab.data.columns import header_names
from vaelab.errors import ConfigError
from vaelab.plots.compare import MAX_PAIR_COLUMNS, draw_pairs, select_columns

COLUMNS = ["alpha", "beta", "gamma, with comma", "delta", "eps", "zeta"]


def _write_six(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    base = np.column_stack((np.cos(t), np.sin(t)))
    pts = base @ rng.standard_normal((2, 6)) + 0.05 * rng.standard_normal((n, 6))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(np.round(pts, 6).tolist())
    path.write_text(buf.getvalue(), encoding="utf-8")


@pytest.fixture(scope="module")
def six_run(tmp_path_factory):
    """A short run on a 6-column CSV with a header; the file is then moved away, so the
    names can only come from the run itself."""
    root = tmp_path_factory.mktemp("cols")
    data = root / "six.csv"
    _write_six(data)
    run = vaelab.train(data=str(data), steps=60, batch_size=64, hidden_dims=[16, 16],
                       log_every=20, frame_every=0, device="cpu", compile="off",
                       progress=False, figures=False)
    run.save(root / "run")
    return root / "run", data


def _header_of(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def test_header_names_follow_the_file_rules(tmp_path):
    (tmp_path / "a.csv").write_text('a, "b c" ,\n1,2,3\n4,5,6\n', encoding="utf-8")
    assert header_names(tmp_path / "a.csv") == ["a", "b c", "x2"]
    (tmp_path / "b.csv").write_text("\n\n1,2\n3,4\n", encoding="utf-8")
    assert header_names(tmp_path / "b.csv") is None  # a first line of numbers is data
    (tmp_path / "c.tsv").write_text("u\tv\n1\t2\n3\t4\n", encoding="utf-8")
    assert header_names(tmp_path / "c.tsv") == ["u", "v"]
    (tmp_path / "d.txt").write_text("p q r\n1 2 3\n4 5 6\n", encoding="utf-8")
    assert header_names(tmp_path / "d.txt") == ["p", "q", "r"]
    np.save(tmp_path / "e.npy", np.zeros((3, 2)))
    assert header_names(tmp_path / "e.npy") is None


def test_the_run_keeps_the_files_column_names(six_run, tmp_path):
    run_dir, data = six_run
    moved = tmp_path / "elsewhere.csv"
    shutil.copy(data, moved)
    run = vaelab.load(run_dir)
    assert run.columns == COLUMNS
    assert run.summary["data_columns"] == COLUMNS  # where they are kept: summary.json
    # built-in data, or a file without a header: x0, x1, ...
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, np.random.default_rng(0).standard_normal((50, 3)), delimiter=",")
    run3 = vaelab.train(data=str(plain), steps=5, hidden_dims=[8], device="cpu",
                        compile="off", progress=False, figures=False)
    assert run3.columns == ["x0", "x1", "x2"] and "data_columns" not in run3.summary


def test_sample_writes_the_files_column_names(six_run, tmp_path, capsys):
    run_dir, _ = six_run
    assert main(["sample", str(run_dir), "-n", "7"]) == 0
    out = capsys.readouterr().out
    assert _header_of(out) == COLUMNS
    rows = np.loadtxt(io.StringIO(out), delimiter=",", skiprows=1)
    assert rows.shape == (7, 6)
    target = tmp_path / "s.csv"
    assert main(["sample", str(run_dir), "-n", "5", "-o", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert _header_of(text) == COLUMNS
    # the file reads back with vaelab's own reader, header skipped
    from vaelab.data.files import read_points

    assert read_points(target).shape == (5, 6)
    assert header_names(target) == COLUMNS


def test_logp_names_the_input_columns(six_run, tmp_path, capsys):
    run_dir, data = six_run
    assert main(["logp", str(run_dir), "--input", str(data), "--k", "5"]) == 0
    assert _header_of(capsys.readouterr().out) == [*COLUMNS, "log_p"]


@pytest.mark.parametrize("columns", [None, "beta,zeta", "0,3,5"])
def test_compare_draws_a_six_column_run(six_run, tmp_path, capsys, columns):
    run_dir, _ = six_run
    out = tmp_path / "cmp.png"
    argv = ["compare", str(run_dir), str(run_dir), "-o", str(out), "--labels", "a,b"]
    assert main(argv + (["--columns", columns] if columns else [])) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().err == ""  # all 6 columns fit: no note


@pytest.mark.parametrize("spec, message", [
    ("beta,nope", "no column named 'nope' (columns: alpha, beta, gamma, with comma"),
    ("0,6", "index 6 is out of range (0-based, the data has 6 columns"),
    ("beta", "give 2 to 6 columns, not 1"),
    ("beta,1", "column 'beta' is given twice"),
    ("beta,,gamma", "an empty column name"),
])
def test_compare_refuses_bad_columns_in_one_line(six_run, tmp_path, capsys, spec, message):
    run_dir, _ = six_run
    code = main(["compare", str(run_dir), "-o", str(tmp_path / "x.png"), "--columns", spec])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaelab compare: error: --columns")
    assert message in err[0]
    assert "Traceback" not in err[0] and not (tmp_path / "x.png").exists()


def test_select_columns_caps_and_says_so():
    names = [f"c{i}" for i in range(9)]
    chosen, note = select_columns(None, names)
    assert chosen == list(range(MAX_PAIR_COLUMNS))
    assert "first 6 of 9 columns" in note and "--columns" in note
    assert select_columns("c8,2", names) == ([8, 2], "")
    with pytest.raises(ConfigError, match="2 or more columns"):
        select_columns(None, ["x0"])
    with pytest.raises(ConfigError, match="named 'a'"):
        select_columns("a,b", ["a", "a", "b"])
    # a name wins over an index
    assert select_columns("1,0", ["0", "1", "2"])[0] == [1, 0]


def test_pair_plot_names_its_columns_without_overlap(artifacts):
    from test_figures import _texts

    rng = np.random.default_rng(0)
    real = rng.standard_normal((500, 4))
    fig = draw_pairs(real, [("model", real + 0.1)], ["alpha", "beta", "gamma", "delta"],
                     title="six.csv", note="showing the first 4 of 8 columns")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    xlabels = {ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()}
    ylabels = {ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()}
    assert xlabels == {"alpha", "beta", "gamma", "delta"}
    assert ylabels == {"beta", "gamma", "delta"}  # row 0 is alpha's histogram
    assert len(fig.axes) == 2 * (4 * 5 // 2)
    assert "first 4 of 8" in fig._suptitle.get_text()
    texts = [t for sub in fig.subfigs for t in sub.texts]
    boxes = [(kind, t.get_text(), t.get_window_extent(renderer)) for kind, t in _texts(fig)]
    boxes += [("suptitle", t.get_text(), t.get_window_extent(renderer)) for t in texts]
    page = fig.bbox
    for kind, text, box in boxes:
        assert (box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1 and box.x1 <= page.x1 + 1
                and box.y1 <= page.y1 + 1), f"{kind} {text!r} is cut off"
    for (k1, t1, b1), (k2, t2, b2) in itertools.combinations(boxes, 2):
        if k1 == k2 == "tick" or (t1 == t2 and b1.bounds == b2.bounds):
            continue
        assert not b1.overlaps(b2), f"{k1} {t1!r} overlaps {k2} {t2!r}"
    fig.savefig(artifacts / "compare_pairs.png", dpi=100)


def test_panels_and_report_name_the_files_columns(six_run):
    from vaelab.plots.panels import draw_panels, run_limits
    from vaelab.report.figures import panels_figure

    run = vaelab.load(six_run[0])
    assert run.frames  # the final frame at least
    fig = draw_panels(run.frames[-1], run_limits(run.frames), columns=run.columns)
    data_ax, z_ax, gen_ax = fig.axes
    for ax in (data_ax, gen_ax):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("alpha", "beta")
        assert "columns alpha, beta of 6" in ax.get_title()
    assert (z_ax.get_xlabel(), z_ax.get_ylabel()) == ("z0", "z1")
    plotly = panels_figure(run.frames, run.config, run.columns)
    assert plotly.layout.xaxis.title.text == "alpha" and plotly.layout.yaxis.title.text == "beta"
    assert plotly.layout.xaxis3.title.text == "alpha"
    assert "columns alpha, beta of 6" in plotly.layout.annotations[0].text


def test_vaelab_train_stores_the_names_and_sample_needs_no_file(tmp_path, capsys):
    data = tmp_path / "six.csv"
    _write_six(data, n=100)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--steps", "20",
                 "--hidden-dims", "8", "--frame-every", "0", "--device", "cpu",
                 "--compile", "off", "--no-figures", "--no-report", "--quiet"]) == 0
    import json

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["data_columns"] == COLUMNS
    data.rename(tmp_path / "moved.csv")  # the names live in the run, not in the file
    capsys.readouterr()
    assert main(["sample", str(out), "-n", "3"]) == 0
    assert _header_of(capsys.readouterr().out) == COLUMNS
