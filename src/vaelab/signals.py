"""SIGINT and SIGTERM as a request to stop: the training loop saves a checkpoint, then stops;
anywhere else (start-up, reading data, building the compiled step, writing results) the
command stops at once with one line, its temporary files removed on the way out
(:func:`vaelab.fileio.atomic_write` deletes its temporary file on any exception)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NAMES = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}


class SignalExit(BaseException):  # noqa: N818 - it is an exit, as SystemExit is
    """SIGINT or SIGTERM: stop now. A BaseException, so that no ``except Exception`` (a
    compiler failure turned into one line, say) takes it for an error; ``finally`` blocks
    and cleanup handlers still run. ``str()`` is its one line."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        super().__init__(message or NAMES.get(signum, f"stopped by signal {signum}"))
        self.signum = signum


def _raise_exit(signum: int, frame: object) -> None:
    raise SignalExit(signum)


@contextmanager
def exit_on_signals() -> Iterator[None]:
    """While active (main thread only), SIGINT and SIGTERM raise :class:`SignalExit`
    instead of a bare KeyboardInterrupt or the silent default end of SIGTERM; the previous
    handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _raise_exit) for sig in NAMES}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set ``signum``; the loop saves and stops.

    A second signal while one is pending stops at once (:class:`SignalExit`, its line ending
    with ``hint``: how to resume from the last checkpoint). Signal handlers can be set only
    in the main thread; elsewhere (or ``enabled=False``) this does nothing and the signals
    keep their usual effect.
    """

    NAMES = NAMES

    def __init__(self, enabled: bool, hint: str = "") -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self.hint = hint
        self._old: dict[int, object] = {}

    @property
    def name(self) -> str:
        return self.NAMES.get(self.signum, "stopped")  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            hint = f"; {self.hint}" if self.hint else ""
            raise SignalExit(signum, f"{NAMES.get(signum, 'stopped')} a second time: stopped "
                             f"at once, before the checkpoint{hint}")
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if self.enabled:
            for sig in self.NAMES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
