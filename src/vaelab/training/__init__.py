"""Training: seeds and devices, optimiser, the loop, display frames."""

from vaelab.training.loop import METRIC_FIELDS, TrainResult, fit, resolve_config

__all__ = ["METRIC_FIELDS", "TrainResult", "fit", "resolve_config"]
