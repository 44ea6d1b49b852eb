"""The column names of a data file: its header row, read by the rules of
:mod:`vaelab.data.files` (whose tokeniser and header test this reuses, so that a file's header
is recognised here exactly when :func:`~vaelab.data.files.read_points` skips it).

A run trained on a file keeps these names in its ``summary.json`` (``data_columns``, written
by :mod:`vaelab.runs` at the end of training), so that ``vaelab sample`` and ``vaelab compare``
name the columns as the file did even after the file has moved.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vaelab.data.files import (
    _clean,
    _decode_text,
    _is_blank,
    _is_number,
    _read_bytes,
    _records,
)
from vaelab.errors import DataFileError


def default_names(dim: int) -> list[str]:
    """``x0, x1, ...``: the names of columns a file did not name (and of built-in data)."""
    return [f"x{i}" for i in range(dim)]


def header_names(path: str | os.PathLike[str]) -> list[str] | None:
    """The names in the header row of the text table ``path`` (a header cell left empty is
    named ``x{i}``, its 0-based position), or None when the file has no header or is a
    ``.npy`` array. A file :func:`~vaelab.data.files.read_points` refuses raises its
    :class:`~vaelab.errors.DataFileError`."""
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".txt"):
        return None
    kind = {".csv": "CSV", ".tsv": "TSV", ".txt": "text-table"}[suffix]
    text = _decode_text(path, _read_bytes(path), kind)
    if suffix == ".csv":  # the delimiter rule of vaelab.data.files._read_table
        delimiter: str | None = ","
    elif suffix == ".tsv":
        delimiter = "\t"
    else:
        first_line = next((ln for ln in re.split(r"\r\n|\r|\n", text) if ln.strip(" \t")), "")
        delimiter = "," if "," in first_line else None
    for _number, cells in _records(path, text, delimiter):
        if _is_blank(cells):
            continue
        head = [_clean(c) for c in cells]
        if not any(c and not _is_number(c) for c in head):
            return None  # a first line of numbers is data
        return [c if c else f"x{i}" for i, c in enumerate(head)]
    return None


def file_column_names(path: str | os.PathLike[str], dim: int) -> list[str] | None:
    """:func:`header_names` when they are ``dim`` names, else None (never raises: a file that
    trained a model has already been read, and names are only labels)."""
    try:
        names = header_names(path)
    except (DataFileError, OSError):
        return None
    return names if names is not None and len(names) == dim else None


__all__ = ["default_names", "file_column_names", "header_names"]
