"""vaelab sweep: the search-space parser (no Ray needed), a trial run in-process, and sweeps
on a real two-node Ray cluster on the loopback address (started and stopped here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.cli.main import main
from vaelab.errors import ConfigError, TrainingInterrupted, VaelabError
from vaelab.resolve import build_config
from vaelab.sweep.records import load_rows
from vaelab.sweep.space import default_searcher, parse_space

SRC = Path(vaelab.__file__).resolve().parents[1]
#: a couple hundred small steps (as conftest's tiny runs)
TINY = {"steps": 200, "batch_size": 128, "log_every": 50, "frame_every": 100,
        "display_points": 100}
#: a tiny trial on the CPU, as the CLI spells it
TINY_FLAGS = ["--preset", "seed", "--steps", "200", "--batch-size", "128", "--log-every", "50",
              "--frame-every", "100", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _keep_threads():
    """A trial run in this process sets torch's threads to one, as a worker does: the
    tests after it get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def base():
    return build_config("seed", settings={**TINY, "device": "cpu"})


# -- the search space -------------------------------------------------------------------------

def test_a_grid_lists_values_and_x_lists_are_list_values(base):
    space = parse_space(["hidden_dims=64x64,128x128x128", "lr=0.001,0.01",
                         "activation=relu,tanh", "optim.gamma=0.5"], base)
    assert default_searcher(space) == "grid"
    points = space.grid_points()
    assert len(points) == 8
    assert points[0] == {"model.hidden_dims": [64, 64], "optim.lr": 0.001,
                         "model.activation": "relu", "optim.gamma": 0.5}
    assert points[-1]["model.hidden_dims"] == [128, 128, 128]
    # a lone integer for a list field is a list of one; null stays null
    one = parse_space(["hidden_dims=128", "decoder_hidden_dims=32,null"], base).grid_points()
    assert [p["model.decoder_hidden_dims"] for p in one] == [[32], None]
    assert one[0]["model.hidden_dims"] == [128]


def test_ranges_are_parsed_with_their_kind_and_bounds(base):
    space = parse_space(["lr=log:1e-4:1e-2", "latent_dim=int:1:4", "optim.gamma=uniform:0.5:0.9",
                         "activation=relu,tanh"], base)
    kinds = {d.key: (d.kind, d.low, d.high) for d in space.dims}
    assert kinds["lr"] == ("log", 1e-4, 1e-2)
    assert kinds["latent_dim"] == ("int", 1, 4)
    assert kinds["optim.gamma"] == ("uniform", 0.5, 0.9)
    assert default_searcher(space) == "random"
    with pytest.raises(ConfigError, match="grid needs a list"):
        space.grid_points()
    # a spec round-trips through the text it is saved as
    assert parse_space(space.specs(), base) == space


@pytest.mark.parametrize("spec, message", [
    ("lrr=1,2", "unknown search key 'lrr' (did you mean: lr"),
    ("optim.foo=1", "unknown field of optim 'foo'"),
    ("foo.bar=1", "unknown config section 'foo'"),
    ("lr", "is not KEY=V1,V2"),
    ("lr=", "is not KEY=V1,V2"),
    ("lr=-1,0.1", "optim.lr = -1.0 must be > 0"),
    ("activation=relu,swish", "model.activation = 'swish' is not one of"),
    ("lr=log:0:1", "a log range needs LO > 0"),
    ("lr=log:1e-2:1e-4", "LO must be below HI"),
    ("lr=beta:1:2", "unknown range 'beta'"),
    ("lr=log:1e-4", "a range is log:LO:HI"),
    ("lr=uniform:a:1", "'a' is not a number"),
    ("latent_dim=int:1.5:3", "must be integers"),
    ("steps=uniform:100:300", "train.steps is an integer; give its range as int:LO:HI"),
    ("hidden_dims=int:8:64", "model.hidden_dims is a list"),
    ("hidden_dims=64x,32", "model.hidden_dims must be a list"),
])
def test_a_bad_search_space_is_one_clear_error(base, spec, message):
    with pytest.raises(ConfigError) as err:
        parse_space([spec], base)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_key_searched_twice_or_also_set_by_a_flag_is_refused(base):
    with pytest.raises(ConfigError, match="sets optim.lr twice"):
        parse_space(["lr=0.1", "optim.lr=0.2"], base)
    with pytest.raises(ConfigError, match="--search lr and --lr both set optim.lr"):
        parse_space(["lr=0.1,0.2"], base, fixed={"lr": 0.5})
    with pytest.raises(ConfigError, match="--seeds N or as a searched seed"):
        parse_space(["seed=0,1"], base, seeds=2)


def test_a_data_file_is_planned_by_its_absolute_path_and_ranked_by_nll(tmp_path, monkeypatch):
    import numpy as np

    from vaelab.sweep.driver import plan_sweep

    monkeypatch.chdir(tmp_path)  # a trial runs elsewhere: the relative name must not reach it
    np.savetxt("points.csv", np.random.default_rng(0).normal(size=(200, 3)), delimiter=",")
    base = build_config("seed", settings={**TINY, "data": "points.csv"})
    plan = plan_sweep(base, ["lr=0.001,0.01"], searcher=None, trials=None, metric=None,
                      seed=0, seeds=None, early_stop=False, eval_n=100, eval_k=5,
                      max_failures=1, fixed={})
    assert plan.base["data"]["name"] == str(tmp_path / "points.csv")
    assert plan.metric == "nll" and plan.searcher == "grid" and plan.trials == 2
    with pytest.raises(ConfigError, match="--metric nll_gap needs data with a known density"):
        plan_sweep(base, ["lr=0.001"], searcher=None, trials=None, metric="nll_gap", seed=0,
                   seeds=None, early_stop=False, eval_n=100, eval_k=5, max_failures=1,
                   fixed={})


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vaelab sweep: error: ")
    return err[0]


@pytest.mark.parametrize("args, message", [
    (["--search", "lrr=1,2"], "unknown search key 'lrr'"),
    (["--search", "lr=log:1e-4:1e-2", "--searcher", "grid"], "--searcher grid needs a list"),
    (["--search", "lr=0.01,0.1", "--trials", "3"], "--trials is for sampled searches"),
    (["--search", "lr=0.01", "--lr", "0.1"], "--search lr and --lr both set optim.lr"),
    (["--search", "lr=0.01", "--data", "nope.csv"], "nope.csv"),
    ([], "--search KEY=V1,V2"),
])
def test_the_cli_refuses_a_bad_sweep_before_anything_starts(tmp_path, capsys, args, message):
    out = tmp_path / "sweep"
    assert main(["sweep", *TINY_FLAGS, "--out", str(out), *args]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_resume_takes_no_other_settings_and_needs_a_sweep(tmp_path, capsys):
    assert main(["sweep", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    assert "drop --lr" in _one_error_line(capsys)
    pytest.importorskip("ray")
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "is not a vaelab sweep" in _one_error_line(capsys)


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["sweep", *TINY_FLAGS, "--out", str(tmp_path / "s"),
                 "--search", "lr=0.01,0.1"]) == 2
    line = _one_error_line(capsys)
    assert "pip install 'vaelab[sweep]'" in line and "scripts/setup.sh --dev" in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("address, message", [
    ("nonsense", "--address 'nonsense' is not HOST:PORT"),
    ("127.0.0.1:{port}", "cannot reach the Ray cluster at 127.0.0.1:"),
])
def test_a_cluster_that_does_not_answer_is_one_error_line(tmp_path, capsys, address, message):
    pytest.importorskip("ray")
    out = tmp_path / "s"
    address = address.format(port=_free_port())  # (nothing listens there)
    assert main(["sweep", *TINY_FLAGS, "--out", str(out), "--search", "lr=0.01",
                 "--address", address]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_neither_import_vaelab_nor_the_cli_imports_ray():
    code = ("import sys, vaelab, vaelab.cli.main, vaelab.sweep.driver, vaelab.sweep.trial\n"
            "vaelab.cli.main.build_parser()\n"
            "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_the_driver_plans_a_sweep_without_importing_torch(tmp_path):
    # torch is the trials' (imported by each worker); the driver plans, talks to Ray and
    # writes the table and the report (a child process checks the base config while Ray
    # starts)
    (tmp_path / "points.csv").write_text("0,1\n1,2\n2,0\n3,1\n")
    code = ("import sys\n"
            "from vaelab.cli.main import main\n"
            "from vaelab.resolve import build_config\n"
            "from vaelab.sweep.driver import plan_sweep\n"
            "from vaelab.sweep.page import sweep_report\n"
            "from vaelab.sweep.records import write_table\n"
            "assert main(['sweep', '--steps', '10', '--search', 'lr=0.01,x', "
            "'--out', 'never']) == 2\n"
            "base = build_config('seed', settings={'steps': 10, 'data': 'points.csv'})\n"
            "plan = plan_sweep(base, ['lr=0.01,0.1', 'hidden_dims=8x8,16'], searcher=None, "
            "trials=None, metric=None, seed=0, seeds=None, early_stop=False, eval_n=10, "
            "eval_k=2, max_failures=1, fixed={})\n"
            "assert plan.metric == 'nll' and plan.trials == 4\n"
            "write_table(__import__('pathlib').Path('.'), [], ['lr'], 'nll', {})\n"
            "sweep_report(__import__('pathlib').Path('.'), [], ['lr'], 'nll', '')\n"
            "print('torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    assert not (tmp_path / "never").exists()


def test_a_base_config_no_trial_could_start_is_refused_before_the_sweep_is_written(
        tmp_path):
    from vaelab.sweep.driver import _CheckInChild, check_base, plan_sweep

    (tmp_path / "points.csv").write_text("0,1\n1,2\nnot,a number\n")
    base = build_config("seed", settings={**TINY, "data": str(tmp_path / "points.csv")})
    plan = plan_sweep(base, ["lr=0.001"], searcher=None, trials=None, metric=None, seed=0,
                      seeds=None, early_stop=False, eval_n=10, eval_k=2, max_failures=1,
                      fixed={})  # (the name is checked here, the contents next)
    with pytest.raises(VaelabError, match="points.csv"):
        check_base(plan.base)
    with pytest.raises(VaelabError, match="points.csv"):  # as the driver runs it, in a child
        _CheckInChild(plan).result()


def test_the_report_compares_the_trials_from_their_rows_and_names_the_best(tmp_path):
    from vaelab.sweep.page import sweep_report

    (tmp_path / "trial-001").mkdir()
    (tmp_path / "trial-001" / "metrics.csv").write_text(
        "step,loss,neg_elbo\n100,3.0,3.5\n200,2.0,2.5\n")
    rows = [{"trial": "trial-000", "status": "done", "lr": 0.01, "hidden_dims": [8, 8],
             "nll": 2.5, "steps": 200, "seconds": 1.0, "wall_seconds": 1.5, "node": "a"},
            {"trial": "trial-001", "status": "done", "lr": 0.1, "hidden_dims": [16],
             "nll": 2.25, "steps": 200, "seconds": 1.0, "wall_seconds": 1.5, "node": "b"},
            {"trial": "trial-002", "status": "failed", "lr": 1e6, "hidden_dims": [16],
             "reason": "training diverged <at step 3>", "node": "a"}]
    page = sweep_report(tmp_path, rows, ["lr", "hidden_dims"], "nll", "grid search").html
    assert "<b>Best: trial-001</b> (lr = 0.1, hidden_dims = 16): nll 2.2500" in page
    assert "trial-001 (best)" in page and "trial-002" in page and "16" in page
    assert "training diverged &lt;at step 3&gt;" in page  # (escaped)
    assert page.count('data-figure="vaelab-fig-') == 2  # the settings, the curves
    assert '"name": "trial-001"' in page.replace("\\u003c", "<")  # its curve


# -- one trial, in this process ------------------------------------------------------------

def _spec(tmp_path, point, name="trial-000", **kw):
    from vaelab.sweep.trial import TrialSpec

    cfg = build_config("seed", settings={**TINY, "device": "cpu", "checkpoint_every": 100})
    return TrialSpec(index=int(name[-3:]), name=name, point=point,
                     labels={k.split(".")[-1]: v for k, v in point.items()},
                     base=cfg.to_dict(), out=str(tmp_path), metric="nll", eval_n=300,
                     eval_k=10, **kw)


def test_a_trial_that_diverges_is_recorded_failed_with_its_reason(tmp_path):
    from vaelab.sweep.trial import run_trial

    reports: list[dict] = []
    row = run_trial(_spec(tmp_path, {"optim.lr": 1e6}), reports.append, "node-a")
    assert row["status"] == "failed"
    assert row["reason"].startswith("training diverged") and "\n" not in row["reason"]
    assert load_rows(tmp_path)["trial-000"]["status"] == "failed"
    assert reports[-1]["final"] and reports[-1]["status"] == "failed"


def test_a_retried_trial_continues_from_its_checkpoint(tmp_path, monkeypatch, interrupt_at):
    from vaelab.runs import load_run, train_run
    from vaelab.sweep.space import trial_config
    from vaelab.sweep.trial import run_trial

    spec = _spec(tmp_path, {"optim.lr": 0.01})
    config = trial_config(vaelab.RunConfig.from_dict(spec.base), spec.point)
    interrupt_at(monkeypatch, 100)  # the attempt a lost node left behind
    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "trial-000", progress=False, figures=False)
    monkeypatch.undo()
    row = run_trial(spec, lambda metrics: None, "node-b")
    assert row["status"] == "done" and row["steps"] == 200
    run = load_run(tmp_path / "trial-000")
    assert run.summary["resumed_from_step"] == 101  # (stopped after step 100 + 1)
    # a second start finds it complete: nothing trains again
    again = run_trial(spec, lambda metrics: None, "node-b")
    assert again["nll"] == row["nll"]
    assert load_run(tmp_path / "trial-000").summary == run.summary


def test_a_trial_of_several_seeds_is_one_group_scored_by_their_mean(tmp_path):
    from vaelab.runs import load_for_report
    from vaelab.sweep.trial import run_trial

    row = run_trial(_spec(tmp_path, {"optim.lr": 0.01}, seeds=2), lambda metrics: None, "n")
    assert row["status"] == "done"
    per_seed = row["nll_per_seed"]
    assert len(per_seed) == 2 and row["nll"] == pytest.approx(sum(per_seed) / 2)
    runs, _ = load_for_report([tmp_path / "trial-000"])  # a group of ordinary runs
    assert [r.config.train.seed for r in runs] == [0, 1]
    assert all(r.summary["threads"] == 1 for r in runs)


def test_the_score_is_what_vaelab_evaluate_reports(tiny_run_dir):
    from vaelab.evaluation import evaluate
    from vaelab.runs import load_run
    from vaelab.sweep.trial import score_run

    run = load_run(tiny_run_dir)
    saved = evaluate(run, n=400, k=20, seed=3, metrics=False)
    assert score_run(run, "nll_gap", 400, 20, 3) == pytest.approx(saved["nll_gap"], rel=1e-12)
    assert score_run(run, "nll", 400, 20, 3) == pytest.approx(saved["nll"], rel=1e-12)
    assert 0.0 <= score_run(run, "c2st", 400, 20, 3) <= 1.0


def test_the_held_out_estimate_leaves_the_training_bit_identical(tiny_config):
    from vaelab.resolve import prepare
    from vaelab.sweep.trial import HeldOutEstimate, TrialSpec
    from vaelab.training.loop import fit, watch_rows

    plain = fit(tiny_config, progress=False)
    resolved, source = prepare(tiny_config)
    reports: list[dict] = []
    spec = TrialSpec(0, "trial-000", {}, {}, {}, "", "nll", early_stop=True, report_every=50)
    with watch_rows(HeldOutEstimate(resolved, source, spec, reports.append)):
        watched = fit(tiny_config, progress=False)
    assert [r["step"] for r in reports] == [50, 100, 150]
    assert all(r["heldout_neg_elbo"] > 0 for r in reports)
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, watched.model.state_dict()[name]), name
    assert plain.metrics == [{**r, "elapsed_s": p["elapsed_s"]}
                             for r, p in zip(watched.metrics, plain.metrics, strict=True)]


def test_a_random_search_is_drawn_from_the_seed(base):
    pytest.importorskip("ray")
    from vaelab.sweep.driver import sample_points

    space = parse_space(["lr=log:1e-4:1e-2", "latent_dim=int:1:3", "hidden_dims=32,16x16"],
                        base)
    first = sample_points(space, 20, seed=3)
    assert first == sample_points(space, 20, seed=3)
    assert first != sample_points(space, 20, seed=4)
    assert all(1e-4 <= p["optim.lr"] <= 1e-2 for p in first)
    assert {p["model.latent_dim"] for p in first} <= {1, 2, 3}
    assert all(isinstance(p["model.latent_dim"], int) for p in first)
    assert {tuple(p["model.hidden_dims"]) for p in first} == {(32,), (16, 16)}


# -- a real two-node Ray cluster on the loopback address -----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the environment variable every process a test cluster starts inherits
MARKER = "VAELAB_TEST_RAY_CLUSTER"


def _live_pids(tag: str) -> list[int]:
    """Processes (not zombies) of this cluster: those whose command line contains ``tag``
    (its temp dir), whose environment holds ``MARKER=tag``, or that hold a file under it
    open (Ray renames its agents, ray::DashboardAgent, over their command line and
    environment; they keep their logs in the temp dir open)."""
    pids = []
    marker = f"{MARKER}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if state == "Z":
            continue
        if tag in cmd or marker in env or _holds_open(entry, tag):
            pids.append(int(entry.name))
    return pids


def _holds_open(proc: Path, tag: str) -> bool:
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(tag + "/"):
                return True
        except OSError:
            continue
    return False


def _ray_env(temp: str) -> dict[str, str]:
    """A child's environment for a Ray of this test's: vaelab from this tree, no auth or
    usage reports, and ``MARKER`` naming ``temp``, by which ``_live_pids`` finds what is left."""
    return {**os.environ, "PYTHONPATH": str(SRC), "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0", MARKER: temp}


class Cluster:
    """A head node and a second node, one CPU each, on 127.0.0.1, in a temp dir of its own."""

    def __init__(self) -> None:
        ray = pytest.importorskip("ray")
        self.ray_bin = str(Path(sys.executable).parent / "ray")
        self.temp = tempfile.mkdtemp(prefix="vsr", dir="/tmp")  # Ray's socket paths are short
        self.port, self.node_port = _free_port(), _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = _ray_env(self.temp)
        assert ray  # (imported for the skip)

    def start(self) -> None:
        common = ["--num-cpus=1", f"--temp-dir={self.temp}", "--node-ip-address=127.0.0.1"]
        self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false",
                  "--disable-usage-stats", *common)
        self._ray("start", f"--address={self.address}",
                  f"--node-manager-port={self.node_port}", *common)

    def _ray(self, *args: str) -> None:
        done = subprocess.run([self.ray_bin, *args], env=self.env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]

    def sweep(self, out: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "vaelab", "sweep", "--out", str(out),
                                 "--address", self.address, *args],
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def kill_second_node(self) -> None:
        """SIGKILL the second node's raylet (its workers die with it): a node lost."""
        pids = _live_pids(f"--node_manager_port={self.node_port}")
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGKILL every process of this cluster and the sweeps it ran (by its temp dir in
        their command line or environment: never another Ray on this machine), until none
        is left."""
        for _ in range(50):
            pids = _live_pids(self.temp)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        assert not _live_pids(self.temp), "a Ray process of the test was left running"
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    return out


def _table(out: Path) -> list[dict]:
    import csv

    with open(out / "sweep.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_sweep_on_a_two_node_cluster_uses_both_nodes(cluster, tmp_path):
    # with --early-stop every trial has a worker of its own, so the two trials are placed
    # at once, one on each node (a reused worker could run both on one node)
    out = tmp_path / "sweep"
    text = _finish(cluster.sweep(out, *TINY_FLAGS, "--search", "lr=0.01,1e6",
                                 "--search", "hidden_dims=32x32", "--early-stop"))
    rows = _table(out)
    assert [(r["trial"], r["lr"], r["hidden_dims"]) for r in rows] == [
        ("trial-000", "0.01", "32x32"), ("trial-001", "1000000.0", "32x32")]
    assert len({r["node"] for r in rows}) == 2  # both nodes ran trials
    good, bad = rows
    assert bad["status"] == "failed" and bad["reason"].startswith("training diverged")
    assert good["status"] == "done"  # the other went on
    run = vaelab.load(out / "trial-000")  # an ordinary, loadable run, scored
    assert run.summary["steps"] == int(good["steps"]) == 200
    assert float(good["nll_gap"]) > 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["best"] == "trial-000" and len(summary["trials"]) == 2
    assert "best: trial-000" in text
    assert (out / "report.html").stat().st_size > 0
    assert "Traceback" not in text


@pytest.mark.slow
def test_resume_after_a_killed_driver_repeats_no_finished_trial(cluster, tmp_path):
    out = tmp_path / "sweep"
    args = [*TINY_FLAGS, "--steps", "1500", "--checkpoint-every", "100",
            "--search", "lr=0.002,0.004,0.006,0.008,0.01,0.012"]
    proc = cluster.sweep(out, *args)
    deadline = time.monotonic() + 240
    while len(load_rows(out)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate()
    before = load_rows(out)
    assert 2 <= len(before) < 6
    stamps = {name: (out / name / "model.safetensors").stat().st_mtime_ns for name in before}
    text = _finish(subprocess.Popen(
        [sys.executable, "-m", "vaelab", "sweep", "--resume", str(out), "--address",
         cluster.address], env=cluster.env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
    assert f"resuming {out}" in text
    rows = _table(out)
    assert [r["trial"] for r in rows] == [f"trial-00{i}" for i in range(6)]
    assert all(r["status"] == "done" for r in rows)
    for name, row in before.items():  # the finished trials were not run again
        assert f"{name} done" not in text
        assert (out / name / "model.safetensors").stat().st_mtime_ns == stamps[name]
        assert load_rows(out)[name] == row


@pytest.mark.slow
def test_losing_a_node_mid_sweep_still_completes_it(cluster, tmp_path):
    out = tmp_path / "sweep"
    proc = cluster.sweep(out, *TINY_FLAGS, "--steps", "3000", "--checkpoint-every", "100",
                         "--search", "lr=0.003,0.01", "--search", "hidden_dims=32x32,64")
    deadline = time.monotonic() + 240
    # both nodes are training (two trials have checkpoints) when the second is lost
    while time.monotonic() < deadline and proc.poll() is None and sum(
            (out / f"trial-00{i}" / "checkpoint.safetensors").is_file()
            for i in range(4)) < 2:
        time.sleep(0.2)
    cluster.kill_second_node()
    _finish(proc)
    rows = _table(out)
    assert [r["trial"] for r in rows] == [f"trial-00{i}" for i in range(4)]
    assert all(r["status"] == "done" for r in rows), rows
    for r in rows:
        assert vaelab.load(out / r["trial"]).summary["steps"] == 3000


@pytest.fixture
def local_ray_env():
    """The environment of a child that starts its own Ray on this machine: Ray's temp root
    (``RAY_TMPDIR``) a folder of this test's, no cluster address inherited. Whatever of
    that Ray is still alive afterwards is killed (the code under test shuts its Ray down;
    this is a backstop) and the folder removed."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="vsl", dir="/tmp")  # Ray's socket paths are short
    env = {**_ray_env(temp), "RAY_TMPDIR": temp}
    env.pop("RAY_ADDRESS", None)
    yield env
    for pid in _live_pids(temp):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_tpe_search_with_early_stopping_on_this_machine(tmp_path, local_ray_env):
    pytest.importorskip("optuna")
    out = tmp_path / "sweep"
    text = _finish(subprocess.Popen(
        [sys.executable, "-m", "vaelab", "sweep", *TINY_FLAGS, "--steps", "400",
         "--search", "lr=log:1e-4:3e-2", "--search", "hidden_dims=16,64x64",
         "--searcher", "tpe", "--trials", "6", "--early-stop", "--out", str(out)],
        env=local_ray_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    assert "on this machine" in text
    rows = _table(out)
    assert [r["trial"] for r in rows] == [f"trial-00{i}" for i in range(6)]
    assert {r["status"] for r in rows} <= {"done", "stopped"}
    for r in rows:
        assert 1e-4 <= float(r["lr"]) <= 3e-2 and r["hidden_dims"] in ("16", "64x64")
        if r["status"] == "done":
            assert int(r["steps"]) == 400 and float(r["nll_gap"]) > 0
        else:  # stopped by ASHA at a held-out estimate, before the end
            assert int(r["steps"]) < 400 and "ASHA" in r["reason"]
    assert "best: trial-00" in text


LEAN_HEAD = """
import os, pathlib, ray
from ray._private.node import Node
from vaelab.sweep.driver import _lean_head
api, monitor = Node.start_api_server, Node.start_monitor
with _lean_head(False):
    assert Node.start_api_server is api and Node.start_monitor is monitor
with _lean_head(True):
    assert Node.start_api_server is not api and Node.start_monitor is not monitor
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
assert Node.start_api_server is api and Node.start_monitor is monitor
print(ray.get(ray.remote(lambda: 6 * 7).remote()))
procs = {}
for entry in pathlib.Path("/proc").iterdir():
    try:
        parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        procs[int(entry.name)] = (parent, (entry / "cmdline").read_bytes().replace(b"\\0", b" "))
    except (ValueError, OSError):
        continue
ours = {os.getpid()}
for _ in range(4):  # children, grandchildren, ...
    ours |= {pid for pid, (parent, _) in procs.items() if parent in ours}
print(*(procs[pid][1].decode() for pid in ours - {os.getpid()}), sep="\\n")
ray.shutdown()
"""


def test_a_local_ray_starts_without_the_helpers_a_sweep_does_not_use(local_ray_env):
    """A sweep's own Ray leaves out the API server and the autoscaler's monitor, runs tasks
    without them, and Ray's methods are as they were afterwards."""
    text = _finish(subprocess.Popen([sys.executable, "-c", LEAN_HEAD], env=local_ray_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True), timeout=120)
    lines = text.splitlines()
    assert "42" in lines, text
    assert any("raylet" in line for line in lines), text  # the children were listed
    assert not any("dashboard/dashboard.py" in line or "/autoscaler/" in line
                   for line in lines), text
