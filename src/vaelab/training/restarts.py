"""Restarts: try a few initial weights for the first steps, then train the best from the start.

Where a run ends can depend on its initial weights more than on any setting: on a 6-column
product of toy sets, some seeds of the default preset ended several times farther from the
true density than others (BENCHMARKS.md, "Restarts"). With ``train.restarts = R``, before
the run starts, R candidate initialisations (the run's own, then R - 1 more drawn from its
seed) train together as a group for the first :func:`probe_steps` steps of the run's own
schedule, on the run's own data; the candidate whose training loss (the run's objective, in
nats per point) averaged over the last quarter of those steps is lowest is kept, and the
run then trains from its initial weights as any run does. So the run is an ordinary run
from the chosen weights (a resumed one reads them from its checkpoint), and
``restarts = 1`` is the run without a probe (every preset's: the probe's early loss is a
guess at the end, measured to pick better starts on some tables and slightly worse ones on
others).

This module holds the choice; the probe itself is a short group run of
:func:`vaelab.training.loop.fit_models`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: the probe's share of the run's steps
PROBE_FRACTION = 1 / 12
#: the probe's last part whose mean training loss ranks the candidates
SCORED_FRACTION = 0.25


def probe_steps(steps: int) -> int:
    """The probe's length: ``PROBE_FRACTION`` of the run's steps, at least one, and never the
    whole run. (Its last step is a metrics row, as a run's last step is.)"""
    return max(1, min(round(steps * PROBE_FRACTION), steps - 1))


def candidate_seed(init_seed: int, index: int) -> int:
    """The initialisation seed of candidate ``index``: the run's own for 0, else a child of
    it (numpy's SeedSequence, stable across versions)."""
    if index == 0:
        return init_seed
    return int(np.random.SeedSequence([init_seed, index]).generate_state(1, dtype=np.uint32)[0])


def probe_score(rows: list[dict[str, float]], probe: int) -> float:
    """The mean training loss of the metrics rows in the probe's last ``SCORED_FRACTION``
    (the last row at least); +inf where one is not finite."""
    start = probe * (1 - SCORED_FRACTION)
    scored = [r["loss"] for r in rows if start < r["step"] <= probe] or [rows[-1]["loss"]]
    value = sum(scored) / len(scored)
    return value if math.isfinite(value) else math.inf


def choose(scores: list[float]) -> int:
    """The candidate to keep: the lowest score (the first of equals); 0 where none is
    finite (the run's own initialisation, which then reports its own failure)."""
    best = min(range(len(scores)), key=lambda j: (scores[j], j))
    return best if math.isfinite(scores[best]) else 0


def restart_summary(scores: list[float], chosen: int, probe: int,
                    seconds: float) -> dict[str, Any]:
    """The summary's ``restarts`` field (and the checkpoint's record of the choice)."""
    return {"candidates": len(scores), "probe_steps": probe,
            "probe_losses": [s if math.isfinite(s) else None for s in scores],
            "chosen": chosen, "probe_seconds": round(seconds, 3)}


def restart_words(summary: dict[str, Any]) -> str | None:
    """Which initialisation a run kept, in one line; None where it tried only its own."""
    r = summary.get("restarts")
    if not r or r["candidates"] < 2:
        return None
    losses = r["probe_losses"]
    others = [v for j, v in enumerate(losses) if j != r["chosen"] and v is not None]
    spread = (f"; the others {min(others):.4f} to {max(others):.4f}" if len(others) > 1 else
              f"; the other {others[0]:.4f}" if others else "")
    chosen = losses[r["chosen"]]
    which = "its own" if r["chosen"] == 0 else f"candidate {r['chosen']}"
    loss = f"{chosen:.4f}" if chosen is not None else "not finite"
    return (f"tried {r['candidates']} initial weights for {r['probe_steps']:,} steps "
            f"({r['probe_seconds']:.1f} s) and trained {which}: training loss {loss}{spread}")


__all__ = ["PROBE_FRACTION", "candidate_seed", "choose", "probe_score", "probe_steps",
           "restart_summary", "restart_words"]
