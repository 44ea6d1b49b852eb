"""Atomic file writes: a file is either its old self or its complete new self, never half."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename.

    The rename is atomic on POSIX, so a reader (or a crash) sees either the previous file
    or the finished new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the suffix (a writer may require it: AOTInductor's ".pt2")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tensors_digest(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order, and, where
    ``meta`` is given, over its keys and values (``sha256`` itself left out) first.

    Stored in a safetensors file's metadata, it lets a reader tell a corrupted or edited
    file (a flipped bit in a weight, or an edited step count, is otherwise still a valid
    file) from the one written.
    """
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps({k: v for k, v in sorted(meta.items()) if k != "sha256"},
                            sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors blob (its JSON header's ``__metadata__``)."""
    if len(data) < 8:
        raise ValueError("file too short")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("malformed metadata")
    return meta
