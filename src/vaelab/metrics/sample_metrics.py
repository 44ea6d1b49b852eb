"""One report of every sample metric, each beside its data-vs-data floor.

A two-sample metric is never exactly at its ideal at finite n, even for a perfect generator:
MMD² and the energy distance scatter around 0, the C2ST accuracy around 0.5, and k-NN
precision and recall sit below 1. :func:`sample_report` therefore scores
``generated`` vs ``real`` (the **value**) and a second, independent real sample
``real_reference`` vs ``real`` (the **floor**: what a perfect generator would score at this n,
with the same kernels, classifier and seed). A value within the run-to-run scatter of its floor
means the metric cannot tell the generator from the data.

Sizes: all three samples are cut to the smallest of their sizes, n, by drawing n rows
without replacement (order kept) with ``numpy.random.default_rng(seed)``, so value and floor
are computed at the same n; samples already of size n are used whole. The sizes given are
kept in ``input_sizes``.

Report structure (plain ``dict``; every value a ``str``, ``int``, ``float``, ``list`` or
``dict``, so ``json.dumps`` takes it as is)::

    {
      "n": 10000,                     # points per sample actually compared
      "d": 2,                         # dimension
      "seed": 0,
      "input_sizes": {"generated": 10000, "real": 10000, "real_reference": 10000},
      "mmd2": {                       # unbiased MMD², mean over the Gaussian bandwidths
        "value": ..., "floor": ...,
        "scale": ...,                 # median pairwise distance of `real`
        "per_bandwidth": {            # keyed by the factor, as a string
          "0.1": {"bandwidth": ..., "value": ..., "floor": ...}, ...
        },
      },
      "energy": {"value": ..., "floor": ...},         # squared energy distance, unbiased
      "c2st_accuracy": {"value": ..., "floor": ...},  # held-out accuracy, 0.5 = chance
      "precision": {"value": ..., "floor": ..., "k": 3},
      "recall": {"value": ..., "floor": ..., "k": 3},
    }

Lower is better for ``mmd2`` and ``energy`` (ideal 0), nearer 0.5 for ``c2st_accuracy``,
higher for ``precision`` and ``recall`` (ideal: their floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vaelab.metrics._inputs import ArrayLike, MetricInputError, as_sample, check_positive_int
from vaelab.metrics._inputs import subsample as _subsample
from vaelab.metrics.c2st import C2ST_MIN_POINTS, c2st_accuracy
from vaelab.metrics.energy import energy_distance
from vaelab.metrics.mmd import DEFAULT_FACTORS, median_pairwise_distance, mmd2_gaussian
from vaelab.metrics.prd import DEFAULT_K, knn_precision_recall

#: the metric keys of a report, in display order
REPORT_METRICS = ("mmd2", "energy", "c2st_accuracy", "precision", "recall")

#: how to read each metric beside its floor (one sentence each; evaluate and the report)
HOW_TO_READ = {
    "mmd2": "MMD² between generated and real points, ideal 0; it scatters around 0 at finite "
            "n, so a value at or below its floor (a second real sample's score) means the "
            "two cannot be told apart at this n, not that the model beats real data.",
    "energy": "squared energy distance, ideal 0; read like MMD²: at or below the floor is "
              "indistinguishable from real data at this n, well above it is a real difference.",
    "c2st_accuracy": "held-out accuracy of a classifier told to separate generated from real "
                     "points: 0.5 is chance (indistinguishable); every point above the floor "
                     "is a difference the classifier found.",
    "precision": "fraction of generated points inside the real data's k-NN manifold (quality; "
                 "a low value means points off the data, e.g. between a roll's arms); the "
                 "floor, not 1, is the best reachable at this n.",
    "recall": "fraction of real points inside the generated points' k-NN manifold (coverage; "
              "a low value means missed regions); the floor, not 1, is the best reachable "
              "at this n.",
}


def min_sample_points(k: int = DEFAULT_K) -> int:
    """The fewest points each sample of :func:`sample_report` may have: ``max(k + 2, 4)``."""
    return max(k + 2, C2ST_MIN_POINTS)


def sample_report(generated: ArrayLike, real: ArrayLike, real_reference: ArrayLike, *,
                  seed: int = 0, factors: Sequence[float] = DEFAULT_FACTORS,
                  k: int = DEFAULT_K) -> dict[str, Any]:
    """Every metric for ``generated`` vs ``real`` (value) and ``real_reference`` vs ``real``
    (floor); see the module docstring for the dict it returns.

    ``real_reference`` must be drawn independently of ``real`` from the same distribution.
    ``seed`` fixes the subsampling, the median-distance subsample and the C2ST split and
    classifier: the same inputs and seed give the same report. ``factors`` are the MMD
    bandwidths in units of the median pairwise distance of ``real``; ``k`` is the
    neighbourhood of the precision/recall manifolds. Each sample needs at least
    ``max(k + 2, 4)`` points.
    """
    k = check_positive_int("k", k)
    min_points = min_sample_points(k)
    names = ("generated", "real", "real_reference")
    samples = [as_sample(name, a, min_points=min_points)
               for name, a in zip(names, (generated, real, real_reference), strict=True)]
    d = samples[1].shape[1]
    for name, arr in zip(names, samples, strict=True):
        if arr.shape[1] != d:
            raise MetricInputError(f"{name} has dimension d = {arr.shape[1]} but real has "
                                   f"d = {d}: all samples must have the same dimension")
    input_sizes = {name: len(arr) for name, arr in zip(names, samples, strict=True)}
    n = min(input_sizes.values())
    rng = np.random.default_rng(seed)
    gen, ref_real, other_real = (_subsample(arr, n, rng) for arr in samples)

    scale = median_pairwise_distance(ref_real, seed=seed)
    mmd_value = mmd2_gaussian(gen, ref_real, factors=factors, scale=scale)
    mmd_floor = mmd2_gaussian(other_real, ref_real, factors=factors, scale=scale)
    pr_value = knn_precision_recall(gen, ref_real, k=k)
    pr_floor = knn_precision_recall(other_real, ref_real, k=k)
    return {
        "n": n,
        "d": d,
        "seed": int(seed),
        "input_sizes": input_sizes,
        "mmd2": {
            "value": mmd_value.mean,
            "floor": mmd_floor.mean,
            "scale": scale,
            "per_bandwidth": {
                repr(f): {"bandwidth": s, "value": v, "floor": fl}
                for f, s, v, fl in zip(mmd_value.factors, mmd_value.bandwidths,
                                       mmd_value.values, mmd_floor.values, strict=True)
            },
        },
        "energy": {"value": energy_distance(gen, ref_real),
                   "floor": energy_distance(other_real, ref_real)},
        "c2st_accuracy": {"value": c2st_accuracy(gen, ref_real, seed=seed),
                          "floor": c2st_accuracy(other_real, ref_real, seed=seed)},
        "precision": {"value": pr_value.precision, "floor": pr_floor.precision, "k": k},
        "recall": {"value": pr_value.recall, "floor": pr_floor.recall, "k": k},
    }


def format_sample_report(report: dict[str, Any]) -> str:
    """The report of :func:`sample_report` as a text table: metric, value, floor."""
    lines = [f"n = {report['n']}, d = {report['d']}, seed = {report['seed']}",
             f"{'metric':<28}{'value':>12}{'floor':>12}"]

    def row(label: str, entry: dict[str, Any]) -> None:
        lines.append(f"{label:<28}{entry['value']:>12.4g}{entry['floor']:>12.4g}")

    mmd = report["mmd2"]
    row("mmd2 (mean over bandwidths)", mmd)
    for factor, entry in mmd["per_bandwidth"].items():
        row(f"  sigma = {factor} x {mmd['scale']:.3g}", entry)
    row("energy distance (squared)", report["energy"])
    row("c2st accuracy", report["c2st_accuracy"])
    row(f"precision (k = {report['precision']['k']})", report["precision"])
    row(f"recall (k = {report['recall']['k']})", report["recall"])
    lines += ["", "how to read them (floor: a second real sample scored the same way, what a "
              "perfect generator would get at this n):"]
    names = {"mmd2": "mmd2", "energy": "energy", "c2st_accuracy": "c2st",
             "precision": "precision", "recall": "recall"}
    lines += [f"  {names[key]}: {HOW_TO_READ[key]}" for key in REPORT_METRICS]
    return "\n".join(lines)
