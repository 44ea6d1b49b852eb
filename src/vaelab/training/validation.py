"""The weights a run keeps, chosen on rows held out of its training set.

A small fixed training set (a short data file) is learned by heart long before the step
budget is spent: the model's fit to fresh rows peaks and then worsens while its fit to the
rows it sees keeps improving, and where the peak lies depends on the data, not only on its
size. So a run with ``train.validation = f > 0`` sets a fraction f of its training rows aside
(never trained on, and distinct from the rows ``vaelab evaluate`` holds out), scores them
every few metrics rows, and keeps the weights of the best score, which are the run's model
at the end. The score is the mean IWAE estimate of -log p(x) on those rows, in nats per row
in the data's units, with ``VALIDATION_K`` samples drawn from a fixed seed (the same draws
at every check, so two checks differ by the weights alone).

The best check is kept only where it beats the last step clearly: by more than
``MARGIN_STDERRS`` standard errors of the two checks' paired difference on these rows. A
check's weights carry the noise of the learning rate at their step, which the schedule's
decay at the end averages away, and the best of many noisy scores is flattered by its luck;
where the training set is large enough not to be learned by heart, the last step's weights
fit fresh rows better (BENCHMARKS.md, "A short file").

Each model of a group has its own rows, score and best step. The best weights are part of
the checkpoint, so a resumed run keeps the same ones as an uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaelab.data.files import split_points
from vaelab.estimators import log_density
from vaelab.models import BaseVAE
from vaelab.presets import SHORT_FILE_ROWS

#: importance samples per row of the validation score (the bound tightens with K; this many
#: rank checkpoints as the held-out NLL does, at a small cost per check)
VALIDATION_K = 16
#: the most validation rows scored per check (a fixed subset beyond it: the score's
#: standard error is then far below the differences that matter between checkpoints)
MAX_SCORED_ROWS = 2000
#: checks over a step-limited run (each at a metrics row)
CHECKS = 48
#: a fixed training set of fewer rows than this gets validation rows under the default
#: preset (``train.validation = None``); larger ones were not seen to overfit within the
#: default's steps (BENCHMARKS.md, "A short file: the weights chosen on rows set aside")
AUTO_BELOW_ROWS = SHORT_FILE_ROWS
#: the fraction set aside then
AUTO_FRACTION = 0.1
#: fewest rows for which rows are set aside at all
MIN_ROWS = 20
#: the best check replaces the last step's weights only when better by this many standard
#: errors of their paired difference
MARGIN_STDERRS = 1.0


def validation_for(fraction: float | None, train_rows: int | None) -> float:
    """``train.validation``, or where it is None (the default preset's) ``AUTO_FRACTION``
    for a fixed training set of ``MIN_ROWS`` to ``AUTO_BELOW_ROWS`` rows, else 0 (fresh
    batches from a built-in set cannot be learned by heart, and a large file was not)."""
    if fraction is not None:
        return fraction
    if train_rows is None or not MIN_ROWS <= train_rows < AUTO_BELOW_ROWS:
        return 0.0
    return AUTO_FRACTION


def split_validation(points: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(train, validation)`` rows of a fixed training set, split as a data file's rows are
    split into training and held-out rows (:func:`vaelab.data.files.split_points`, here from
    ``seed``); ``(points, None)`` for a fraction of 0 or fewer than 2 rows."""
    if fraction <= 0 or int(points.shape[0]) < 2:
        return points, None
    return split_points(points, fraction, seed=seed)


def check_every(steps: int | None, log_every: int) -> int:
    """Steps between checks: about ``CHECKS`` over a step-limited run, at metrics rows (a
    multiple of ``log_every``); every fifth row for a run limited by time alone."""
    if steps is None:
        return 5 * log_every
    return max(1, math.ceil(steps / CHECKS / log_every)) * log_every


def _copy_model(dst: dict[str, dict[str, torch.Tensor]],
                src: dict[str, dict[str, torch.Tensor]], m: int) -> None:
    """Copy model ``m``'s slice of every tensor of ``src`` into ``dst`` (both ``{kind:
    {name: [M, ...]}}``, the loop's weights with a model axis)."""
    for kind, named in src.items():
        for name, t in named.items():
            dst[kind][name][m].copy_(t[m])


class BestWeights:
    """Each model's best validation score so far, its step, its weights and per-row scores
    then, and the per-row scores of the latest check."""

    def __init__(self, rows: list[torch.Tensor | None], weights: dict[str, dict[str,
                 torch.Tensor]], every: int, seed: int) -> None:
        self.rows = [None if r is None else r[:MAX_SCORED_ROWS] for r in rows]
        self.counts = [0 if r is None else int(r.shape[0]) for r in rows]
        self.every, self.seed = every, seed
        self.weights = {kind: {k: v.detach().clone() for k, v in named.items()}
                        for kind, named in weights.items()}
        m = len(rows)
        self.scores = torch.full((m,), math.inf, dtype=torch.float64)
        self.steps = torch.zeros(m, dtype=torch.long)
        # -log q(x) per scored row (float64, on the CPU): at the best check, at the latest
        self.best_rows = {i: torch.zeros(len(r), dtype=torch.float64)
                          for i, r in enumerate(self.rows) if r is not None}
        self.last_rows = {i: t.clone() for i, t in self.best_rows.items()}
        self.chosen: list[dict[str, Any] | None] = [None] * m

    @property
    def active(self) -> bool:
        return any(r is not None for r in self.rows)

    def due(self, step: int, last: bool) -> bool:
        return self.active and (last or step % self.every == 0)

    @torch.no_grad()
    def check(self, step: int, models: list[BaseVAE],
              live: dict[str, dict[str, torch.Tensor]]) -> None:
        """Score each model on its rows; where better than its best, keep its weights
        (``live``: the loop's weights with a model axis, the modules synced to them)."""
        for m, (model, rows) in enumerate(zip(models, self.rows, strict=True)):
            if rows is None:
                continue
            nll = -log_density(model, rows, "iwae", k=VALIDATION_K, seed=self.seed)
            nll = nll.detach().double().cpu()
            self.last_rows[m] = nll
            score = float(nll.mean())
            if math.isfinite(score) and score < float(self.scores[m]):
                self.scores[m], self.steps[m] = score, step
                self.best_rows[m] = nll.clone()
                _copy_model(self.weights, live, m)

    def restore(self, stack: Any, final_step: int) -> list[bool]:
        """Put back each model's best weights where they beat the last step's clearly (see
        the module's docstring); which models changed. The choice is in :meth:`summary`."""
        live = stack.state()
        changed = []
        with torch.no_grad():
            for m in range(len(self.rows)):
                use = False
                if self.rows[m] is not None:
                    best = int(self.steps[m])
                    diff = self.last_rows[m] - self.best_rows[m]  # last minus best, per row
                    n = len(diff)
                    margin = float(diff.mean())
                    se = float(diff.std() / math.sqrt(n)) if n > 1 else math.inf
                    use = (0 < best != final_step and math.isfinite(margin)
                           and margin > MARGIN_STDERRS * se)
                    self.chosen[m] = {"best_step": best, "margin": margin, "margin_stderr": se,
                                      "kept_step": best if use else final_step,
                                      "final_step": final_step}
                if use:
                    _copy_model(live, self.weights, m)
                changed.append(use)
        stack.sync()
        return changed

    def summary(self, m: int) -> dict[str, Any] | None:
        """What the run's summary says of model ``m``'s choice (None without rows; after
        :meth:`restore`)."""
        chosen = self.chosen[m]
        if self.rows[m] is None or chosen is None:
            return None
        kept_best = chosen["kept_step"] != chosen["final_step"]
        return {"rows": self.counts[m], "scored_rows": int(self.rows[m].shape[0]),
                "k": VALIDATION_K, "every": self.every,
                "best_step": chosen["best_step"], "best_nll": round(float(self.scores[m]), 6),
                "final_step": chosen["final_step"],
                "final_nll": round(float(self.last_rows[m].mean()), 6),
                "final_minus_best": round(chosen["margin"], 6),
                "final_minus_best_stderr": round(chosen["margin_stderr"], 6),
                "kept": "best" if kept_best else "final", "kept_step": chosen["kept_step"]}

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint keeps (``best/...``)."""
        out = {f"{kind}/{k}": v for kind, named in self.weights.items()
               for k, v in named.items()}
        out["scores"], out["steps"] = self.scores, self.steps
        for m, t in self.best_rows.items():
            out[f"rows/{m}/best"], out[f"rows/{m}/last"] = t, self.last_rows[m]
        return out

    def load(self, saved: dict[str, torch.Tensor]) -> None:
        """Take a checkpoint's ``best/...`` tensors (shapes checked by the caller)."""
        for kind, named in self.weights.items():
            for k, v in named.items():
                v.copy_(saved[f"{kind}/{k}"])
        self.scores.copy_(saved["scores"])
        self.steps.copy_(saved["steps"])
        for m in self.best_rows:
            self.best_rows[m] = saved[f"rows/{m}/best"].clone()
            self.last_rows[m] = saved[f"rows/{m}/last"].clone()


__all__ = ["AUTO_BELOW_ROWS", "AUTO_FRACTION", "BestWeights", "CHECKS", "MARGIN_STDERRS",
           "VALIDATION_K",
           "check_every", "split_validation", "validation_for"]
