"""SIGINT and SIGTERM as a request to stop: the training loop saves a checkpoint, then stops."""

from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set ``signum``; the loop saves and stops.

    A second signal while one is pending interrupts at once (KeyboardInterrupt). Signal
    handlers can be set only in the main thread; elsewhere (or ``enabled=False``) this does
    nothing and the signals keep their usual effect.
    """

    NAMES = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    @property
    def name(self) -> str:
        return self.NAMES.get(self.signum, "stopped")  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if self.enabled:
            for sig in self.NAMES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
