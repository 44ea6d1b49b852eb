"""A run you can look at: one self-contained HTML page of a run, or of several side by side.

:func:`build_report` takes runs as :class:`vaelab.runs.Run` holds them (loaded, or just
trained) and returns a :class:`Report`: ``save(path)`` writes the page, and in Jupyter it
displays inline. ``vaelab report RUN ...`` and ``run.report()`` use it, and ``vaelab train``
writes ``RUN/report.html`` with it. What ``vaelab evaluate`` and ``vaelab convergence``
measured is read from each run's directory; what is missing is named with the command that
adds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vaelab.errors import RunError
from vaelab.report.page import Report

if TYPE_CHECKING:
    from vaelab.runs import Run


def build_report(runs: Sequence[Run], title: str | None = None) -> Report:
    """One run's report, or (for several) their comparison; ``title`` names the page of
    several (a group's directory, say)."""
    from vaelab.report.sections import comparison_page, run_page

    runs = list(runs)
    if not runs:
        raise RunError("a report needs at least one run")
    if len(runs) == 1 and title is None:
        page = run_page(runs[0])
    else:
        page = comparison_page(runs, title or f"vaelab comparison of {len(runs)} runs")
    return Report(page.render(), page.title)


__all__ = ["Report", "build_report"]
