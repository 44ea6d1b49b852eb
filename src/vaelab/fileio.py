"""Atomic file writes: a file is either its old self or its complete new self, never half."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.errors import RunError, WriteError

if TYPE_CHECKING:  # (imported where a digest is taken: the sweep's driver writes files and
    import torch  # never imports torch)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 stale: bool = False) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename.

    The rename is atomic on POSIX, so a reader (or a crash) sees either the previous file
    or the finished new one; the temporary file is removed on any exception (a signal's
    included). A file system error is a :class:`~vaelab.errors.WriteError` naming ``path``.
    ``stale``: first remove the temporary files an earlier writer of ``path`` left when it
    was killed (SIGKILL runs no cleanup); only for a writer that holds ``path``'s
    directory alone (:mod:`vaelab.locks`).
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory", errno.EISDIR,
                         "it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if stale:
            remove_stale_temps(path)
        # the temporary name keeps the suffix (a writer may require it: AOTInductor's ".pt2")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                   dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, WriteError):
            raise
        raise _write_error(path, exc) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {exc.strerror or exc}", exc.errno,
                      exc.strerror or str(exc))


def remove_stale_temps(path: Path) -> None:
    """Remove the temporary files :func:`atomic_write` makes for ``path``
    (``.NAME.XXXX.tmpSUFFIX``) that a killed writer left behind."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}"):
        tmp.unlink(missing_ok=True)


#: the figure formats vaelab writes, by extension
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_output(path: Path, flag: str, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output file ``path`` (given as ``flag``) that is a
    directory, has an extension outside ``suffixes``, or lies in a folder that cannot be
    written (read-only, not a folder): a :class:`~vaelab.errors.RunError` naming it."""
    if path.is_dir():
        raise RunError(f"{flag} {path} is a directory: give the file to write")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        got = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise RunError(f"{flag} {path} has {got}: give a file ending in "
                       f"{', '.join(suffixes)}")
    check_writable_dir(path.parent, f"{flag} {path}")


def check_writable_dir(directory: Path, what: str) -> None:
    """Refuse ``directory`` (or, where it does not exist yet, its nearest existing parent)
    when a file cannot be created in it: a RunError naming ``what``."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"cannot write {what}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        where = "" if existing == directory else f" ({existing})"
        raise RunError(f"cannot write {what}{where}: {exc.strerror or exc}") from None


def read_json(path: Path, missing: str) -> Any:
    """The JSON value in ``path``; a RunError saying ``missing`` if there is no such file, or
    that it is not readable JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(missing) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"{path} is not readable JSON: {exc}") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes, stale: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (``stale``: as :func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_bytes(data), stale=stale)


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
    import torch

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
