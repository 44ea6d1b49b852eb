"""What a sweep keeps in its directory, besides its trials' run directories.

::

    DIR/sweep-settings.json   the sweep as started: base config, search space, searcher,
                              trials, seeds, metric, seed, and the planned points of a grid
                              or random search (what ``vaelab sweep --resume DIR`` continues)
    DIR/.trials/NAME.json     one finished trial's row, written by the trial itself (or by
                              the driver for a trial Ray stopped or lost), so that a driver
                              killed at any moment loses no finished trial
    DIR/sweep.csv, sweep.json one row per trial, rebuilt from ``.trials`` at the end
    DIR/NAME/                 the trial's ordinary run directory (a group's with --seeds)
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import RunError
from vaelab.fileio import atomic_write_text, read_json

SETTINGS_FILE = "sweep-settings.json"
SETTINGS_FORMAT = "vaelab-sweep-1"
ROWS_DIR = ".trials"
CSV_FILE = "sweep.csv"
JSON_FILE = "sweep.json"
#: a trial's outcome: trained and scored; raised an error (its reason kept); stopped early
STATUSES = ("done", "failed", "stopped")
#: the columns of sweep.csv around the searched keys and the metric
HEAD_COLUMNS = ("trial", "status")
TAIL_COLUMNS = ("steps", "seconds", "wall_seconds", "node", "reason", "path")
#: the metrics a sweep can rank trials by, all lower-better
METRICS = ("nll_gap", "nll", "c2st")
#: the key every report to Ray Tune carries, the searcher's and the scheduler's objective:
#: the held-out -ELBO while training (with early stopping), the metric at the end
SCORE = "score"


@dataclass
class TrialSpec:
    """What a worker needs to run trial ``index``: plain data, cheap to ship to a node
    (here, not in :mod:`vaelab.sweep.trial`, so that the driver, which builds them, never
    imports torch)."""

    index: int
    name: str
    point: dict[str, Any]  # {dotted path: value}
    labels: dict[str, Any]  # {the key as the user gave it: value}, for the row
    base: dict[str, Any]  # the base RunConfig as a dict
    out: str
    metric: str
    seeds: int | None = None
    eval_n: int = 2000
    eval_k: int = 100
    eval_seed: int = 0
    early_stop: bool = False
    report_every: int = 0  # steps between held-out estimates (early stopping)


def trial_name(index: int) -> str:
    """The run directory (and row) name of trial ``index``: ``trial-007``."""
    return f"trial-{index:03d}"


def save_settings(out: Path, settings: dict[str, Any]) -> None:
    atomic_write_text(out / SETTINGS_FILE, json.dumps(
        {"format": SETTINGS_FORMAT, **settings}, indent=2) + "\n")


def load_settings(out: Path) -> dict[str, Any]:
    """The settings a sweep saved when it started; a RunError if ``out`` holds none."""
    path = out / SETTINGS_FILE
    data = read_json(path, f"{out} holds no {SETTINGS_FILE}: it is not a vaelab sweep")
    if not isinstance(data, dict) or data.get("format") != SETTINGS_FORMAT:
        raise RunError(f"{path} is not a vaelab sweep's settings (format {SETTINGS_FORMAT!r})")
    return data


def save_row(out: Path, row: dict[str, Any]) -> None:
    """Record a finished trial (atomically: a row file is whole or absent)."""
    atomic_write_text(out / ROWS_DIR / f"{row['trial']}.json",
                      json.dumps(row, indent=2, default=str) + "\n")


def load_rows(out: Path) -> dict[str, dict[str, Any]]:
    """The finished trials' rows by trial name (an unreadable row counts as unfinished)."""
    rows: dict[str, dict[str, Any]] = {}
    folder = out / ROWS_DIR
    if not folder.is_dir():
        return rows
    for path in sorted(folder.glob("trial-*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(row, dict) and row.get("status") in STATUSES and "trial" in row:
            rows[row["trial"]] = row
    return rows


def best_row(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The finished trial with the lowest ``metric`` (every metric here is lower-better)."""
    scored = [r for r in rows if r.get("status") == "done" and _finite(r.get(metric))]
    return min(scored, key=lambda r: r[metric]) if scored else None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def write_table(out: Path, rows: list[dict[str, Any]], keys: list[str], metric: str,
                extra: dict[str, Any]) -> None:
    """``sweep.csv`` (one row per trial, in trial order) and ``sweep.json`` (the same rows,
    the metric, the best trial and ``extra``)."""
    columns = [*HEAD_COLUMNS, *keys, metric, *TAIL_COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    atomic_write_text(out / CSV_FILE, buf.getvalue())
    best = best_row(rows, metric)
    atomic_write_text(out / JSON_FILE, json.dumps(
        {"metric": metric, "mode": "min", "best": best["trial"] if best else None,
         **extra, "trials": rows}, indent=2, default=str) + "\n")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return value
