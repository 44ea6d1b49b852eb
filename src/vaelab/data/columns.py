"""The column names of a data file: its header row, read by the rules of
:mod:`vaelab.data.files` (:func:`~vaelab.data.files.read_table`, so that a file's header is
recognised here exactly when :func:`~vaelab.data.files.read_points` skips it).

A run trained on a file keeps these names in its ``summary.json`` (``data_columns``, written
by :mod:`vaelab.runs` at the end of training), so that ``vaelab sample`` and ``vaelab compare``
name the columns as the file did even after the file has moved.
"""

from __future__ import annotations

import os

from vaelab.data.files import read_table


def default_names(dim: int) -> list[str]:
    """``x0, x1, ...``: the names of columns a file did not name (and of built-in data)."""
    return [f"x{i}" for i in range(dim)]


def header_names(path: str | os.PathLike[str]) -> list[str] | None:
    """The names in the header row of the data file ``path`` (a header cell left empty is
    named ``x{i}``, its 0-based position), or None when the file has no header or is a
    ``.npy`` array: :func:`~vaelab.data.files.read_table`'s, the one reader of data files. A
    file it refuses raises its :class:`~vaelab.errors.DataFileError`."""
    return read_table(path)[1]


__all__ = ["default_names", "header_names"]
