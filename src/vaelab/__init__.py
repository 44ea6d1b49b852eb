"""vaelab: learn a distribution from samples with a VAE; generate from it and evaluate it.

Python API (the CLI does the same)::

    import vaelab
    run = vaelab.train(preset="seed", out="runs/seed")   # or out=None: keep it in memory
    points = run.sample(10_000, seed=0)                     # [10000, 2] tensor
    run = vaelab.load("runs/seed")                         # safetensors + JSON, no pickle
    run = vaelab.resume("runs/seed")                       # continue an interrupted run
    runs = vaelab.train_many(seeds=8, steps=2000)            # 8 models at once, batched
    runs = vaelab.train_many(sweep={"lr": [1e-3, 1e-2]}, seeds=2)  # 2 lrs x 2 seeds
    runs = vaelab.resume_many("runs/seed-seeds")            # continue an interrupted group
    run.model.sample(5)                                     # the nn.Module itself
    run.log_prob(points, k=1000)                            # [10000] nats, x's device/dtype
    run.distribution().sample((4,))                         # p(x) as a torch Distribution
    run.model.posterior(points), run.model.prior_distribution()  # q(z|x), p(z)
    vaelab.evaluate(run)                                    # test NLL, gap, sample metrics
    run.report().save("report.html")                        # one self-contained HTML page
    vaelab.build_report("runs/seed-seeds").save("g.html")   # several runs, or a group
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab._version import __version__
from vaelab.errors import ConfigError, RunError, VaelabError

if TYPE_CHECKING:
    from vaelab.config import RunConfig
    from vaelab.models import BaseVAE, SimpleVAE
    from vaelab.presets import preset_names
    from vaelab.report import Report
    from vaelab.resolve import build_config
    from vaelab.runs import Run

#: the names ``import vaelab`` gives, imported on first use: ``import vaelab`` (and so the
#: ``vaelab`` command, which installs its signal handlers first thing) does not wait for torch
_LAZY = {"RunConfig": "vaelab.config", "BaseVAE": "vaelab.models",
         "SimpleVAE": "vaelab.models", "preset_names": "vaelab.presets",
         "Report": "vaelab.report", "build_config": "vaelab.resolve", "Run": "vaelab.runs",
         "evaluate": "vaelab.evaluation"}


def train(config: str | Path | dict | RunConfig | None = None, *, preset: str | None = None,
          out: str | Path | None = None, force: bool = False, progress: bool = True,
          figures: bool = True, **settings: Any) -> Run:
    """Train a VAE. ``config``: a TOML/JSON file, a dict or a RunConfig; ``settings``: short
    names such as ``steps=2000, lr=1e-2`` (see :data:`vaelab.resolve.SHORT_KEYS`).
    With ``out`` the run directory and its figures are written; without, nothing is."""
    from vaelab.resolve import build_config
    from vaelab.runs import train_run

    cfg = build_config(preset, config, settings)
    return train_run(cfg, out, force=force, progress=progress, figures=figures)


def train_many(configs: list[str | Path | dict | RunConfig] | None = None, *,
               seeds: int | None = None, sweep: dict[str, list[float]] | None = None,
               preset: str | None = None, out: str | Path | None = None, force: bool = False,
               progress: bool = True, figures: bool = True, **settings: Any) -> list[Run]:
    """Train several models of the same shapes at once, with batched weights.

    Either one config from ``preset``/``settings`` with ``seeds=N`` (seeds seed..seed+N-1)
    and/or ``sweep`` (every combination of its values, e.g. ``{"lr": [1e-3, 1e-2]}``; keys
    ``lr``, ``kld_weight``, ``seed``), or ``configs``: a list that differs only in
    ``train.seed``, ``optim.lr`` and ``loss.kld_weight`` (each item resolved like
    :func:`train`'s ``config``, then ``settings`` applied). Returns one :class:`Run` per
    model; with ``out`` each is written to ``out/NAME``, named by the settings that differ
    (``seed-3``, ``lr-0.01_seed-0``)."""
    from vaelab.groups import seed_group, sweep_group
    from vaelab.resolve import build_config
    from vaelab.runs import train_group

    if (configs is None) == (seeds is None and sweep is None):
        raise ConfigError("give either configs, or seeds and/or sweep")
    if configs is not None:
        group = [build_config(preset, c, settings) for c in configs]
    elif sweep is not None:
        group = sweep_group(build_config(preset, None, settings), sweep, seeds)
    else:
        group = seed_group(build_config(preset, None, settings), seeds)  # type: ignore[arg-type]
    return train_group(group, out, force=force, progress=progress, figures=figures)


def resume(run_dir: str | Path, *, progress: bool = True, figures: bool = True) -> Run:
    """Continue an interrupted run directory from its last checkpoint (see
    :func:`vaelab.runs.resume_run`)."""
    from vaelab.runs import resume_run

    return resume_run(run_dir, progress=progress, figures=figures)


def resume_many(group_dir: str | Path, *, progress: bool = True,
                figures: bool = True) -> list[Run]:
    """Continue an interrupted group written by :func:`train_many` (its ``out``) from its last
    checkpoint; one :class:`Run` per model (see :func:`vaelab.runs.resume_group`)."""
    from vaelab.runs import resume_group

    return resume_group(group_dir, progress=progress, figures=figures)


def build_report(*runs: Run | str | Path, title: str | None = None) -> Report:
    """A self-contained HTML report of one run, or the comparison of several (a group's
    directory stands for its models): ``.save("report.html")``, or show it in Jupyter.
    ``run.report()`` is the same for one run. See :mod:`vaelab.report`."""
    from vaelab.report import build_report as _build
    from vaelab.runs import Run, load_for_report

    loaded: list[Run] = []
    for item in runs:
        if isinstance(item, Run):
            loaded.append(item)
        else:
            found, group_title = load_for_report([Path(item)])
            loaded += found
            if len(runs) == 1:
                title = title or group_title
    return _build(loaded, title)


def load(run_dir: str | Path) -> Run:
    """Load a run directory written by :func:`train` or ``vaelab train``."""
    from vaelab.runs import load_run

    return load_run(run_dir)


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY`, imported on first use (``vaelab.evaluate`` is
    :func:`vaelab.evaluation.evaluate` itself)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


__all__ = ["BaseVAE", "ConfigError", "Report", "Run", "RunConfig", "RunError", "SimpleVAE",
           "VaelabError", "__version__", "build_config", "build_report", "evaluate", "load",
           "preset_names", "resume", "resume_many", "train", "train_many"]
