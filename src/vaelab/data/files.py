"""Points from the user's own file: a CSV/TSV/text table or a NumPy ``.npy`` array.

:func:`read_points` turns a file into a float64 ``[N, D]`` array (``N >= 2``, ``D >= 1``, all
values finite) or raises :class:`~vaelab.errors.DataFileError` with a one-line message that
names the file and the problem (line and column where there is one). Nothing else escapes it:
no traceback, no bare numpy/csv/OS exception, because the CLI prints a ``VaelabError`` as a
single ``vaelab CMD: error: ...`` line.

Accepted formats, chosen by the (case-insensitive) extension:

``.csv``
    Comma-separated. ``.tsv``: tab-separated. ``.txt``: comma-separated when its first
    non-blank line has a comma, otherwise separated by runs of spaces/tabs (what
    ``numpy.savetxt`` writes by default).
``.npy``
    One numeric array (integer or floating dtype), 1-D (read as one column) or 2-D, loaded with
    ``numpy.load(..., allow_pickle=False)``: object arrays are never unpickled.

Text rules, strict on purpose (a silently misread data set is worse than an error):

* The file must be UTF-8 (a leading UTF-8 BOM is dropped); ``\\n``, ``\\r\\n`` and ``\\r``
  all end a line. NUL and other control characters (besides tab) mean it is not a text file.
* Spaces and tabs around a cell are ignored; double quotes around a cell (CSV/TSV) are removed.
* Numbers are plain ASCII decimals as Python writes them (``1``, ``-2.5``, ``.5``, ``1e-3``);
  no digit-group underscores, no non-ASCII digits, no hex, no decimal comma. ``nan``,
  ``inf``, ``-inf``, ``infinity`` (any case) are numbers, and refused as non-finite values.
* Header: the first non-blank line is a header when any of its cells is non-empty and not a
  number; every other line must then be numeric and have as many cells as the header. A first
  line made only of numbers is data (so a header whose names are all numbers is not
  recognised).
* Blank lines (empty or only spaces/tabs) before the first and after the last non-blank line
  are skipped; a blank line between them is an error, since in a one-column file it is
  indistinguishable from a missing value. An empty cell (``1,,2``) is an error.
* Line numbers in messages are physical lines of the file, 1-based; columns are 1-based.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.base import DataSource
from vaelab.errors import ConfigError, DataFileError

#: extensions :func:`read_points` accepts (lower case)
EXTENSIONS: tuple[str, ...] = (".csv", ".npy", ".tsv", ".txt")

MIN_POINTS = 2

# A plain ASCII decimal number as Python's repr writes it, or nan/inf/infinity (any case).
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)",
    re.IGNORECASE,
)
_NONFINITE_WORD = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# Control characters that never occur in a text table (tab, LF and CR are allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CELL_SHOWN = 40  # characters of a bad cell quoted in a message

# Leading bytes of formats people rename by mistake, and what to call them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x93NUMPY", "a NumPy .npy file (rename it to .npy)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook or .npz archive?)"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    *((b"\x80" + bytes([v]), "a Python pickle") for v in range(2, 6)),
)
_UTF16_32_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_EXTENSION_HINTS = {
    ".npz": "save a single array with numpy.save(...) to a .npy file",
    ".xlsx": "export the sheet as CSV",
    ".xls": "export the sheet as CSV",
    ".json": "write the points as CSV or .npy",
    ".pkl": "pickles are never loaded; save the array with numpy.save(...) to a .npy file",
    ".pickle": "pickles are never loaded; save the array with numpy.save(...) to a .npy file",
}


def _fail(path: Path, problem: str) -> DataFileError:
    """The error for ``path``: ``data file 'PATH': PROBLEM``, forced onto one line."""
    if len(problem.splitlines()) != 1:  # never happens for our own texts; belt and braces
        problem = " ".join(problem.split())
    return DataFileError(f"data file {str(path)!r}: {problem}")


def _show_cell(cell: str) -> str:
    """A cell quoted for a message: repr (so control characters and newlines are escaped),
    cut to a few dozen characters."""
    if len(cell) > _CELL_SHOWN:
        return repr(cell[:_CELL_SHOWN]) + "..."
    return repr(cell)


def _one_line(exc: object) -> str:
    """An exception's message squeezed onto one line and cut short, for a ``DataFileError``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:160] + "..."


# --------------------------------------------------------------------------------------------
# reading the bytes


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, or a ``DataFileError`` for a missing/unreadable/non-regular file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative to {os.getcwd()!r})"
        raise _fail(path, f"no such file{where}") from None
    except PermissionError:
        raise _fail(path, "permission denied (cannot look up the file)") from None
    except ValueError as exc:  # e.g. an embedded NUL in the name
        raise _fail(path, f"invalid file name ({_one_line(exc)})") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {_one_line(exc.strerror or exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "is not a regular file (a device, pipe or socket?)")
    try:
        return path.read_bytes()
    except PermissionError:
        raise _fail(path, "permission denied (the file is not readable)") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a file") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {_one_line(exc.strerror or exc)}") from None


# --------------------------------------------------------------------------------------------
# text tables


def _decode_text(path: Path, data: bytes, kind: str) -> str:
    """The file's text: UTF-8, BOM dropped; binary data and other encodings refused."""
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            raise _fail(path, f"is {what}, not {kind} text")
    for bom, encoding in _UTF16_32_BOMS:
        if data.startswith(bom):
            raise _fail(path, f"is {encoding} text; save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _fail(path, f"contains a NUL byte at offset {nul}: a binary file, not {kind} text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(re.findall(rb"\r\n|\r|\n", data[: exc.start])) + 1
        raise _fail(
            path,
            f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (offset "
            f"{exc.start}) cannot be decoded; save the file as UTF-8 (or is it binary?)",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = _CONTROL.search(text)
    if bad is not None:
        line = len(re.findall(r"\r\n|\r|\n", text[: bad.start()])) + 1
        raise _fail(
            path,
            f"contains the control character {bad.group()!r} at line {line}: "
            f"a binary file, not {kind} text",
        )
    return text


def _records(path: Path, text: str, delimiter: str | None) -> Iterator[tuple[int, list[str]]]:
    """``(line number, raw cells)`` for every record of the text, blank lines included.

    ``delimiter=None`` splits on runs of spaces/tabs; otherwise the csv module splits (quotes
    honoured) on ``delimiter``.
    """
    if delimiter is None:
        for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
            stripped = line.strip(" \t")
            yield number, (re.split(r"[ \t]+", stripped) if stripped else [])
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        skipinitialspace=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _fail(path, f"line {start}: cannot be split into cells: {_one_line(exc)}") \
                from None
        yield start, row


def _is_blank(cells: list[str]) -> bool:
    return len(cells) <= 1 and all(not c.strip(" \t") for c in cells)


def _clean(cell: str) -> str:
    return cell.strip(" \t")


def _is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell) is not None


def _raise_cell_error(path: Path, number: int, cells: list[str], head: list[str] | None,
                      delimiter: str | None) -> None:
    """Raise the error for the first bad cell of line ``number`` (stripped ``cells``)."""
    width = len(cells)
    for col, cell in enumerate(cells, start=1):
        where = f"line {number}, column {col}"
        if head is not None and head[col - 1]:
            where += f" ({_show_cell(head[col - 1])})"
        if not cell:
            hint = " (a trailing separator?)" if col == width and width > 1 else ""
            raise _fail(path, f"{where}: empty cell{hint}")
        if not _is_number(cell):
            hint = ""
            if delimiter == "," and ";" in cell:
                hint = " (the file seems to use ';' as separator; use ',')"
            raise _fail(path, f"{where}: {_show_cell(cell)} is not a number{hint}")
        if not math.isfinite(float(cell)):
            if _NONFINITE_WORD.fullmatch(cell):
                raise _fail(path, f"{where}: non-finite value {_show_cell(cell)} "
                                  "(NaN and infinity are not allowed)")
            raise _fail(path, f"{where}: {_show_cell(cell)} is out of the float64 range")
    raise AssertionError(f"line {number} of {path} has no bad cell")  # pragma: no cover


def _parse_table(path: Path, text: str,
                 delimiter: str | None) -> tuple[np.ndarray, list[str] | None]:
    """Cells -> (float64 ``[N, D]``, the header's names or None), with the header,
    blank-line and cell rules of the module."""
    records = list(_records(path, text, delimiter))
    filled = [i for i, (_, cells) in enumerate(records) if not _is_blank(cells)]
    if not filled:
        raise _fail(path, "is empty (only blank lines)")
    first, last = filled[0], filled[-1]
    for number, cells in records[first:last + 1]:
        if _is_blank(cells):
            raise _fail(path, f"line {number} is blank, between data lines "
                              "(a missing value? remove the line)")

    head_line, head_cells = records[first]
    head = [_clean(c) for c in head_cells]
    text_cells = [c for c in head if c and not _is_number(c)]
    has_header = bool(text_cells)
    width = len(head)
    body = records[first + 1:last + 1] if has_header else records[first:last + 1]
    if has_header and not body:
        raise _fail(path, f"has no data rows: line {head_line} is its only line, read as a "
                          f"header because {_show_cell(text_cells[0])} is not a number")
    like = f"the header (line {head_line})" if has_header else f"line {head_line}"

    rows: list[list[float]] = []
    match, isfinite = _NUMBER.fullmatch, math.isfinite
    for number, raw in body:
        if len(raw) != width:
            raise _fail(path, f"line {number} has {len(raw)} column"
                              f"{'s' if len(raw) != 1 else ''} but {like} has {width}")
        cells = [c.strip(" \t") for c in raw]
        # fast path for a good row; a bad one is re-read cell by cell to say what is wrong
        if all(map(match, cells)):
            values = [float(c) for c in cells]
            if all(map(isfinite, values)):
                rows.append(values)
                continue
        _raise_cell_error(path, number, cells, head if has_header else None, delimiter)
    names = [c if c else f"x{j}" for j, c in enumerate(head)] if has_header else None
    return np.array(rows, dtype=np.float64).reshape(len(rows), width), names


def _read_table(path: Path, data: bytes, suffix: str) -> tuple[np.ndarray, list[str] | None]:
    kind = {".csv": "CSV", ".tsv": "TSV", ".txt": "text-table"}[suffix]
    if not data:
        raise _fail(path, "is empty (0 bytes)")
    text = _decode_text(path, data, kind)
    if suffix == ".csv":
        delimiter: str | None = ","
    elif suffix == ".tsv":
        delimiter = "\t"
    else:
        first_line = next((ln for ln in re.split(r"\r\n|\r|\n", text) if ln.strip(" \t")), "")
        delimiter = "," if "," in first_line else None
    return _parse_table(path, text, delimiter)


# --------------------------------------------------------------------------------------------
# .npy


def _looks_like_text(data: bytes) -> bool:
    """Whether the first 4 KiB decode as UTF-8 (a character cut at the end allowed), no NUL."""
    head = data[:4096]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == 4096 and exc.start >= len(head) - 3
    return True


def _read_npy(path: Path, data: bytes) -> np.ndarray:
    """A 1-D or 2-D integer/float ``.npy`` array as float64, checked before numpy reads it."""
    if not data:
        raise _fail(path, "is empty (0 bytes)")
    if not data.startswith(b"\x93NUMPY"):
        hint = ""
        if _looks_like_text(data):
            hint = " (it looks like text: a CSV file should end in .csv)"
        raise _fail(path, f"is not a NumPy .npy file (it does not start with the .npy "
                          f"magic bytes){hint}")
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            # 3.0 differs from 2.0 only in a UTF-8 header, which a numeric array never needs
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise _fail(path, f"unsupported .npy format version {version[0]}.{version[1]}")
    except DataFileError:
        raise
    except Exception as exc:
        # numpy parses the header with ast/tokenize, which on hostile bytes can raise almost
        # anything (ValueError, SyntaxError, tokenize.TokenError, RecursionError, ...); every
        # one of them means the same thing to the user.
        raise _fail(path, f"corrupt .npy header: {_one_line(exc)}") from None
    if dtype.hasobject:
        raise _fail(path, "holds Python objects (pickled data), which are never loaded; "
                          "save a numeric array")
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise _fail(path, f"has dtype {dtype.str!r}; expected an integer or floating-point "
                          "array")
    if any(d < 0 for d in shape):
        raise _fail(path, f"corrupt .npy header: negative shape {shape}")
    if len(shape) not in (1, 2):
        raise _fail(path, f"holds an array of shape {shape}; expected 1-D (one column) or 2-D "
                          "(rows x columns)")
    expected = math.prod(shape) * dtype.itemsize
    available = len(data) - fp.tell()
    if available < expected:
        raise _fail(path, f"is truncated: shape {shape} of {dtype.str} needs {expected} bytes "
                          f"of data but only {available} follow the header")
    if available > expected:
        raise _fail(path, f"has {available - expected} unexpected bytes after the array of "
                          f"shape {shape} (several arrays saved into one file?)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, TypeError, OverflowError, MemoryError, EOFError, OSError) as exc:
        raise _fail(path, f"cannot be read as a .npy array: {_one_line(exc)}") from None
    if not isinstance(array, np.ndarray):  # np.load of a .npy gives an array; be sure
        raise _fail(path, "is not a single NumPy array")
    points = array.astype(np.float64)
    if points.ndim == 1:
        points = points.reshape(-1, 1)
    if points.shape[1] == 0:
        raise _fail(path, f"holds an array of shape {shape}, with no columns")
    bad = ~np.isfinite(points)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        count = int(bad.sum())
        more = f" ({count - 1} more non-finite values)" if count > 1 else ""
        # an integer array never has non-finite values, so array[...] is a float here
        raise _fail(path, f"non-finite value {float(points[i, j])!r} at row {i + 1}, column {j + 1}"
                          f"{more}; NaN and infinity are not allowed")
    return np.ascontiguousarray(points)


# --------------------------------------------------------------------------------------------
# public API


def as_float32(path: str | os.PathLike[str], array: np.ndarray) -> np.ndarray:
    """``array`` as float32, vaelab's precision for points; a value too large for it (it
    would become infinity, and every density NaN) is a :class:`~vaelab.errors.DataFileError`
    naming the file, the row and the column."""
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = np.asarray(array).astype(np.float32)
    bad = ~np.isfinite(as32)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise _fail(Path(os.fspath(path)), f"value {float(array[i, j])!r} at data row {i + 1}, "
                                           f"column {j + 1} does not fit in float32 "
                                           "(|x| > 3.4e38); rescale the data")
    return as32


def read_points(path: str | os.PathLike[str]) -> np.ndarray:
    """The points in a data file as a float64 array ``[N, D]``, ``N >= 2``, ``D >= 1``, finite.
    See :func:`read_table`, which also returns the column names."""
    return read_table(path)[0]


def read_table(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str] | None]:
    """The points in a data file as a float64 array ``[N, D]``, ``N >= 2``, ``D >= 1``, finite,
    and its header's column names (None for a file with no header, and for .npy).

    The format follows the extension (see :data:`EXTENSIONS` and the module docstring for the
    exact text rules). Any problem with the file (missing, a directory, unreadable, empty,
    binary or not UTF-8, malformed, ragged, non-numeric, NaN/inf, fewer than 2 points) raises
    :class:`~vaelab.errors.DataFileError` with a one-line message naming the file; no other
    exception escapes for a bad file.
    """
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        what = f"extension {suffix!r}" if suffix else "no extension"
        hint = f"; {_EXTENSION_HINTS[suffix]}" if suffix in _EXTENSION_HINTS else ""
        raise _fail(path, f"has {what}; accepted: {', '.join(EXTENSIONS)}{hint}")
    data = _read_bytes(path)
    points, names = ((_read_npy(path, data), None) if suffix == ".npy"
                     else _read_table(path, data, suffix))
    n = points.shape[0]
    if n < MIN_POINTS:
        raise _fail(path, f"has only {n} data row{'s' if n != 1 else ''}; at least "
                          f"{MIN_POINTS} points are needed")
    return points, names


def fingerprint(points: np.ndarray | torch.Tensor, names: list[str] | None) -> dict[str, Any]:
    """What identifies a data set, whatever file holds it: the SHA-256 of its values as
    little-endian float64 in row order (so the same numbers re-saved in another format or
    layout match, and any changed value does not), its rows, columns and column names."""
    array = (points.detach().cpu().numpy() if isinstance(points, torch.Tensor)
             else np.asarray(points))
    values = np.ascontiguousarray(array, dtype="<f8")
    return {"sha256": hashlib.sha256(values.tobytes()).hexdigest(),
            "rows": int(values.shape[0]), "columns": int(values.shape[1]),
            "column_names": names}


def split_count(n: int, fraction: float) -> int:
    """How many of ``n`` rows :func:`split_points` puts in its second part:
    ``round(fraction * n)``, clamped to ``[1, n - 1]`` so each part has at least one row."""
    return min(max(round(fraction * n), 1), n - 1)


def split_points(points: np.ndarray | torch.Tensor, n_test_fraction: float = 0.2, *,
                 seed: int) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    """Split ``points`` ``[N, D]`` into ``(train, test)``, deterministically from ``seed``.

    The test part is the rows at the first ``round(n_test_fraction * N)`` positions of
    ``numpy.random.default_rng(seed).permutation(N)``, that count clamped to ``[1, N - 1]`` so
    each part has at least one point; train is every other row. Both parts keep the rows in
    their original order (indices sorted), so the split depends only on ``(N, fraction,
    seed)``: the same file and seed always give the same split, on any machine. Returns the
    input's type (numpy arrays, or tensors on the input's device).

    Raises :class:`~vaelab.errors.ConfigError` for a fraction outside ``(0, 1)`` and
    ``ValueError`` for fewer than 2 points or a non-2-D input.
    """
    try:
        fraction = float(n_test_fraction)
    except (TypeError, ValueError):
        fraction = math.nan
    if isinstance(n_test_fraction, bool) or not 0.0 < fraction < 1.0:
        raise ConfigError(f"test fraction must be strictly between 0 and 1, got "
                          f"{n_test_fraction!r}")
    if points.ndim != 2:
        raise ValueError(f"points must have shape [N, D], got {tuple(points.shape)}")
    n = int(points.shape[0])
    if n < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points to split, got {n}")
    n_test = split_count(n, fraction)
    perm = np.random.default_rng(seed).permutation(n)
    test_idx = np.sort(perm[:n_test])
    train_idx = np.sort(perm[n_test:])
    if isinstance(points, torch.Tensor):
        return (points[torch.from_numpy(train_idx).to(points.device)],
                points[torch.from_numpy(test_idx).to(points.device)])
    return points[train_idx], points[test_idx]


#: a column whose standard deviation is below this fraction of its largest magnitude spans
#: only a few float32 steps (2**-23 apart, relatively): too few values to have a density
MIN_RELATIVE_SPREAD = 2.0 ** -20


def _check_spread(path: Path, points: np.ndarray, names: list[str] | None) -> None:
    """Refuse a column without spread (every row the same value as float32 holds it, or
    differing by a few float32 steps): a density on it is a spike, so training "succeeds"
    with a meaningless loss and every log p(x) after is infinite or arbitrary."""
    values = points.astype(np.float64)
    spread = values.std(axis=0)
    size = np.abs(values).max(axis=0)
    for j in np.flatnonzero(spread <= MIN_RELATIVE_SPREAD * size):
        name = f" ({names[j]!r})" if names is not None and j < len(names) else ""
        column = f"column {j + 1}{name}"
        if spread[j] == 0:
            why = f"{column} holds the same value, {float(values[0, j]):.9g}, in every row"
        else:
            why = (f"{column} varies by only {float(spread[j]):.3g} around "
                   f"{float(values[:, j].mean()):.9g}, a few steps of float32 (vaelab's "
                   "precision)")
        raise _fail(path, f"{why}: a column without spread has no density; drop it"
                          + ("" if spread[j] == 0 else ", or subtract its mean first"))


class FileSource(DataSource):
    """The empirical distribution of the points in a file: ``sample`` draws rows uniformly,
    with replacement.

    ``FileSource(path)`` reads the file with :func:`read_points`; ``FileSource(path, points)``
    wraps points already read from it (e.g. the training part of :func:`split_points`).
    Points are held as float32; a value too large for float32 is a ``DataFileError``.
    There is no density (``has_density = False``).
    """

    has_density = False

    def __init__(self, path: str | os.PathLike[str],
                 points: np.ndarray | torch.Tensor | None = None) -> None:
        self.path = Path(os.fspath(path))
        self.name = str(self.path)
        #: the header's column names (None without a header, and for .npy)
        self.column_names: list[str] | None = None
        self._fingerprint: dict[str, Any] | None = None  # the points never change
        if points is None:
            points, self.column_names = read_table(self.path)
        array = (points.detach().cpu().numpy() if isinstance(points, torch.Tensor)
                 else np.asarray(points))
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise ValueError(f"points must have shape [N >= 1, D >= 1], got {array.shape}")
        as32 = as_float32(self.path, array)
        _check_spread(self.path, as32, self.column_names)
        #: all the points, float32 ``[N, D]`` on the CPU
        self.points = torch.from_numpy(np.ascontiguousarray(as32))
        self.dim = int(self.points.shape[1])
        self._on_device: dict[str, torch.Tensor] = {"cpu": self.points}

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def fingerprint(self) -> dict[str, Any]:
        """:func:`fingerprint` of the points as training reads them (float32), hashed once
        per source (a group records it for each of its models)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.points, self.column_names)
        return dict(self._fingerprint)

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``n`` rows drawn uniformly with replacement (indices from ``generator``), float32
        on ``device``. The points are copied to a device once and kept there."""
        device = torch.device(device)
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.points.to(device)
        idx = torch.randint(0, len(self), (n,), generator=generator, device=device)
        return self._on_device[key][idx]

    def __repr__(self) -> str:
        return f"FileSource({self.name!r}, n={len(self)}, dim={self.dim})"


def load_source(path: str | os.PathLike[str]) -> FileSource:
    """A :class:`FileSource` over the points in ``path`` (see :func:`read_points`)."""
    return FileSource(path)
