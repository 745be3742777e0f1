"""Sampling-quality statistics and analysis of trajectories.

Statistics take a series of shape ``(n_steps,)`` or ``(n_steps, n_walkers)`` (steps first,
walkers second) and are pure numpy/scipy.
"""

from .autocorrelation import (
    ShortChainWarning,
    autocorrelation,
    effective_sample_size,
    integrated_autocorrelation_time,
)
from .circular import circular_mean, circular_standard_error
from .convergence import mcse, rhat
from .equilibration import Equilibration, detect_equilibration

__all__ = [
    "ShortChainWarning",
    "autocorrelation",
    "integrated_autocorrelation_time",
    "effective_sample_size",
    "rhat",
    "mcse",
    "detect_equilibration",
    "Equilibration",
    "circular_mean",
    "circular_standard_error",
]
