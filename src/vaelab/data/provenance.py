"""The data a run was trained on, remembered in its directory: for a data file's run,
``data.json`` holds the file's path and the fingerprint of its data
(:func:`vaelab.data.files.fingerprint`: the SHA-256 of its values, rows, columns, column
names), and ``heldout.npy`` its held-out rows where they are few enough. ``--resume`` and
``evaluate`` check the data they read against it, so that other data is one clear error and
never used silently; the kept rows let ``evaluate`` work after the file is gone."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import RunConfig
from vaelab.data.files import FileSource, fingerprint, read_points, split_points
from vaelab.errors import RunError
from vaelab.fileio import atomic_write_bytes, atomic_write_text

#: a data file's run: the file it was trained on and the data's fingerprint
DATA_FILE = "data.json"
#: a data file's held-out rows, kept in the run when they are few enough (float32 values, at
#: most :data:`HELDOUT_MAX_VALUES`), so that ``evaluate`` works after the file is gone
HELDOUT_FILE = "heldout.npy"
HELDOUT_MAX_VALUES = 1_000_000


def remember_data(path: Path, config: RunConfig, source: Any) -> None:
    """For a data file's run: write ``path/data.json`` (the file, its data's fingerprint and
    the held-out rows' digest) and, below :data:`HELDOUT_MAX_VALUES`, the held-out rows."""
    if not isinstance(source, FileSource):
        return
    _, test = split_points(source.points, config.data.test_fraction, seed=config.train.seed)
    test32 = np.ascontiguousarray(np.asarray(test, dtype=np.float32))
    record: dict[str, Any] = {"path": str(source.path), **source.fingerprint(),
                              "heldout": {**fingerprint(test32, source.column_names),
                                          "kept": test32.size <= HELDOUT_MAX_VALUES}}
    if record["heldout"]["kept"]:
        buffer = io.BytesIO()
        np.save(buffer, test32, allow_pickle=False)
        atomic_write_bytes(path / HELDOUT_FILE, buffer.getvalue())
        record["heldout"]["file_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    atomic_write_text(path / DATA_FILE, json.dumps(record, indent=1) + "\n")


def kept_heldout(path: Path) -> np.ndarray | None:
    """The held-out rows a data file's run keeps (``path/heldout.npy``, its digest checked
    against ``data.json``), or None where it keeps none."""
    file = path / HELDOUT_FILE
    try:
        saved = json.loads((path / DATA_FILE).read_text(encoding="utf-8"))["heldout"]
        digest = saved.get("file_sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if digest is None or not file.is_file():
        return None
    if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
        raise RunError(f"{file} does not match the digest in {path / DATA_FILE} (was it "
                       "edited?); its held-out rows cannot be trusted")
    return read_points(file)


def check_data(path: Path, source: Any, hint: str) -> None:
    """Refuse ``source`` unless it holds the data the run in ``path`` was trained on (by
    ``path/data.json``; a run with no record, written before vaelab kept one, is not checked).
    ``hint`` says what to do instead, in the error's one line."""
    file = path / DATA_FILE
    if not isinstance(source, FileSource) or not file.is_file():
        return
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        expected = {key: saved[key] for key in ("sha256", "rows", "columns")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{file} is unreadable or malformed ({type(exc).__name__}); the run's "
                       "data cannot be checked") from None
    now = source.fingerprint()
    if {key: now[key] for key in expected} != expected:
        raise RunError(
            f"{source.path} is not the data this run was trained on (then {saved['rows']} rows "
            f"x {saved['columns']} columns, sha256 {str(saved['sha256'])[:12]}; now "
            f"{now['rows']} x {now['columns']}, sha256 {now['sha256'][:12]}): {hint}")
