"""Several samplers on one target with one budget of force evaluations, side by side.

:mod:`~langevin_md.compare.core` runs and tabulates, :mod:`~langevin_md.compare.plots` draws a
step-size sweep, :mod:`~langevin_md.compare.config` reads ``langevin-md compare`` configs.
``langevin_md.compare.compare`` is the function.
"""

from .core import (Comparison, SamplerReport, build_samplers, compare, force_evaluations_per_step,
                   step_size_sweep)
from .plots import plot_step_size_sweep

__all__ = ["SamplerReport", "Comparison", "compare", "step_size_sweep", "plot_step_size_sweep",
           "force_evaluations_per_step", "build_samplers"]
