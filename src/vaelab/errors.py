"""The one exception type vaelab raises for problems a user can fix, and its message helpers.

The CLI turns a :class:`VaelabError` into a single ``vaelab: error: ...`` line and a
non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class VaelabError(Exception):
    """A user-facing error: bad input, bad option value, unreadable or untrusted file."""


class ConfigError(VaelabError):
    """A configuration value, key or file that cannot be accepted."""


class RunError(VaelabError):
    """A run directory that cannot be written or loaded."""


class WriteError(RunError, OSError):
    """A file that could not be written (a read-only or full disk, a directory in the way):
    one line naming the file, not its temporary twin. Also an OSError, so that code that
    tolerates a failed write (a result the report would show) still catches it."""

    def __init__(self, message: str, errno: int | None = None,
                 strerror: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.strerror = strerror  # the reason alone, for messages that name the file

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] reason"
        return str(self.args[0]) if self.args else ""


class DataFileError(VaelabError):
    """A data file that cannot be read as points (missing, unreadable, malformed, non-finite)."""


class TrainingDiverged(VaelabError):
    """The loss or its gradient became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(VaelabError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def unknown_name_message(what: str, name: str, valid: list[str]) -> str:
    """'unknown preset 'sed' (did you mean: seed?; valid: seed)': the close matches first."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}?; " if close else ""
    return f"unknown {what} {name!r} ({hint}valid: {', '.join(valid)})"
