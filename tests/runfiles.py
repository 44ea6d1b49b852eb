"""Test helpers for run directories: edit a file of a run, and sign the run again as if it
had been written so.

A run's ``model.safetensors`` records the SHA-256 of its other files, so an edit of any of
them is refused first; tests of what load_run checks *beyond* the checksums (a config that
does not match the weights, NaN frames) edit a file and then call :func:`resign`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from vaelab.fileio import safetensors_metadata, tensors_digest
from vaelab.runs import COVERED_FILES, FRAMES_FILE, MODEL_FILE, NO_FILE, OPTIONAL_COVERED

Edit = Callable[[dict[str, torch.Tensor], dict[str, str]], None]


def rewrite(path: Path, edit: Edit, sign: bool = True) -> None:
    """Rewrite the safetensors file ``path`` after ``edit(tensors, meta)``; with ``sign``,
    its ``sha256`` is computed again (over tensors and metadata)."""
    data = path.read_bytes()
    tensors, meta = dict(load_tensors(data)), safetensors_metadata(data)
    edit(tensors, meta)
    if sign:
        meta["sha256"] = tensors_digest(tensors, meta)
    path.write_bytes(save_tensors(tensors, metadata=meta))


def edit_frames(run: Path, edit: Edit) -> None:
    """Edit ``run``'s frames file, sign it again, and the run with it."""
    rewrite(run / FRAMES_FILE, edit)
    resign(run)


def resign(run: Path) -> None:
    """Record the SHA-256 of ``run``'s files as they are now in its model file."""
    def edit(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        for name, key in COVERED_FILES.items():
            meta[key] = hashlib.sha256((run / name).read_bytes()).hexdigest()
        for name, key in OPTIONAL_COVERED.items():
            meta[key] = (hashlib.sha256((run / name).read_bytes()).hexdigest()
                         if (run / name).is_file() else NO_FILE)

    rewrite(run / MODEL_FILE, edit)


def flip(path: Path, offset_from_end: int = 3) -> None:
    """Flip one bit of ``path``, ``offset_from_end`` bytes before its end (in tensor data)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))
