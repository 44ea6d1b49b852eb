"""One trial of a sweep: train its settings into an ordinary run directory, score it.

Runs inside a Ray Tune worker, but imports no Ray: the driver hands it ``report`` (Ray
Tune's) and the node's name. A trial continues its own run from the vaelab checkpoint
where one with its config is there (a trial retried after its node was lost, or a sweep
resumed after its driver was killed), and starts afresh otherwise. A trial that fails
(diverges, or any error) is recorded with its one-line reason instead of raising, so that
the sweep goes on and Ray does not retry a failure that would repeat.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from vaelab.config import RunConfig
from vaelab.errors import ConfigError, VaelabError
from vaelab.groups import seed_group
from vaelab.models import BaseVAE
from vaelab.runs import (
    CONFIG_FILE,
    MODEL_FILE,
    SUMMARY_FILE,
    Run,
    load_run,
    read_group_file,
    resume_group,
    resume_run,
    train_group,
    train_run,
)
from vaelab.sweep.records import SCORE, TrialSpec, save_row
from vaelab.sweep.space import trial_config
from vaelab.training.checkpoint import CHECKPOINT_FILE, GROUP_CHECKPOINT_FILE

Report = Callable[[dict[str, Any]], None]


def run_trial(spec: TrialSpec, report: Report, node: str) -> dict[str, Any]:
    """Train, score and record ``spec``'s trial; its row (status ``done`` or ``failed``)."""
    t0, started = time.perf_counter(), time.time()
    torch.set_num_threads(1)  # one trial per core: no oversubscription
    path = Path(spec.out) / spec.name
    row: dict[str, Any] = {"trial": spec.name, "index": spec.index, **spec.labels,
                           "node": node, "path": spec.name}
    try:
        config = trial_config(RunConfig.from_dict(spec.base), spec.point)
        configs = seed_group(config, spec.seeds) if spec.seeds else [config]
        runs = _train(configs, path, spec, report)
        values = [score_run(r, spec.metric, spec.eval_n, spec.eval_k, spec.eval_seed)
                  for r in runs]
        value = sum(values) / len(values)
        summary = runs[0].summary
        row.update(status="done", steps=summary.get("steps"),
                   seconds=summary.get("train_seconds"))
        row[spec.metric] = value
        if len(values) > 1:
            row[f"{spec.metric}_per_seed"] = values
    except Exception as exc:  # noqa: BLE001 - any failure is this trial's row, not the sweep's
        if type(exc).__module__.startswith("ray"):
            raise  # Ray's own (the trial being stopped): not a failure of the trial
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not isinstance(exc, VaelabError):
            reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        row.update(status="failed", reason=reason)
    row["wall_seconds"] = round(time.perf_counter() - t0, 3)
    # when it started and ended (Unix time, sweep.json only): where a sweep's time went
    row["started"], row["ended"] = round(started, 3), round(started + row["wall_seconds"], 3)
    save_row(Path(spec.out), row)
    score = row.get(spec.metric, math.nan) if row["status"] == "done" else math.nan
    report({SCORE: score, "final": True, "status": row["status"], "trial": spec.name})
    return row


def _train(configs: list[RunConfig], path: Path, spec: TrialSpec, report: Report) -> list[Run]:
    """The trial's runs: continued from its checkpoint, loaded if complete, else trained."""
    from vaelab.resolve import prepare

    resolved = [prepare(c) for c in configs]
    watch = (HeldOutEstimate(resolved[0][0], resolved[0][1], spec, report)
             if spec.early_stop and spec.report_every else None)
    group = spec.seeds is not None
    wait_unlocked(path)
    state = _state(path, [r.to_json() for r, _ in resolved], group)
    with _watching(watch):
        if state == "complete":
            return _load(path, group)
        if state == "resumable":
            if group:
                return resume_group(path, progress=False, figures=False)
            return [resume_run(path, progress=False, figures=False)]
        if group:
            return train_group(configs, path, force=True, progress=False, figures=False)
        return [train_run(configs[0], path, force=True, progress=False, figures=False)]


def wait_unlocked(path: Path, timeout: float = 120.0) -> None:
    """Wait until no process holds the write lock of ``path`` (:mod:`vaelab.locks`): the
    worker of a killed driver's or a lost attempt's trial may still be ending when the trial
    is started again. Past ``timeout`` the train itself names the holder."""
    import fcntl

    from vaelab.locks import LOCK_FILE

    if not (path / LOCK_FILE).is_file():
        return
    deadline = time.monotonic() + timeout
    fd = os.open(path / LOCK_FILE, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.5)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
    finally:
        os.close(fd)


def _watching(watch: HeldOutEstimate | None) -> Any:
    if watch is None:
        return nullcontext()
    from vaelab.training.loop import watch_rows

    return watch_rows(watch)


def _state(path: Path, configs_json: list[str], group: bool) -> str:
    """``complete``, ``resumable`` (a checkpoint of these configs), or ``new``."""
    try:
        dirs = [path / n for n in read_group_file(path)] if group else [path]
        saved = [(d / CONFIG_FILE).read_text(encoding="utf-8") for d in dirs]
    except (OSError, VaelabError, UnicodeDecodeError):
        return "new"
    if saved != configs_json:  # another trial's settings (a resumed TPE search): retrain
        return "new"
    if all((d / MODEL_FILE).is_file() and (d / SUMMARY_FILE).is_file() for d in dirs):
        return "complete"
    ckpt = path / (GROUP_CHECKPOINT_FILE if group else CHECKPOINT_FILE)
    return "resumable" if ckpt.is_file() else "new"


def _load(path: Path, group: bool) -> list[Run]:
    names = read_group_file(path) if group else None
    return [load_run(path / n, frames=False) for n in names] if names else [
        load_run(path, frames=False)]


class HeldOutEstimate:
    """Every ``report_every`` steps, the models' mean -ELBO on fixed held-out points (one
    latent sample each: cheap), reported to Ray Tune for ASHA to compare trials by."""

    def __init__(self, config: RunConfig, source: Any, spec: TrialSpec,
                 report: Report) -> None:
        self.points = heldout_points(config, source, min(spec.eval_n, 1000), spec.eval_seed)
        self.every, self.report, self.seed = spec.report_every, report, spec.eval_seed
        self.name = spec.name
        self.next = spec.report_every

    def __call__(self, step: int, models: list[BaseVAE]) -> None:
        if step < self.next:
            return
        self.next = (step // self.every + 1) * self.every
        from vaelab.estimators import log_density

        with torch.no_grad():
            values = [-log_density(m, self.points.to(next(m.parameters()).device), "elbo",
                                   k=1, seed=self.seed).mean().item() for m in models]
        value = sum(values) / len(values)
        self.report({SCORE: value if math.isfinite(value) else math.inf,
                     "heldout_neg_elbo": value, "step": step, "final": False,
                     "trial": self.name})


def heldout_points(config: RunConfig, source: Any, n: int, seed: int) -> torch.Tensor:
    """Points no trial trains on: a data file's held-out split (as ``vaelab evaluate``
    takes it), else ``n`` fresh points from the evaluation stream of ``seed``."""
    from vaelab.data.files import FileSource, split_points
    from vaelab.devices import derive_seeds, make_generator

    if isinstance(source, FileSource):
        _, test = split_points(source.points, config.data.test_fraction,
                               seed=config.train.seed)
        return torch.as_tensor(test[:n], dtype=torch.float32)
    return source.sample(n, make_generator(derive_seeds(seed).evaluation)).cpu()


def score_run(run: Run, metric: str, n: int, k: int, seed: int) -> float:
    """``run``'s ``metric`` on the test set ``vaelab evaluate --n N --k K --seed SEED``
    draws (the same for every trial, so their differences are paired): ``nll`` the mean
    -log q(x) by the IWAE bound with K samples, ``nll_gap`` the paired mean of
    log p(x) - log q(x) (both as ``vaelab evaluate`` reports them; the true entropy, which
    the gap does not need, is not computed), ``c2st`` the held-out accuracy of a classifier
    telling generated from real points (0.5 is chance)."""
    from vaelab.estimators import log_density
    from vaelab.evaluation import test_data

    data = test_data(run, n, seed)
    x = data.points
    if metric == "c2st":
        from vaelab.metrics import c2st_accuracy

        generated = run.sample(len(x), seed=seed + 1, device="cpu")
        return float(c2st_accuracy(generated.numpy(), x.numpy(), seed=seed))
    logq = log_density(run.model, x, "iwae", k=k, seed=seed).double()
    if metric == "nll":
        return float(-logq.mean())
    if data.source is None:
        raise ConfigError(f"--metric {metric} needs data with a known density; this run's "
                          "data has none (use --metric nll)")
    return float((data.source.log_prob(x).double() - logq).mean())
