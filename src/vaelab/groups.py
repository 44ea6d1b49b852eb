"""Groups of models: which configs may train together in one loop, and how to make them.

M configs that differ only in their seed, learning rate or KL weight (:data:`VARYING`) train
in one loop, their weights stacked (:func:`vaelab.training.loop.fit_group`); this module
checks a group, builds the usual ones (:func:`seed_group`, :func:`sweep_group`) and names its
models (:func:`group_labels`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from vaelab.config import RunConfig
from vaelab.errors import ConfigError
from vaelab.sizes import MAX_GROUP_MODELS

#: the settings that may differ between the models of a group (dotted config paths)
VARYING = ("train.seed", "optim.lr", "loss.kld_weight")
#: their short names, as ``--sweep`` and :func:`sweep_group` take them
SWEEP_KEYS = {"lr": "optim.lr", "kld_weight": "loss.kld_weight", "seed": "train.seed"}


def check_group(configs: list[RunConfig]) -> None:
    """Refuse a group whose configs differ in anything but :data:`VARYING` (what its step
    can do is the step plan's to check: :func:`vaelab.training.plan.plan_step`)."""
    if not configs:
        raise ConfigError("a group needs at least one config")
    first = _without_varying(configs[0])
    for i, cfg in enumerate(configs[1:], start=1):
        other = _without_varying(cfg)
        if other != first:
            key = _first_difference(first, other)
            raise ConfigError(f"the models of a group may differ only in "
                              f"{', '.join(VARYING)}; config {i} differs in {key}")


def _without_varying(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for path in VARYING:
        section, key = path.split(".")
        d[section].pop(key)
    d.pop("preset", None)
    return d


def _first_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    for key in a:
        if a[key] != b.get(key):
            if isinstance(a[key], dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}{key}.")
            return f"{prefix}{key}"
    return prefix.rstrip(".") or "?"


def seed_group(config: RunConfig, count: int) -> list[RunConfig]:
    """``count`` copies of ``config`` with seeds ``seed, seed + 1, ...``."""
    if count < 1:
        raise ConfigError(f"the number of seeds must be >= 1, got {count}")
    if count > MAX_GROUP_MODELS:
        raise ConfigError(f"--seeds {count} is more than the {MAX_GROUP_MODELS} models one "
                          "group trains at once; train them in several groups")
    return [dataclasses.replace(config, train=dataclasses.replace(
        config.train, seed=config.train.seed + i)) for i in range(count)]


def sweep_group(config: RunConfig, sweep: Mapping[str, Sequence[float]],
                seeds: int | None = None) -> list[RunConfig]:
    """Every combination of ``sweep``'s values over ``config``, the first key varying slowest.

    ``sweep`` maps a short name of :data:`SWEEP_KEYS` (or its dotted path) to the values to
    try, e.g. ``{"lr": [1e-3, 1e-2], "kld_weight": [0.5, 1.0]}``: four models. With ``seeds``,
    each combination is trained with seeds ``seed ... seed + seeds - 1`` (then ``seed`` may
    not be swept too). Every value is validated as a config field; a bad key or value is a
    ConfigError naming it.
    """
    paths: list[tuple[str, str]] = []
    for key, values in sweep.items():
        path = SWEEP_KEYS.get(key, key)
        if path not in VARYING:
            raise ConfigError(f"cannot sweep {key!r}: the models of a group may differ only in "
                              f"{', '.join(SWEEP_KEYS)}")
        if path in (p for _, p in paths):
            raise ConfigError(f"{key!r} is swept twice")
        if isinstance(values, str | bytes) or not values:
            raise ConfigError(f"the sweep of {key!r} needs a list of values, got {values!r}")
        paths.append((key, path))
    if seeds is not None and "train.seed" in (p for _, p in paths):
        raise ConfigError("give the seeds either as a count of seeds or as swept values, "
                          "not both")
    total = (seeds or 1) * math.prod(len(sweep[key]) for key, _ in paths)
    if total > MAX_GROUP_MODELS:
        raise ConfigError(f"the sweep makes {total} models, more than the {MAX_GROUP_MODELS} "
                          "one group trains at once; train them in several groups")
    configs = []
    for combo in itertools.product(*(sweep[key] for key, _ in paths)):
        cfg = config.replace({path: value for (_, path), value in zip(paths, combo,
                                                                        strict=True)})
        configs += seed_group(cfg, seeds) if seeds is not None else [cfg]
    return configs


def group_labels(configs: list[RunConfig]) -> list[str]:
    """A name for each model of a group, from the settings that differ between its models
    (``seed-3``, ``lr-0.01_seed-0``): the directory each is written to. ``model-i`` when two
    models share every setting."""
    varying = [(name, path) for name, path in SWEEP_KEYS.items()
               if len({_get(c, path) for c in configs}) > 1]
    varying.sort(key=lambda item: item[0] == "seed")  # the seed last
    labels = ["_".join(f"{name}-{_get(c, path):g}" for name, path in varying)
              for c in configs]
    if not varying or len(set(labels)) < len(labels):
        return [f"model-{i}" for i in range(len(configs))]
    return labels


def _get(config: RunConfig, path: str) -> Any:
    section, key = path.split(".")
    return getattr(getattr(config, section), key)
