"""Run directories: train into one, load one back. Safetensors and JSON only, never pickle.

A run directory holds::

    config.json          the fully resolved RunConfig
    model.safetensors    the weights (rebuilt into a model from config.json)
    metrics.csv          one row per logging interval (interval means), written as training goes
    frames.safetensors   the display frames (what the panels show, step by step)
    summary.json         timing, device, final metrics, versions
    checkpoint.safetensors  weights, optimiser, RNG states and loop state, every
                         ``train.checkpoint_every`` steps and at the end (``--resume``)
    figures/             panels_final.png, training.gif, loss.png (``vaelab plot`` redraws)
    report.html          everything above on one self-contained page (``vaelab report``)
    evaluation.json, convergence.json, density.safetensors
                         what ``vaelab evaluate`` and ``convergence`` measured (vaelab.results)

A group of models trained at once (``vaelab train --seeds N`` or ``--sweep``) is a directory
of such run directories, one per model, plus::

    group.json                    the models' directory names, in the group's order
    group-checkpoint.safetensors  the whole group's training state (``--resume`` the group)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from vaelab._version import __version__
from vaelab.config import RunConfig
from vaelab.data.columns import default_names
from vaelab.data.files import FileSource
from vaelab.data.provenance import DATA_FILE, HELDOUT_FILE, check_data, remember_data
from vaelab.devices import make_generator, resolve_device
from vaelab.distributions import DEFAULT_K, VAEMarginal, log_prob
from vaelab.errors import ConfigError, RunError
from vaelab.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    remove_stale_temps,
    safetensors_metadata,
    tensors_digest,
)
from vaelab.frames import Frame, check_frame_widths, frames_bytes, load_frames
from vaelab.groups import check_group, group_labels
from vaelab.locks import LOCK_FILE, run_lock
from vaelab.models import BaseVAE, build_model
from vaelab.results import RESULT_FILES
from vaelab.sizes import check_train
from vaelab.training.checkpoint import CHECKPOINT_FILE, GROUP_CHECKPOINT_FILE, read_checkpoint
from vaelab.training.loop import METRIC_FIELDS, TrainResult, fit, fit_group, plan_for, prepare

if TYPE_CHECKING:
    from vaelab.report import Report

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.csv"
FRAMES_FILE = "frames.safetensors"
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"
#: the self-contained HTML page ``vaelab train`` and ``vaelab report`` write (vaelab.report)
REPORT_FILE = "report.html"
RUN_FILES = (CONFIG_FILE, MODEL_FILE, METRICS_FILE, FRAMES_FILE, SUMMARY_FILE, CHECKPOINT_FILE,
             REPORT_FILE, DATA_FILE, HELDOUT_FILE, *RESULT_FILES)
#: a group of models (``vaelab train --seeds`` / ``--sweep``): the list of its model directories
GROUP_FILE = "group.json"
GROUP_FORMAT = "vaelab-group-1"
#: the files of a group directory besides its models' run directories
GROUP_FILES = (GROUP_FILE, GROUP_CHECKPOINT_FILE)
#: summary.json's key for a data file's column names (its header row), when it has one
COLUMNS_KEY = "data_columns"
#: the format of ``model.safetensors``: its metadata records the SHA-256 of the run's other
#: files (``<file>_sha256``), and its ``sha256`` covers the tensors and all that metadata
MODEL_FORMAT = "vaelab-model-2"
#: the format before: its ``sha256`` covered the tensors only, and no other file. Such runs
#: still load (their weights are checked as they were), but an edit of their other files
#: cannot be told from the file written
OLD_MODEL_FORMAT = "vaelab-model-1"
#: the files whose SHA-256 ``model.safetensors`` records, and the metadata key of each
COVERED_FILES = {CONFIG_FILE: "config_sha256", METRICS_FILE: "metrics_sha256",
                 FRAMES_FILE: "frames_sha256", SUMMARY_FILE: "summary_sha256"}
#: a data file's run only: ``data.json`` (which holds the digest of ``heldout.npy``), its
#: SHA-256 recorded as the others', or ``NO_FILE`` for a run without one
OPTIONAL_COVERED = {DATA_FILE: "data_sha256"}
NO_FILE = "none"


@dataclass
class Run:
    """A trained model with its config, metrics and display frames."""

    config: RunConfig
    model: BaseVAE
    metrics: list[dict[str, float]] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def columns(self) -> list[str]:
        """The data's column names: a data file's own header (kept in ``summary.json`` as
        ``data_columns`` when the run was trained), else ``x0, x1, ...``."""
        d = self.model.in_channels
        names = self.summary.get(COLUMNS_KEY)
        if isinstance(names, list) and len(names) == d and all(isinstance(n, str) and n
                                                                for n in names):
            return list(names)
        return default_names(d)

    def sample(self, n: int, seed: int = 0, device: str = "auto",
               noise: bool | None = None) -> torch.Tensor:
        """``n`` generated points, fixed by ``seed``, on the CPU.

        ``noise``: as :meth:`vaelab.models.BaseVAE.sample` (the same default): True draws
        from the full p(x), decoder noise included; False gives decoder means; None (default)
        follows the objective: means for the seed's MSE loss, p(x) for ``gaussian``/``iwae``.
        """
        dev = resolve_device(device)
        self.model.to(dev)
        return self.model.sample(n, generator=make_generator(seed, dev), device=dev,
                                 noise=noise).cpu()

    def log_prob(self, x: torch.Tensor, k: int = DEFAULT_K, estimator: str = "iwae", *,
                 seed: int | None = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x) per point in nats, in the data's own units: ``x`` ``[N, D]`` -> ``[N]`` on
        ``x``'s device and dtype (any ``[..., D]`` -> ``[...]``).

        ``estimator``: ``iwae`` (default), ``elbo`` or ``prior-mc``, with ``k`` samples per
        point, drawn from ``generator`` or a generator seeded with ``seed``: with the same
        ``k`` and ``seed`` the numbers of ``vaelab logp RUN --k K --seed S``. Computed on the
        model's device, chunked; see :func:`vaelab.distributions.log_prob`."""
        return log_prob(self.model, x, k, estimator, seed=seed, generator=generator)

    def distribution(self, k: int = DEFAULT_K, estimator: str = "iwae", *, seed: int | None = 0,
                     noise: bool | None = None) -> VAEMarginal:
        """The model's marginal p(x) as a ``torch.distributions.Distribution``:
        ``log_prob`` as :meth:`log_prob`, ``sample`` as :meth:`sample` (the same ``noise``
        convention), on the model's device (:class:`vaelab.distributions.VAEMarginal`)."""
        return VAEMarginal(self.model, k, estimator, seed=seed, noise=noise)

    def report(self) -> Report:
        """This run's self-contained HTML report (:mod:`vaelab.report`): ``.save(path)``
        writes it, and in Jupyter it displays inline. It shows what ``vaelab evaluate`` and
        ``vaelab convergence`` saved in the run's directory, and names them where missing."""
        from vaelab.report import build_report

        return build_report([self])

    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the run to ``path`` (refused if it already holds files, unless ``force``)."""
        path = prepare_run_dir(path, force)
        self._write_results(path)
        self.path = path
        return path

    def _write_results(self, path: Path) -> None:
        """Write every file of the run, each atomically, ``model.safetensors`` last: it
        records the SHA-256 of the others, so a reader that finds it finds them complete,
        and an edit of any of them is refused by :func:`load_run`."""
        contents = {CONFIG_FILE: self.config.to_json().encode("utf-8"),
                    METRICS_FILE: metrics_text(self.metrics).encode("utf-8"),
                    FRAMES_FILE: frames_bytes(self.frames),
                    SUMMARY_FILE: (json.dumps(self.summary, indent=2) + "\n").encode("utf-8")}
        for name, data in contents.items():
            atomic_write_bytes(path / name, data)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        meta = {"format": MODEL_FORMAT, "vaelab_version": __version__,
                **{key: hashlib.sha256(contents[name]).hexdigest()
                   for name, key in COVERED_FILES.items()}}
        for name, key in OPTIONAL_COVERED.items():  # written when training began
            file = path / name
            meta[key] = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() \
                else NO_FILE
        meta["sha256"] = tensors_digest(state, meta)
        atomic_write_bytes(path / MODEL_FILE, save_tensors(state, metadata=meta))

    def plot(self, out_dir: str | Path | None = None) -> list[Path]:
        """Draw the panels, the GIF and the loss curve; returns the files written."""
        from vaelab.plots import render_run

        if out_dir is None:
            if self.path is None:
                raise RunError("this run has no directory: pass out_dir")
            out_dir = self.path / FIGURES_DIR
        return render_run(self, Path(out_dir))


def check_run_dir(path: Path, force: bool) -> None:
    """Refuse an output path that is a file, or a non-empty directory unless ``force``."""
    if path.exists() and not path.is_dir():
        raise RunError(f"output path {path} exists and is not a directory")
    if force and path.is_dir() and _holds_files(path) and not holds_vaelab(path):
        raise RunError(f"--force replaces a vaelab run or group, and {path} holds neither; "
                       "choose another --out")
    if force or not (path.is_dir() and _holds_files(path)):
        return
    if (path / CHECKPOINT_FILE).is_file() and not (path / MODEL_FILE).is_file():
        raise RunError(f"output directory {path} holds an interrupted run: continue it with "
                       f"--resume {path}, or pass --force to replace it")
    raise RunError(f"output directory {path} is not empty (it may hold a run); "
                   "choose another --out or pass --force to replace it")


def holds_vaelab(path: Path) -> bool:
    """Whether ``path`` holds a vaelab run or group (what ``force`` may replace): a
    ``config.json`` with a run config's tables, a group file, or a checkpoint."""
    if (path / GROUP_FILE).is_file() or (path / CHECKPOINT_FILE).is_file() \
            or (path / GROUP_CHECKPOINT_FILE).is_file():
        return True
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and {"data", "model", "loss", "train"} <= config.keys()


def _holds_files(path: Path) -> bool:
    """Anything in ``path`` but the write lock's file (:mod:`vaelab.locks`)."""
    return any(p.name != LOCK_FILE for p in path.iterdir())


def prepare_run_dir(path: str | Path, force: bool) -> Path:
    """Create ``path``; refuse a non-empty one unless ``force`` (then its run files go)."""
    path = Path(path)
    check_run_dir(path, force)
    if path.is_dir() and _holds_files(path):  # forced: a run's (or a group's) files go
        for name in RUN_FILES + GROUP_FILES:
            (path / name).unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create output directory {path}: {exc.strerror}") from None
    return path


def metrics_text(rows: list[dict[str, float]]) -> str:
    """``metrics.csv``'s text: a header of METRIC_FIELDS, then one line per row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    """Write ``rows`` as ``metrics.csv`` atomically."""
    atomic_write_text(path, metrics_text(rows))


class _MetricsAppender:
    """Appends each metrics row to the CSV as it is logged, so a running job can be watched."""

    def __init__(self, path: Path, rows: list[dict[str, float]] | None = None) -> None:
        if rows:  # a resumed run: the rows of its checkpoint, then new ones appended
            write_metrics(path, rows)
            self.fh = open(path, "a", encoding="utf-8", newline="")
            self.writer = csv.DictWriter(self.fh, fieldnames=METRIC_FIELDS,
                                         lineterminator="\n")
            return
        self.fh = open(path, "w", encoding="utf-8", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=METRIC_FIELDS, lineterminator="\n")
        self.writer.writeheader()
        self.fh.flush()

    def __call__(self, row: dict[str, float]) -> None:
        self.writer.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def train_run(config: RunConfig, out: str | Path | None = None, *, force: bool = False,
              progress: bool = True, figures: bool = True) -> Run:
    """Train ``config``; with ``out``, write the run directory (and figures) as it goes,
    with a checkpoint every ``train.checkpoint_every`` steps for :func:`resume_run`."""
    # every name and value checked, and the data read, before anything is written
    config, source = prepare(config)
    check_train([config])  # what cannot fit in memory is refused before anything is written
    if out is None:
        result = fit(config, progress=progress, source=source)
        return _run_from_result(result, None, source)
    check_run_dir(Path(out), force)  # a file in the way is named before any lock
    with run_lock(Path(out)):  # one writer: checked again, and written, under the lock
        path = prepare_run_dir(out, force)
        atomic_write_text(path / CONFIG_FILE, config.to_json())
        remember_data(path, config, source)
        return _train_into(path, config, source, None, progress, figures)


def resume_run(path: str | Path, *, progress: bool = True, figures: bool = True) -> Run:
    """Continue the run in ``path`` from its last checkpoint, with its saved config.

    A run killed before its first checkpoint starts again from step 0; a complete run is
    refused. On the CPU, a step-limited run resumed any number of times ends with exactly
    the weights of an uninterrupted run (a time-limited one depends on the clock).
    """
    path = Path(path)
    if (path / GROUP_FILE).is_file():
        raise RunError(f"{path} holds a group of models: resume it as a whole "
                       f"(vaelab.resume_many, or vaelab train --resume {path})")
    group = _group_of(path)
    if group is not None:
        raise RunError(f"{path} is one model of the group in {group}, which trains and "
                       f"resumes as a whole: --resume {group}")
    _read_run_config(path)  # a directory that holds no run is named before any lock
    with run_lock(path):
        return _resume_locked(path, progress, figures)


def _resume_locked(path: Path, progress: bool, figures: bool) -> Run:
    config = _read_run_config(path)
    ckpt = None
    if (path / CHECKPOINT_FILE).is_file():
        ckpt = read_checkpoint(path / CHECKPOINT_FILE, METRIC_FIELDS)
        if ckpt.loop.finished and (path / MODEL_FILE).is_file() and \
                (path / SUMMARY_FILE).is_file():
            raise RunError(f"the run in {path} is complete ({ckpt.loop.step} steps); "
                           "nothing to resume")
    elif (path / MODEL_FILE).is_file():
        raise RunError(f"the run in {path} has a model but no checkpoint: it is complete, "
                       "or was not written by a resumable vaelab")
    resolved, source = prepare(config)
    if resolved.to_json() != config.to_json():
        raise RunError(f"{path / CONFIG_FILE} is not a resolved config (was it edited?); "
                       "it cannot be resumed")
    check_data(path, source, RESUME_HINT)
    check_train([resolved])
    return _train_into(path, config, source, ckpt, progress, figures)


#: what a resume on other data says to do
RESUME_HINT = "put the run's own data file back in that place to resume it"


def _train_into(path: Path, config: RunConfig, source: Any, ckpt: Any, progress: bool,
                figures: bool) -> Run:
    _remove_stale_temps(path)
    appender = _MetricsAppender(path / METRICS_FILE, ckpt.loop.metrics[0] if ckpt else None)
    try:
        result = fit(config, progress=progress, on_log=appender, source=source,
                     checkpoint_path=path / CHECKPOINT_FILE, resume=ckpt)
    finally:
        appender.close()
    run = _run_from_result(result, path, source)
    run._write_results(path)
    if figures:
        run.plot()
    return run


def train_group(configs: list[RunConfig], out: str | Path | None = None, *,
                force: bool = False, progress: bool = True,
                figures: bool = True) -> list[Run]:
    """Train several models of the same shapes at once (:func:`vaelab.training.loop.fit_group`).

    With ``out``, each model is written as an ordinary run directory named by the settings
    that differ between the models (``out/seed-S``, ``out/lr-0.01_seed-S``; see
    :func:`~vaelab.groups.group_labels`); each loads with :func:`load_run`. ``out``
    itself holds ``group.json`` (the models' directory names) and the group's checkpoint,
    written every ``train.checkpoint_every`` steps, for :func:`resume_group`. Every
    directory is checked before anything is written.
    """
    resolved, source = [], None
    for cfg in configs:
        r, src = prepare(cfg)
        resolved.append(r)
        source = source or src
    check_group(resolved)
    plan_for(resolved, source)  # a group its step cannot train is refused here
    check_train(resolved)  # and one that cannot fit in memory
    if out is None:
        return [_run_from_result(r, None, source)
                for r in fit_group(resolved, progress=progress, source=source)]
    out = Path(out)
    labels = group_labels(resolved)
    paths = [out / name for name in labels]
    _check_group_dir(out, force)
    for path in paths:  # all checked before any is written
        check_run_dir(path, force)
    with run_lock(out):  # one writer of the group: checked again, and written, under it
        _check_group_dir(out, force)
        for path in paths:
            check_run_dir(path, force)
        if force:  # a group's (or a single run's) files in OUT go, and its old models
            for name in _group_names_or_empty(out):
                old = out / name
                if name not in labels and old.is_dir() and holds_vaelab(old):
                    shutil.rmtree(old)
            for name in GROUP_FILES + RUN_FILES:
                (out / name).unlink(missing_ok=True)
        for path, cfg in zip(paths, resolved, strict=True):
            prepare_run_dir(path, force)
            atomic_write_text(path / CONFIG_FILE, cfg.to_json())
            remember_data(path, cfg, source)
        atomic_write_text(out / GROUP_FILE, json.dumps(
            {"format": GROUP_FORMAT, "models": labels}, indent=2) + "\n")
        return _train_group_into(out, paths, resolved, source, None, progress, figures)


def resume_group(path: str | Path, *, progress: bool = True, figures: bool = True) -> list[Run]:
    """Continue the group in ``path`` (written by :func:`train_group`) from its checkpoint.

    A group killed before its first checkpoint starts again from step 0; a complete one is
    refused. On the CPU, a step-limited group resumed any number of times ends with exactly
    the weights of an uninterrupted one.
    """
    path = Path(path)
    read_group_file(path)  # a directory that holds no group is named before any lock
    with run_lock(path):
        return _resume_group_locked(path, progress, figures)


def _resume_group_locked(path: Path, progress: bool, figures: bool) -> list[Run]:
    labels = read_group_file(path)
    paths = [path / name for name in labels]
    configs = [_read_run_config(p) for p in paths]
    ckpt = None
    if (path / GROUP_CHECKPOINT_FILE).is_file():
        ckpt = read_checkpoint(path / GROUP_CHECKPOINT_FILE, METRIC_FIELDS)
        if ckpt.loop.finished and all(_complete(p) for p in paths):
            raise RunError(f"the group in {path} is complete ({ckpt.loop.step} steps); "
                           "nothing to resume")
    elif any((p / MODEL_FILE).is_file() for p in paths):
        raise RunError(f"the group in {path} has models but no checkpoint: it is complete, "
                       "or was not written by a resumable vaelab")
    resolved, source = [], None
    for p, cfg in zip(paths, configs, strict=True):
        r, src = prepare(cfg)
        if r.to_json() != cfg.to_json():
            raise RunError(f"{p / CONFIG_FILE} is not a resolved config (was it edited?); "
                           "it cannot be resumed")
        resolved.append(r)
        source = source or src
    for p in paths:
        check_data(p, source, RESUME_HINT)
    check_group(resolved)
    plan_for(resolved, source)  # a group its step cannot train is refused here
    check_train(resolved)
    if group_labels(resolved) != labels:
        raise RunError(f"{path / GROUP_FILE} does not match its models' config.json files "
                       "(were they edited?); it cannot be resumed")
    return _train_group_into(path, paths, resolved, source, ckpt, progress, figures)


def _train_group_into(out: Path, paths: list[Path], configs: list[RunConfig], source: Any,
                      ckpt: Any, progress: bool, figures: bool) -> list[Run]:
    for path in paths:
        _remove_stale_temps(path)
    # each model's metrics.csv grows as the group trains, as a single run's does
    appenders = [_MetricsAppender(path / METRICS_FILE, ckpt.loop.metrics[i] if ckpt else None)
                 for i, path in enumerate(paths)]
    try:
        results = fit_group(configs, progress=progress, source=source,
                            checkpoint_path=out / GROUP_CHECKPOINT_FILE, resume=ckpt,
                            on_log=lambda i, row: appenders[i](row))
    finally:
        for appender in appenders:
            appender.close()
    runs = []
    for path, result in zip(paths, results, strict=True):
        run = _run_from_result(result, path, source)
        run._write_results(path)
        if figures:
            run.plot()
        runs.append(run)
    return runs


def _remove_stale_temps(path: Path) -> None:
    """The temporary files a killed writer of this run left (under the run's lock)."""
    for name in RUN_FILES:
        remove_stale_temps(path / name)


def read_group_file(path: Path) -> list[str]:
    """The model directory names listed in ``path/group.json``; a RunError if it is missing
    or malformed."""
    file = path / GROUP_FILE
    data = read_json(file, f"{path} holds no {GROUP_FILE}: it is not a group of models")
    models = data.get("models") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format") != GROUP_FORMAT
            or not isinstance(models, list) or not models
            or not all(isinstance(m, str) and m and Path(m).name == m and m not in (".", "..")
                       for m in models)
            or len(set(models)) != len(models)):
        raise RunError(f"{file} is not a vaelab group file (format {GROUP_FORMAT!r} with a "
                       "list of model directory names)")
    return models


def load_for_report(paths: list[Path]) -> tuple[list[Run], str | None]:
    """The runs of ``paths`` (run directories, or groups' directories, each standing for its
    models) and a title for their page: the group's when ``paths`` is one group, else None."""
    runs: list[Run] = []
    for path in paths:
        if (path / GROUP_FILE).is_file() and not (path / CONFIG_FILE).is_file():
            runs += [load_run(path / name) for name in read_group_file(path)]
        else:
            runs.append(load_run(path))
    if len(paths) == 1 and len(runs) > 1:
        return runs, f"vaelab group {paths[0].name} ({len(runs)} models)"
    return runs, None


def _group_of(path: Path) -> Path | None:
    """The group directory that lists the run directory ``path`` as one of its models."""
    parent = path.resolve().parent
    if not (parent / GROUP_FILE).is_file():
        return None
    try:
        return parent if path.resolve().name in read_group_file(parent) else None
    except RunError:
        return None


def _check_group_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"output path {out} exists and is not a directory")
    if force:
        if out.is_dir() and _holds_files(out) and not holds_vaelab(out) and not any(
                holds_vaelab(d) for d in out.iterdir() if d.is_dir()):
            raise RunError(f"--force replaces a vaelab run or group, and {out} holds "
                           "neither; choose another --out")
        return
    if (out / CONFIG_FILE).is_file():
        raise RunError(f"output directory {out} holds a run; choose another --out or pass "
                       "--force to replace it")
    if not (out / GROUP_FILE).is_file():
        return
    names = _group_names_or_empty(out)
    if not names or not all(_complete(out / name) for name in names):
        raise RunError(f"output directory {out} holds an interrupted group: continue it with "
                       f"--resume {out}, or pass --force to replace it")
    raise RunError(f"output directory {out} holds a group of models; choose another --out "
                   "or pass --force to replace it")


def _group_names_or_empty(out: Path) -> list[str]:
    try:
        return read_group_file(out)
    except RunError:
        return []


def _complete(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() and (path / SUMMARY_FILE).is_file()


def _run_from_result(result: TrainResult, path: Path | None, source: Any = None) -> Run:
    summary = result.summary
    if isinstance(source, FileSource):  # the file's header, kept for sample and compare
        names = source.column_names
        if names is not None and len(names) == result.model.in_channels:
            summary = {**summary, COLUMNS_KEY: names}
    return Run(result.config, result.model, result.metrics, result.frames, summary, path)


# -- loading ------------------------------------------------------------------------------

def load_run(path: str | Path, *, frames: bool = True) -> Run:
    """Rebuild a run from ``config.json`` + ``model.safetensors``; nothing is unpickled.

    Every file is checked before any of it is used: the model file's checksum (its tensors
    and its metadata), then the SHA-256 it records of ``config.json``, ``metrics.csv``,
    ``frames.safetensors`` and ``summary.json``, then each file's contents (config keys,
    tensor names, shapes, dtypes, finite values; metrics columns). Every problem is a
    :class:`~vaelab.errors.RunError` naming the file, raised before any weight is copied in.
    A run written before the model file recorded the others (``vaelab-model-1``) still
    loads: its weights are checked against their checksum, its other files for their
    contents only.
    """
    path = Path(path)
    _check_run_path(path)
    if not (path / CONFIG_FILE).is_file():
        raise RunError(f"not a vaelab run: {path / CONFIG_FILE} is missing")
    state, meta = _read_weights(path / MODEL_FILE)
    contents = _read_covered(path, meta)
    config = _parse_config(path / CONFIG_FILE, contents[CONFIG_FILE])
    if config.model.in_channels is None:
        raise RunError(f"{path / CONFIG_FILE}: model.in_channels is missing")
    with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: no RNG use
        model = build_model(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise RunError(f"{path / MODEL_FILE} does not match config.json ({what})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape or state[name].dtype != tensor.dtype:
            raise RunError(f"{path / MODEL_FILE}: tensor {name!r} has shape "
                           f"{tuple(state[name].shape)} {state[name].dtype}, config.json needs "
                           f"{tuple(tensor.shape)} {tensor.dtype}")
        if not torch.isfinite(state[name]).all():
            raise RunError(f"{path / MODEL_FILE}: tensor {name!r} holds NaN or inf")
    metrics = (read_metrics(path / METRICS_FILE, contents[METRICS_FILE])
               if contents[METRICS_FILE] is not None else [])
    frame_list: list[Frame] = []
    if frames and contents[FRAMES_FILE] is not None:
        frame_list = load_frames(path / FRAMES_FILE, contents[FRAMES_FILE])
        check_frame_widths(path / FRAMES_FILE, frame_list, model.in_channels,
                           _latent_width(model, frame_list))
    summary: dict[str, Any] = {}
    if contents[SUMMARY_FILE] is not None:
        try:
            loaded = json.loads(contents[SUMMARY_FILE].decode("utf-8"))
            summary = loaded if isinstance(loaded, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            summary = {}
    model.load_state_dict(state)
    model.eval()
    return Run(config, model, metrics, frame_list, summary, path)


def _latent_width(model: BaseVAE, frames: list[Frame]) -> int:
    """The latent dimensions a frame's posterior draws must have: the model's."""
    width = getattr(model, "latent_dim", None)
    return int(width) if isinstance(width, int) else frames[0].posterior_z.shape[1]


def _read_covered(path: Path, meta: dict[str, str]) -> dict[str, bytes | None]:
    """The bytes of the run's files that ``model.safetensors`` covers, each checked against
    the SHA-256 its metadata records (None for a file an old run lacks); ``data.json`` is
    checked too, where the run has one, and must be absent where it had none."""
    recorded = meta.get("format") == MODEL_FORMAT
    contents: dict[str, bytes | None] = {}
    for name, key in COVERED_FILES.items():
        contents[name] = _read_checked(path / name, meta.get(key, "") if recorded else None,
                                       required=recorded)
    for name, key in OPTIONAL_COVERED.items():
        if not recorded:
            continue
        if meta.get(key) == NO_FILE:
            if (path / name).exists():
                raise RunError(f"{path / name} was not part of the run when it was written "
                               "(was it copied in?); remove it")
        else:
            _read_checked(path / name, meta.get(key, ""), required=True)
    return contents


def _read_checked(file: Path, digest: str | None, required: bool) -> bytes | None:
    """``file``'s bytes, checked against ``digest`` where one is given; None for a missing
    file that is not ``required``."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        if required:
            raise RunError(f"not a complete vaelab run: {file} is missing") from None
        return None
    except OSError as exc:
        raise RunError(f"cannot read {file}: {exc.strerror}") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise RunError(f"{file} was edited or replaced after the run was written (its SHA-256 "
                       f"is not the one {MODEL_FILE} records)")
    return data


def _check_run_path(path: Path) -> None:
    """A RunError unless ``path`` is a directory that may hold one run (not a group's)."""
    if not path.is_dir():
        raise RunError(f"run directory not found: {path}")
    if (path / GROUP_FILE).is_file() and not (path / CONFIG_FILE).is_file():
        names = _group_names_or_empty(path)
        example = f", e.g. {path / names[0]}" if names else ""
        raise RunError(f"{path} holds a group of models, not one run: give one of its model "
                       f"directories{example}")


def _read_run_config(path: Path) -> RunConfig:
    """The resolved config of the run directory ``path`` (a RunError if there is none)."""
    _check_run_path(path)
    config = _read_config(path / CONFIG_FILE)
    if config.model.in_channels is None:
        raise RunError(f"{path / CONFIG_FILE}: model.in_channels is missing")
    return config


def _read_config(path: Path) -> RunConfig:
    if not path.is_file():
        raise RunError(f"not a vaelab run: {path} is missing")
    return _parse_config(path, path.read_bytes())


def _parse_config(path: Path, data: bytes | None) -> RunConfig:
    try:
        text = (data or b"").decode("utf-8")
        config = RunConfig.from_json(text)
        if config.data.decorrelate is None and '"decorrelate"' not in text:
            # saved before data.decorrelate existed: such a run standardised column by column
            config = dataclasses.replace(
                config, data=dataclasses.replace(config.data, decorrelate=False))
        return config
    except UnicodeDecodeError:
        raise RunError(f"{path} is not UTF-8 text") from None
    except ConfigError as exc:
        raise RunError(f"{path}: {exc}") from None


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``model.safetensors``, after checking its checksum."""
    if not path.is_file():
        raise RunError(f"not a complete vaelab run: {path} is missing")
    try:
        data = path.read_bytes()
        state = load_tensors(data)
        meta = safetensors_metadata(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RunError(f"{path} is not a readable safetensors file: {exc}") from None
    fmt = meta.get("format")
    if fmt == MODEL_FORMAT:
        ok = meta.get("sha256") == tensors_digest(state, meta)
    elif fmt == OLD_MODEL_FORMAT:  # its checksum covers the tensors only (or is absent)
        ok = "sha256" not in meta or meta["sha256"] == tensors_digest(state)
    else:
        raise RunError(f"{path} is not a vaelab model file (format {fmt!r}, expected "
                       f"{MODEL_FORMAT!r})")
    if not ok:
        raise RunError(f"{path} fails its checksum: it was corrupted or edited after it was "
                       "written")
    return state, meta


def read_metrics(path: Path, data: bytes | None = None) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` (``data``, its bytes already read, or the file's):
    every column of METRIC_FIELDS present, every value a finite number; a RunError naming
    the file otherwise."""
    try:
        text = (path.read_bytes() if data is None else data).decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [f for f in METRIC_FIELDS if f not in header]
        if missing:
            raise RunError(f"{path} is not a vaelab metrics file: column {missing[0]!r} is "
                           f"missing (expected {', '.join(METRIC_FIELDS)})")
        rows = []
        for i, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                raise RunError(f"{path} is not a vaelab metrics file: line {i} does not "
                               f"have {len(header)} fields")
            values = {k: float(v) for k, v in row.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise RunError(f"{path}: line {i} holds a value that is not a finite number")
            rows.append(values)
        return rows
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error, OSError) as exc:
        raise RunError(f"{path} is not a vaelab metrics file: {exc}") from None


def write_points(points: torch.Tensor | np.ndarray, path: str | Path,
                 names: list[str] | None = None) -> Path:
    """Save points as CSV (header ``names``, default ``x0,x1,...``) or ``.npy``, chosen by
    the extension."""
    path = Path(path)
    arr = np.asarray(points.detach().cpu().numpy() if isinstance(points, torch.Tensor)
                     else points, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    elif suffix == ".csv":
        atomic_write_text(path, points_to_csv(arr, names=names))
    else:
        raise RunError(f"cannot write {path}: the extension must be .csv or .npy")
    return path


def points_to_csv(arr: np.ndarray, last_column: str | None = None,
                  names: list[str] | None = None) -> str:
    """CSV with a header row: ``names`` (e.g. :attr:`Run.columns`) or ``x0,x1,...``, the
    last column named ``last_column`` if given; a name with a comma or quote is quoted."""
    buf = io.StringIO()
    names = list(names) if names is not None else default_names(arr.shape[1])
    if len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} column names for {arr.shape[1]} columns")
    if last_column is not None:
        names[-1] = last_column
    head = io.StringIO()
    csv.writer(head, lineterminator="").writerow(names)
    header = head.getvalue()
    np.savetxt(buf, arr, delimiter=",", header=header, comments="", fmt="%.9g")
    return buf.getvalue()
