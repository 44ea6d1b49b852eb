"""Data sources by name: ``--data NAME`` is a built-in toy set or a ``.csv``/``.npy`` file.

Importing this module imports no torch: the names (:func:`source_names`) and
:func:`check_data_name` serve the command's parser and the sweep's driver, which train
nothing; :func:`build_source` imports the sources themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config import DataConfig
from vaelab.errors import ConfigError, DataFileError, unknown_name_message

if TYPE_CHECKING:
    from vaelab.data.base import DataSource

#: extensions that make ``--data`` a file rather than a built-in name
FILE_SUFFIXES = (".csv", ".npy", ".tsv", ".txt")
#: the built-in sources' names, known without importing them (and torch); equal to
#: ``vaelab.data.toys.TOY_SOURCES``'s keys (tests/test_toys_registry.py); every one has a
#: known density
BUILTIN_NAMES = ("2spirals", "8gaussians", "checkerboard", "circles", "moons", "pinwheel",
                 "rings", "swiss_roll", "swiss_roll_3d")


def builtin_sources() -> dict[str, type]:
    from vaelab.data.toys import TOY_SOURCES

    return TOY_SOURCES


def source_names() -> list[str]:
    return sorted(BUILTIN_NAMES)


def is_file_name(name: str) -> bool:
    return Path(name).suffix.lower() in FILE_SUFFIXES or "/" in name or "\\" in name


def check_data_name(name: str) -> tuple[str, bool]:
    """``name`` as a trial elsewhere must be given it (a data file by its absolute path) and
    whether its density is known, without reading the data or importing torch: a ConfigError
    for an unknown name, a DataFileError for a data file that is not there (its contents are
    checked by :func:`build_source`)."""
    if name in BUILTIN_NAMES:
        return name, True
    if is_file_name(name):
        path = Path(name)
        if path.is_dir():
            raise DataFileError(f"data file {name!r}: is a directory, not a file")
        if not path.exists():
            where = "" if path.is_absolute() else f" (relative to {os.getcwd()!r})"
            raise DataFileError(f"data file {name!r}: no such file{where}")
        return str(path.resolve()), False
    raise ConfigError(unknown_name_message("data source", name, source_names())
                      + "; or a .csv / .npy file")


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
