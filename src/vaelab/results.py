"""What ``vaelab evaluate`` and ``vaelab convergence`` leave in a run directory, for the report.

    evaluation.json       the last ``evaluate``'s numbers (what ``--json`` writes)
    convergence.json      the last ``convergence``'s table
    density.safetensors   the model's (and the true) log p(x) on the grid of density.png

Each records the SHA-256 of the weights it measured (``model_sha256``, as
:func:`vaelab.fileio.tensors_digest` computes it), so that a result of an earlier model (a run
trained again with ``--force``, say) is recognised as stale rather than shown as this one's;
and a ``sha256`` of its own contents, so that an edited or damaged one is recognised as
such (:data:`DAMAGED`) rather than shown. Results saved before that checksum have none, and
are shown as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from vaelab.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    safetensors_metadata,
    tensors_digest,
)

EVALUATION_FILE = "evaluation.json"
CONVERGENCE_FILE = "convergence.json"
DENSITY_FILE = "density.safetensors"
#: the files of this module, removed with a run's own when it is trained again (``--force``)
RESULT_FILES = (EVALUATION_FILE, CONVERGENCE_FILE, DENSITY_FILE)
#: what :func:`load_result` and :func:`load_density` return for a file that fails its
#: checksum (compare with ``is``)
DAMAGED: dict[str, Any] = {}


def model_digest(model: torch.nn.Module) -> str:
    """The SHA-256 of a model's weights alone (:func:`vaelab.fileio.tensors_digest` without
    metadata): it names the weights measured, whatever the run's other files hold."""
    return tensors_digest({k: v.detach().cpu() for k, v in model.state_dict().items()})


def save_result(path: Path, result: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Write ``result`` as JSON with the digest of ``model``; returns what was written."""
    record = {**result, "model_sha256": model_digest(model)}
    record["sha256"] = record_digest(record)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def record_digest(record: dict[str, Any]) -> str:
    """The SHA-256 of a result's JSON (its keys sorted, ``sha256`` itself left out)."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def load_result(path: Path) -> dict[str, Any] | None:
    """A saved result, or None if there is none or it cannot be read; :data:`DAMAGED` if
    it fails its checksum."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if "sha256" in data and data["sha256"] != record_digest(data):
        return DAMAGED
    return data


def save_density(path: Path, grid: dict[str, Any], model: torch.nn.Module) -> None:
    """Write a density grid (:func:`vaelab.evaluation.density_grid`) as safetensors."""
    tensors = {name: torch.as_tensor(np.asarray(grid[name], dtype=np.float32))
               for name in ("gx", "gy", "model_logp", "true_logp") if grid.get(name) is not None}
    meta = {"format": "vaelab-density-1", "k": str(grid["k"]),
            "model_sha256": model_digest(model)}
    meta["sha256"] = tensors_digest(tensors, meta)
    atomic_write_bytes(path, save_tensors(tensors, metadata=meta))


def load_density(path: Path) -> dict[str, Any] | None:
    """A saved density grid (numpy arrays, ``k``, ``model_sha256``), or None;
    :data:`DAMAGED` if it fails its checksum."""
    try:
        data = path.read_bytes()
        tensors = load_tensors(data)
        meta = safetensors_metadata(data)
        if "sha256" in meta and meta["sha256"] != tensors_digest(tensors, meta):
            return DAMAGED
        grid: dict[str, Any] = {name: t.numpy() for name, t in tensors.items()}
        grid["k"] = int(meta["k"])
        grid["model_sha256"] = meta.get("model_sha256")
    except (OSError, SafetensorError, ValueError, KeyError, RuntimeError):
        return None
    if not {"gx", "gy", "model_logp"} <= set(grid):
        return None
    grid.setdefault("true_logp", None)
    return grid
