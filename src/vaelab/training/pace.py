"""The loop's step rate, watched at metrics rows: a collapse, or a time limit that bought far
too few steps, is told once on standard error with its remedy, and kept in the summary.

Other processes on the cores can make a multi-threaded step many times slower (its threads
wait for each other); one thread per process (vaelab's default) keeps its speed there.
Nothing here changes how a run trains: it only reads the clock the loop already reads.
"""

from __future__ import annotations

import sys

import torch

#: an interval this many times slower than the fastest one so far is slow; two slow intervals
#: in a row are a collapse (one alone is a pause: a checkpoint, a frame, a short spell)
COLLAPSE = 3.0
#: a time-limited run with fewer steps than this is warned about (a preset trains >= 10,000)
MIN_STEPS = 1000



def remedy() -> str:
    """What to do when the step rate collapses: fewer threads, if there are several."""
    if torch.get_num_threads() > 1:
        return (f"other processes are using the cores and this run's "
                f"{torch.get_num_threads()} threads wait for each other: train with "
                f"--threads 1 (one thread keeps its speed there), or when the machine is "
                f"less busy")
    return ("other processes are using this core: train when the machine is less busy, or "
            "give the run a core of its own (taskset)")


class Pace:
    """Rates between metrics rows; ``warnings`` holds what was said (once each)."""

    def __init__(self, step: int, elapsed: float) -> None:
        self.last = (step, elapsed)
        self.best = 0.0
        self.first: float | None = None  # the first interval's rate
        self.slow = 0  # slow intervals in a row
        self.warnings: list[str] = []

    def _say(self, message: str) -> None:
        self.warnings.append(message)
        print(f"vaelab: warning: {message}", file=sys.stderr, flush=True)

    def row(self, step: int, elapsed: float) -> None:
        """A metrics row at ``step``, ``elapsed`` training seconds in."""
        steps, seconds = step - self.last[0], elapsed - self.last[1]
        self.last = (step, elapsed)
        if steps <= 0 or seconds <= 0:
            return
        rate = steps / seconds
        self.first = rate if self.first is None else self.first
        self.slow = self.slow + 1 if self.best and rate * COLLAPSE < self.best else 0
        if self.slow >= 2 and not self.warnings:
            self._say(f"training slowed from {self.best:.0f} to {rate:.0f} steps/s at step "
                      f"{step}: {remedy()}")
        self.best = max(self.best, rate)

    def finish(self, steps: int, time_limit: float | None, by_time: bool) -> dict[str, object]:
        """The summary's ``pace``: the steps a time limit bought, against what the first
        interval's rate predicted, and any warning."""
        predicted = (round(self.first * time_limit) if self.first and time_limit is not None
                     else None)
        if by_time and steps < MIN_STEPS:
            self._say(f"the time limit ({time_limit:g} s) bought only {steps} steps, fewer than "
                      f"{MIN_STEPS:,}: the model is likely undertrained; give a longer "
                      f"--time-limit or --steps" + (f"; {remedy()}" if predicted and
                                                     steps * 4 < predicted else ""))
        elif by_time and predicted and steps * 4 < predicted and not self.warnings:
            self._say(f"the time limit bought {steps} steps where the first rate predicted "
                      f"{predicted}: {remedy()}")
        return {"steps": steps, "predicted_steps": predicted, "warnings": self.warnings}
