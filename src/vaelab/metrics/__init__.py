"""Two-sample metrics for generated vs real points, each with a data-vs-data floor.

- :func:`mmd2_gaussian` - unbiased MMD² at Gaussian bandwidths relative to the data scale;
- :func:`energy_distance` - squared energy distance (unbiased);
- :func:`c2st_accuracy` - classifier two-sample test accuracy (0.5 = indistinguishable);
- :func:`knn_precision_recall` - k-NN precision (realism) and recall (coverage);
- :func:`sample_report` / :func:`format_sample_report` - all of them beside their floor.

Inputs are ``[n, d]`` numpy arrays or torch tensors (any d >= 1), computed in float64; bad
input raises :class:`MetricInputError`, a :class:`ValueError`.
"""

from __future__ import annotations

from vaelab.metrics._inputs import MetricInputError
from vaelab.metrics.c2st import c2st_accuracy
from vaelab.metrics.energy import energy_distance
from vaelab.metrics.mmd import DEFAULT_FACTORS, MMDResult, median_pairwise_distance, mmd2_gaussian
from vaelab.metrics.prd import PrecisionRecall, knn_precision_recall
from vaelab.metrics.sample_metrics import format_sample_report, sample_report

__all__ = [
    "DEFAULT_FACTORS",
    "MMDResult",
    "MetricInputError",
    "PrecisionRecall",
    "c2st_accuracy",
    "energy_distance",
    "format_sample_report",
    "knn_precision_recall",
    "median_pairwise_distance",
    "mmd2_gaussian",
    "sample_report",
]
