"""Data sources by name: ``--data NAME``."""

from __future__ import annotations

from collections.abc import Callable

from vaelab.config import DataConfig
from vaelab.data.base import DataSource
from vaelab.data.swiss_roll import SwissRoll2D
from vaelab.errors import ConfigError
from vaelab.presets import unknown_name_message

SOURCES: dict[str, Callable[[DataConfig], DataSource]] = {
    "swiss_roll": lambda cfg: SwissRoll2D(noise=cfg.noise, backend=cfg.backend),
}


def source_names() -> list[str]:
    return sorted(SOURCES)


def build_source(cfg: DataConfig) -> DataSource:
    """The data source a config names; an unknown name lists the valid ones."""
    if cfg.name not in SOURCES:
        raise ConfigError(unknown_name_message("data source", cfg.name, source_names()))
    return SOURCES[cfg.name](cfg)
