"""Data sources by name: ``--data NAME`` is a built-in toy set or a ``.csv``/``.npy`` file."""

from __future__ import annotations

from pathlib import Path

from vaelab.config import DataConfig
from vaelab.data.base import DataSource
from vaelab.errors import ConfigError, unknown_name_message

#: extensions that make ``--data`` a file rather than a built-in name
FILE_SUFFIXES = (".csv", ".npy", ".tsv", ".txt")


def builtin_sources() -> dict[str, type]:
    from vaelab.data.toys import TOY_SOURCES

    return TOY_SOURCES


def source_names() -> list[str]:
    return sorted(builtin_sources())


def is_file_name(name: str) -> bool:
    return Path(name).suffix.lower() in FILE_SUFFIXES or "/" in name or "\\" in name


def build_source(cfg: DataConfig) -> DataSource:
    """The data source a config names; an unknown name lists the valid ones."""
    sources = builtin_sources()
    if cfg.name in sources:
        try:
            return sources[cfg.name](noise=cfg.noise, backend=cfg.backend)
        except ValueError as exc:
            raise ConfigError(f"data {cfg.name!r}: {exc}") from None
    if is_file_name(cfg.name):
        from vaelab.data.files import load_source

        return load_source(cfg.name)
    raise ConfigError(unknown_name_message("data source", cfg.name, source_names())
                      + "; or a .csv / .npy file")
