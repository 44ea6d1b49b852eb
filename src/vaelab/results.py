"""What ``vaelab evaluate`` and ``vaelab convergence`` leave in a run directory, for the report.

    evaluation.json       the last ``evaluate``'s numbers (what ``--json`` writes)
    convergence.json      the last ``convergence``'s table
    density.safetensors   the model's (and the true) log p(x) on the grid of density.png

Each records the SHA-256 of the weights it measured (``model_sha256``, as
:func:`vaelab.fileio.tensors_digest` computes it), so that a result of an earlier model (a run
trained again with ``--force``, say) is recognised as stale rather than shown as this one's.
"""

from __future__ import annotations

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


def model_digest(model: torch.nn.Module) -> str:
    """The SHA-256 of a model's weights alone (:func:`vaelab.fileio.tensors_digest` without
    metadata): it names the weights measured, whatever the run's other files hold."""
    return tensors_digest({k: v.detach().cpu() for k, v in model.state_dict().items()})


def save_result(path: Path, result: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Write ``result`` as JSON with the digest of ``model``; returns what was written."""
    record = {**result, "model_sha256": model_digest(model)}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def load_result(path: Path) -> dict[str, Any] | None:
    """A saved result, or None if there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def save_density(path: Path, grid: dict[str, Any], model: torch.nn.Module) -> None:
    """Write a density grid (:func:`vaelab.evaluation.density_grid`) as safetensors."""
    tensors = {name: torch.as_tensor(np.asarray(grid[name], dtype=np.float32))
               for name in ("gx", "gy", "model_logp", "true_logp") if grid.get(name) is not None}
    meta = {"format": "vaelab-density-1", "k": str(grid["k"]),
            "model_sha256": model_digest(model)}
    atomic_write_bytes(path, save_tensors(tensors, metadata=meta))


def load_density(path: Path) -> dict[str, Any] | None:
    """A saved density grid (numpy arrays, ``k``, ``model_sha256``), or None."""
    try:
        data = path.read_bytes()
        tensors = load_tensors(data)
        meta = safetensors_metadata(data)
        grid: dict[str, Any] = {name: t.numpy() for name, t in tensors.items()}
        grid["k"] = int(meta["k"])
        grid["model_sha256"] = meta.get("model_sha256")
    except (OSError, SafetensorError, ValueError, KeyError, RuntimeError):
        return None
    if not {"gx", "gy", "model_logp"} <= set(grid):
        return None
    grid.setdefault("true_logp", None)
    return grid
