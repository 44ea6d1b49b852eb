"""The sweep's driver: plan the trials, run them on Ray Tune, write the table and report.

Ray Tune schedules every trial (one CPU each, so one trial per core and no
oversubscription), retries a trial whose worker or node was lost
(``FailureConfig(max_failures)``; the trial continues from its vaelab checkpoint), stops
poor trials early with ASHA on a held-out estimate, and suggests settings with Optuna's TPE
(``OptunaSearch``). A grid's and a random search's trials are planned when the sweep starts
(the random ones drawn with Ray Tune's samplers, seeded by ``--seed``) and saved with its
settings, so a sweep whose driver was killed resumes exactly its unfinished trials; a TPE
search resumes with its finished trials told to Optuna as evaluated points.

Without an address Ray starts on this machine, with its cores; ``--address HOST:PORT`` (or
``RAY_ADDRESS``) joins a running cluster, whose nodes must have vaelab installed and see
``DIR`` at the same path (a shared file system): every trial writes its run directory there.

The driver imports no torch: only the trials need it, and each of Ray's workers imports it
once. What the driver does beside Ray's start (checking the base config against its data,
in a child process; importing Ray Tune) runs while Ray starts, not before it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaelab.config import RunConfig
from vaelab.errors import ConfigError, RunError, VaelabError
from vaelab.sweep.records import (
    METRICS,
    ROWS_DIR,
    SCORE,
    SETTINGS_FILE,
    TrialSpec,
    best_row,
    load_rows,
    load_settings,
    save_row,
    save_settings,
    trial_name,
    write_table,
)
from vaelab.sweep.space import SEARCHERS, Dimension, SearchSpace, format_value, parse_space

#: how to get what ``vaelab sweep`` needs, in the one line it prints when it is missing
INSTALL_HINT = ("vaelab sweep needs Ray Tune and Optuna: pip install 'vaelab[sweep]' "
                "(in a checkout: bash scripts/setup.sh --dev)")
#: trials run by default by a random or TPE search
DEFAULT_TRIALS = 10
#: held-out estimates per trial for early stopping (about)
REPORTS_PER_TRIAL = 8


@dataclass
class SweepSettings:
    """A sweep as it started (saved as ``DIR/sweep-settings.json``)."""

    base: dict[str, Any]
    specs: list[str]
    searcher: str
    trials: int
    metric: str
    seed: int = 0
    seeds: int | None = None
    early_stop: bool = False
    eval_n: int = 2000
    eval_k: int = 100
    max_failures: int = 3
    points: list[dict[str, Any]] | None = None  # planned trials (grid, random)
    fixed: dict[str, Any] = field(default_factory=dict)


def require_ray() -> None:
    """A VaelabError (one line: how to install them) if Ray Tune or Optuna is missing
    (looked up, not imported: Ray is imported once, while it starts)."""
    from importlib.util import find_spec

    try:
        found = all(find_spec(name) is not None for name in ("ray", "optuna"))
        found = found and find_spec("ray.tune") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise VaelabError(INSTALL_HINT)


def check_address(address: str | None) -> None:
    """A VaelabError at once if the cluster at ``address`` (``HOST:PORT``; ``RAY_ADDRESS``
    when None) does not answer: Ray itself would retry for minutes."""
    import socket

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or "://" in address or address in ("auto", "local"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise VaelabError(f"--address {address!r} is not HOST:PORT, e.g. 10.0.0.1:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise VaelabError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None


def plan_sweep(base: RunConfig, specs: list[str], *, searcher: str | None, trials: int | None,
               metric: str | None, seed: int, seeds: int | None, early_stop: bool,
               eval_n: int, eval_k: int, max_failures: int,
               fixed: dict[str, Any]) -> SweepSettings:
    """Check the search space, the flags and the data's name, and plan the trials; nothing
    is started, and no torch is imported (:func:`check_base` checks the rest, which needs
    it, while Ray starts)."""
    from vaelab.data.registry import check_data_name

    space = parse_space(specs, base, fixed=fixed, seeds=seeds)
    searcher = searcher or ("grid" if space.is_grid else "random")
    if searcher not in SEARCHERS:
        raise ConfigError(f"unknown searcher {searcher!r} (valid: {', '.join(SEARCHERS)})")
    if searcher == "grid":
        if not space.is_grid:
            ranged = next(d for d in space.dims if d.kind != "grid")
            raise ConfigError(f"--searcher grid needs a list of values for every key, and "
                              f"{ranged.key} has a range: use --searcher random or tpe")
        if trials is not None:
            raise ConfigError("--trials is for sampled searches (random, tpe); a grid runs "
                              "every combination once")
    base.validate()
    # a data file by its absolute path: a trial runs in another directory, or on another node
    name, has_density = check_data_name(base.data.name)
    base = dataclasses.replace(base, data=dataclasses.replace(base.data, name=name))
    if metric is None:
        metric = "nll_gap" if has_density else "nll"
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} (valid: {', '.join(METRICS)})")
    if metric == "nll_gap" and not has_density:
        raise ConfigError(f"--metric nll_gap needs data with a known density; "
                          f"{base.data.name} has none (use --metric nll or c2st)")
    if early_stop and base.train.steps is None:
        raise ConfigError("--early-stop compares trials at fixed steps: give --steps")
    settings = SweepSettings(base=base.to_dict(), specs=space.specs(), searcher=searcher,
                             trials=trials or DEFAULT_TRIALS, metric=metric, seed=seed,
                             seeds=seeds, early_stop=early_stop, eval_n=eval_n, eval_k=eval_k,
                             max_failures=max_failures, fixed=fixed)
    if searcher == "grid":
        settings.points = space.grid_points()
        settings.trials = len(settings.points)
    elif searcher == "random":
        require_ray()  # (drawn with Ray Tune's samplers)
        settings.points = sample_points(space, settings.trials, seed)
    return settings


def check_base(base: dict[str, Any]) -> None:
    """The base config (as a dict: :attr:`SweepSettings.base`) resolved against its data, as
    a run starting would (the data file read, the device, the model and the step plan
    checked): a VaelabError if no trial could start. Imports torch: :func:`start` runs it in
    a child process while Ray starts."""
    from vaelab.resolve import prepare

    prepare(RunConfig.from_dict(base))


class _CheckInChild:
    """:func:`check_base` in a child process from now on, so that this one never imports
    torch (nor waits for it to unload at exit); :meth:`result` raises its error line."""

    def __init__(self, settings: SweepSettings) -> None:
        import subprocess

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [_vaelab_src(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from vaelab.sweep.driver import _check_main; _check_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(settings.base))  # (a few kB: the pipe holds it)
        self.proc.stdin.close()

    def result(self) -> None:
        err = self.proc.stderr.read() if self.proc.stderr is not None else ""
        self.proc.wait()
        if self.proc.returncode:
            lines = err.strip().splitlines()
            raise VaelabError(lines[-1] if lines else f"checking the base config failed "
                              f"(exit status {self.proc.returncode})")


def _check_main() -> None:
    """The child of :class:`_CheckInChild`: the base config on stdin; exit 2 with the
    error line on stderr where no trial could start."""
    code = 0
    try:
        check_base(json.loads(sys.stdin.read()))
    except VaelabError as exc:
        print(exc, file=sys.stderr)
        code = 2
    except Exception as exc:  # noqa: BLE001 - one line for the driver, whatever it was
        print(f"{type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        code = 1
    sys.stderr.flush()
    os._exit(code)  # (unloading torch, at exit, only costs time)


def _space_of(settings: SweepSettings) -> SearchSpace:
    return parse_space(settings.specs, RunConfig.from_dict(settings.base),
                       fixed=settings.fixed, seeds=settings.seeds)


def _domain(dim: Dimension) -> Any:
    """Ray Tune's sampler for ``dim``; a list is sampled by the index of its value (Optuna's
    categorical choices must be plain scalars, and a value may be a list)."""
    from ray import tune

    if dim.kind == "grid":
        return tune.choice(list(range(len(dim.values))))
    if dim.kind == "log":
        return tune.loguniform(dim.low, dim.high)
    if dim.kind == "int":
        return tune.randint(int(dim.low), int(dim.high) + 1)
    return tune.uniform(dim.low, dim.high)


def _decode(dim: Dimension, drawn: Any) -> Any:
    if dim.kind == "grid":
        return dim.values[int(drawn)]
    return int(drawn) if dim.kind == "int" else float(drawn)


def sample_points(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` random settings drawn with Ray Tune's samplers from a generator seeded by
    ``seed``: the same seed, the same trials."""
    import numpy as np

    rng = np.random.RandomState(seed)
    domains = [_domain(d) for d in space.dims]
    return [{d.path: _decode(d, dom.sample(random_state=rng))
             for d, dom in zip(space.dims, domains, strict=True)} for _ in range(count)]


def _labels(space: SearchSpace, point: dict[str, Any]) -> dict[str, Any]:
    return {d.key: point[d.path] for d in space.dims}


def _describe(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in labels.items())


def start(out: Path, settings: SweepSettings, address: str | None) -> int:
    """Start the planned sweep in ``out`` (refused if ``out`` holds anything).

    Ray starts while a child process checks the base config (:func:`check_base`, which
    imports torch, as this process does not). A config no trial could start with stops Ray
    again, before ``out`` is created."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        hint = (f"continue it with --resume {out}" if (out / SETTINGS_FILE).is_file()
                else "choose another --out")
        raise RunError(f"{out} is not empty: {hint}")
    check = _CheckInChild(settings)

    def create() -> None:
        check.result()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create {out}: {exc.strerror or exc}") from None
        save_settings(out, asdict(settings))

    return execute(out.resolve(), settings, address, before=create)


class _Background:
    """``fn(*args)`` in a thread from now on; :meth:`result` waits and raises what it
    raised."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self.error = exc

    def result(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


def resume(out: Path, address: str | None) -> int:
    """Continue the sweep in ``out``: only its unfinished trials run."""
    data = load_settings(out)
    data.pop("format", None)
    try:
        settings = SweepSettings(**data)
    except TypeError as exc:
        raise RunError(f"{out / SETTINGS_FILE} does not hold a sweep's settings: {exc}") from None
    _space_of(settings)  # still a valid space for this vaelab
    return execute(out.resolve(), settings, address)


def execute(out: Path, settings: SweepSettings, address: str | None,
            before: Callable[[], None] | None = None) -> int:
    """Run the sweep's unfinished trials on Ray Tune, then write its table and report.
    ``before``: run once Ray has started, before any trial (its error stops Ray and the
    sweep)."""
    space = _space_of(settings)
    rows = load_rows(out)
    base = RunConfig.from_dict(settings.base)
    if settings.points is not None:
        pending = [i for i in range(len(settings.points)) if trial_name(i) not in rows]
        count = len(pending)
    else:
        pending = []
        count = max(0, settings.trials - len(rows))
    if rows:
        print(f"resuming {out}: {len(rows)} trials finished, {count} to run")
    if count:
        _run_on_ray(out, settings, space, base, rows, pending, count, address, before)
    elif before is not None:
        before()
    return finish(out, settings, space)


def _report_every(base: RunConfig) -> int:
    steps, every = base.train.steps or 0, base.train.log_every
    return max(every, math.ceil(steps / REPORTS_PER_TRIAL / every) * every)


def _run_on_ray(out: Path, settings: SweepSettings, space: SearchSpace, base: RunConfig,
                rows: dict[str, dict[str, Any]], pending: list[int], count: int,
                address: str | None, before: Callable[[], None] | None) -> None:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no per-trial logs
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    # Ray Tune (and Optuna, ASHA) are imported while Ray starts, which mostly waits
    tune_imported = _Background(_import_tune, settings)
    _quiet_logs()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        _export_vaelab_path()  # local workers import this vaelab
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # and each uses one thread
    # Ray's own start prestarts idle workers, which no trial can use (Ray starts a worker
    # of its own for each trial's actor): not on a machine whose every core the trials need
    system = None if address else {"prestart_worker_first_driver": False,
                                   "enable_worker_prestart": False}
    try:
        with _lean_head(address is None):
            ray.init(address=address or "local", num_cpus=None if address else os.cpu_count(),
                     include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     configure_logging=True, _system_config=system)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("" if not address or os.environ.get("RAY_AUTH_MODE") == "disabled" else
                "; a cluster started with Ray's token authentication (its default) needs its "
                "token in this shell, or RAY_AUTH_MODE=disabled for both on a trusted network")
        raise VaelabError(f"cannot join the Ray cluster at {address}: {first}{hint}") from None
    try:
        if before is not None:
            before()
        try:
            tune = tune_imported.result()
        except ImportError:  # (an import beside ray.init's own that Python's import locks
            tune = _import_tune(settings)  # turned down: once more, now alone)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        where = f"the Ray cluster at {address}" if address else "this machine"
        print(f"sweep: {count} trials ({settings.searcher}, {settings.metric}) on {where}, "
              f"{cpus} at a time; into {out}", flush=True)
        names = _Names(rows, settings.points is not None)
        report_every = _report_every(base) if settings.early_stop else 0
        trainable = _trainable(out, settings, space, report_every)
        param_space, search_alg = _search(settings, space, rows, pending)
        scheduler = None
        if settings.early_stop:
            from ray.tune.schedulers import ASHAScheduler

            reports = max(1, (base.train.steps or 0) // report_every)
            scheduler = ASHAScheduler(metric=SCORE, mode="min", max_t=reports + 2,
                                      grace_period=max(1, reports // 4), reduction_factor=2)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                num_samples=1 if settings.points is not None else count,
                search_alg=search_alg, scheduler=scheduler,
                # a worker imports torch and vaelab once for all its trials; with early
                # stopping each trial has its own, which ends when ASHA stops the trial
                reuse_actors=not settings.early_stop,
                trial_name_creator=names, trial_dirname_creator=names),
            run_config=tune.RunConfig(
                name=f"ray-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(out / ".ray"),
                verbose=0, log_to_file=True,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                callbacks=[_progress(out, settings, names)]))
        # (a trial Ray neither completed nor failed, as on Ctrl-C, gets no row: --resume
        # runs it)
        tuner.fit()
    finally:
        ray.shutdown()


@contextmanager
def _lean_head(local: bool) -> Iterator[None]:
    """Within: a Ray started on this machine leaves out two helper processes a sweep does
    not use, the API server (with the dashboard off it serves usage statistics only; Ray's
    start waits for it to come up) and the autoscaler's monitor (a one-machine cluster never
    scales). Hand-written because ``ray.init`` has no option for either (``ray start`` has
    ``--no-monitor`` only); a Ray whose node lacks these methods starts as it does."""
    try:
        from ray._private.node import Node
    except ImportError:
        Node = None  # noqa: N806
    names = ("start_api_server", "start_monitor")
    if not local or Node is None or not all(hasattr(Node, n) for n in names):
        yield
        return
    saved = {n: Node.__dict__.get(n) for n in names}

    def no_api_server(node: Any, **_: Any) -> None:
        node._webui_url = None

    def no_monitor(node: Any) -> None:
        return None

    Node.start_api_server, Node.start_monitor = no_api_server, no_monitor
    try:
        yield
    finally:
        for name, method in saved.items():
            if method is None:
                delattr(Node, name)
            else:
                setattr(Node, name, method)


def _import_tune(settings: SweepSettings) -> Any:
    """``ray.tune``, with what this sweep uses of it imported.

    Ray Tune gives each trial's actor an environment variable for PyTorch Lightning
    (``PL_DISABLE_FORK``), which vaelab does not use; an actor with environment variables
    of its own starts through Ray's runtime-environment set-up, a second Python start, so
    the variable is dropped (where this Ray Tune has it)."""
    from ray import tune

    try:
        from ray.tune.execution import class_cache

        class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)
    except (ImportError, AttributeError):  # another Ray: its actors start as it starts them
        pass

    if settings.points is None:
        import optuna
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    if settings.early_stop:
        from ray.tune.schedulers import ASHAScheduler  # noqa: F401
    return tune


def _quiet_logs() -> None:
    for name in ("ray", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("ray.tune", "ray.train", "ray.air"):  # a failed trial gets vaelab's line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    import warnings

    warnings.filterwarnings("ignore", module="ray")


def _export_vaelab_path() -> None:
    """Put the directory this vaelab is imported from on PYTHONPATH, for Ray's local
    workers (an installed vaelab is found there anyway; a checkout's ``src`` is not)."""
    src = _vaelab_src()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([src, *paths])


def _vaelab_src() -> str:
    """The directory this vaelab is imported from."""
    import vaelab.sweep as pkg

    return str(Path(pkg.__file__).resolve().parents[2])


class _Names:
    """Each Ray trial's name (and directory name), from the trial alone, so that every copy
    of this object (Ray pickles the tuner's) names a trial alike: ``trial-NNN`` by its
    planned index, or for a searcher's n-th trial (Ray Tune numbers them in its experiment
    tag) the n-th index that no finished trial holds."""

    def __init__(self, rows: dict[str, dict[str, Any]], planned: bool) -> None:
        self.taken, self.planned = sorted(rows), planned

    def __call__(self, trial: Any) -> str:
        if self.planned:
            return trial_name(int(trial.config["index"]))
        number = int(str(trial.experiment_tag).split("_", 1)[0])  # 1, 2, ...
        index, free = -1, 0
        while free < number:
            index += 1
            free += trial_name(index) not in self.taken
        return trial_name(index)


def _search(settings: SweepSettings, space: SearchSpace, rows: dict[str, dict[str, Any]],
            pending: list[int]) -> tuple[dict[str, Any], Any]:
    """Ray Tune's param space and search algorithm: the planned trials by index (a grid, a
    random search), or Optuna's TPE over the space, told the finished trials' results."""
    from ray import tune

    if settings.points is not None:
        return {"index": tune.grid_search(pending)}, None
    from ray.tune.search.optuna import OptunaSearch

    param_space = {f"p{i}": _domain(d) for i, d in enumerate(space.dims)}
    done = [r for r in rows.values() if r.get("status") == "done"
            and isinstance(r.get(settings.metric), int | float)]
    points, rewards = [], []
    for row in done:
        try:
            points.append({f"p{i}": _encode(d, row[d.key]) for i, d in enumerate(space.dims)})
        except (KeyError, ValueError):
            continue
        rewards.append(row[settings.metric])
    # resumed, TPE knows the finished trials; its sampler is seeded on from them, or its
    # first (random) draws would repeat theirs
    searcher = OptunaSearch(metric=SCORE, mode="min", seed=settings.seed + len(rows),
                            points_to_evaluate=points or None,
                            evaluated_rewards=rewards or None)
    return param_space, searcher


def _encode(dim: Dimension, value: Any) -> Any:
    return dim.values.index(value) if dim.kind == "grid" else value


def _trainable(out: Path, settings: SweepSettings, space: SearchSpace,
               report_every: int) -> Any:
    """The function Ray Tune runs for each trial (on a worker): build the trial's spec from
    its Ray config and name, and run it (:func:`vaelab.sweep.trial.run_trial`)."""
    points, dims = settings.points, space.dims
    common = {"base": settings.base, "out": str(out), "metric": settings.metric,
              "seeds": settings.seeds, "eval_n": settings.eval_n, "eval_k": settings.eval_k,
              "eval_seed": settings.seed, "early_stop": settings.early_stop,
              "report_every": report_every}

    def trainable(config: dict[str, Any]) -> None:
        import ray
        from ray import tune

        from vaelab.sweep.trial import run_trial

        name = tune.get_context().get_trial_name()
        index = int(name.rsplit("-", 1)[1])
        if points is not None:
            point = points[int(config["index"])]
        else:
            point = {d.path: _decode(d, config[f"p{i}"]) for i, d in enumerate(dims)}
        labels = {d.key: point[d.path] for d in dims}
        node = f"{ray.util.get_node_ip_address()}:{ray.get_runtime_context().get_node_id()[:8]}"
        spec = TrialSpec(index=index, name=name, point=point, labels=labels, **common)
        said = {"node": node, "labels": json.dumps(labels, default=str)}
        run_trial(spec, lambda metrics: tune.report({**metrics, **said}), node)

    return trainable


def _lost_row(name: str, metrics: dict[str, Any], error: Any) -> dict[str, Any]:
    """The row of a trial that recorded none itself: stopped early by ASHA, or lost."""
    digits = name.rsplit("-", 1)[-1]
    row: dict[str, Any] = {"trial": name, "index": int(digits) if digits.isdigit() else -1,
                           "node": metrics.get("node") or metrics.get("node_ip"),
                           "path": name, "steps": metrics.get("step")}
    try:
        row.update(json.loads(metrics.get("labels") or "{}"))
    except ValueError:
        pass
    if error is not None:
        text = str(error).strip().splitlines()
        row.update(status="failed", reason=text[-1] if text else type(error).__name__)
    else:
        row.update(status="stopped", reason=f"stopped early (ASHA) at step {row['steps']}, "
                   f"held-out -ELBO {metrics.get('heldout_neg_elbo', float('nan')):.4f}")
    return row


def _progress(out: Path, settings: SweepSettings, names: _Names) -> Any:
    """A Ray Tune callback: one line per finished trial, and the row of a trial stopped
    early or lost (which the trial could not write itself) recorded at once."""
    from ray.tune import Callback

    class Progress(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            self._finished(trial, failed=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any,
                           **info: Any) -> None:
            self._finished(trial, failed=True)

        def _finished(self, trial: Any, failed: bool) -> None:
            name = names(trial)
            row = load_rows(out).get(name)
            if row is None:
                row = _lost_row(name, trial.last_result or {},
                                _error_text(trial) if failed else None)
                save_row(out, row)
            print(_line(row, settings.metric), flush=True)

    return Progress()


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text(encoding="utf-8") if path else "the trial's worker failed"
    except OSError:
        return "the trial's worker failed"


def _line(row: dict[str, Any], metric: str) -> str:
    keys = {k: v for k, v in row.items() if k not in _ROW_KEYS and not k.startswith(metric)}
    what = f"({_describe(keys)})" if keys else ""
    if row["status"] == "done":
        return (f"{row['trial']} done: {metric} {row[metric]:.4f} {what} in "
                f"{row.get('wall_seconds', 0):.1f} s on {row.get('node')}")
    return f"{row['trial']} {row['status']}: {row.get('reason')} {what}"


_ROW_KEYS = {"trial", "index", "status", "reason", "node", "path", "steps", "seconds",
             "wall_seconds", "started", "ended"}


def finish(out: Path, settings: SweepSettings, space: SearchSpace) -> int:
    """Write ``sweep.csv``, ``sweep.json`` and ``report.html``; name the best trial."""
    rows = sorted(load_rows(out).values(), key=lambda r: r.get("index", 0))
    keys = [d.key for d in space.dims]
    write_table(out, rows, keys, settings.metric,
                {"searcher": settings.searcher, "search": settings.specs,
                 "seeds": settings.seeds, "seed": settings.seed})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "stopped")}
    print(f"{len(rows)} trials: {counts['done']} done, {counts['failed']} failed, "
          f"{counts['stopped']} stopped; table: {out / 'sweep.csv'}")
    if rows:
        _write_report(out, rows, keys, settings)
    best = best_row(rows, settings.metric)
    if best is not None:
        print(f"best: {best['trial']} ({_describe({k: best.get(k) for k in keys})}): "
              f"{settings.metric} {best[settings.metric]:.4f} -> {out / best['trial']}")
    unfinished = settings.trials - len(rows)
    if unfinished > 0:
        print(f"vaelab sweep: {unfinished} trials unfinished; continue with: vaelab sweep "
              f"--resume {out}", file=sys.stderr)
        return 1
    if best is None:
        print("vaelab sweep: no trial finished", file=sys.stderr)
        return 1
    return 0


def _write_report(out: Path, rows: list[dict[str, Any]], keys: list[str],
                  settings: SweepSettings) -> None:
    """``report.html`` from the rows and the trials' curves (:mod:`vaelab.sweep.page`)."""
    from vaelab.sweep.page import sweep_report

    base = settings.base
    about = (f"{settings.searcher} search over {', '.join(settings.specs)}"
             + (f", {settings.seeds} seeds each" if settings.seeds else "")
             + f" · preset {base.get('preset') or 'custom'}, data {base['data']['name']}")
    try:
        report = sweep_report(out, rows, keys, settings.metric, about)
        print(f"report: {report.save(out / 'report.html')} ({report.size / 1e6:.1f} MB)")
    except (VaelabError, OSError) as exc:
        print(f"note: no report.html: {exc}", file=sys.stderr)


__all__ = ["INSTALL_HINT", "ROWS_DIR", "SweepSettings", "check_address", "execute",
           "plan_sweep",
           "require_ray", "resume", "sample_points", "start"]
