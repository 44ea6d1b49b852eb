"""One writer per run directory: an exclusive lock for the whole of a train, ``--force`` or
``--resume``.

The lock is ``flock`` on ``DIR/.vaelab.lock`` (which holds the writer's PID, to name it): the
kernel releases it when the process ends, however it ends, so a run killed with SIGKILL never
needs unlocking by hand. A second writer is refused at once, with one line naming the holder.
The file stays in place (removing it would let two writers lock two different files); it is
no part of the run, and a directory holding only it counts as empty.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from vaelab.errors import RunError

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".vaelab.lock"


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"PID {text}"
    return "another process"


@contextlib.contextmanager
def run_lock(*paths: Path) -> Iterator[None]:
    """Hold the write lock of every directory in ``paths`` (created if need be) until the
    block ends; a RunError (one line, naming the holder's PID) if another process holds one."""
    fds: list[int] = []
    try:
        for path in paths:
            try:
                path.mkdir(parents=True, exist_ok=True)
                fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunError(f"cannot create output directory {path}: "
                               f"{exc.strerror or exc}") from None
            fds.append(fd)
            if fcntl is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"{path} is being written by {_holder(fd)} (another vaelab "
                               "train, --force or --resume): wait for it to end, or stop it"
                               ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # releases the lock
