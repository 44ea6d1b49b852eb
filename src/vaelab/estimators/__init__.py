"""Estimators of log p(x): ELBO, importance-weighted bound (IWAE), plain prior Monte Carlo."""

from vaelab.estimators.log_density import (
    ESTIMATORS,
    elbo,
    grid_log_density,
    iwae,
    log_density,
    log_density_wide,
    prior_mc,
)

__all__ = ["ESTIMATORS", "elbo", "grid_log_density", "iwae", "log_density", "log_density_wide",
           "prior_mc"]
