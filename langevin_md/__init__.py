"""langevin_md: sample Boltzmann distributions with Langevin dynamics.

Heavy optional back ends (OpenMM, mdtraj, ASE, Dask) are imported only when used.
"""

from . import analysis, integrators, systems
from .random import WalkerRNG
from .errors import NonFiniteStateError
from .result import SampleResult
from .io.run_folder import load_run
from .executors import Reporter, Sampler, sample
from .minimize import Minimization, minimize
from .compare import compare, plot_step_size_sweep, step_size_sweep
from .state_reporter import StateReporter

__version__ = "0.1.0"

__all__ = [
    "analysis", "integrators", "systems",
    "sample", "Sampler", "load_run", "SampleResult", "Reporter", "NonFiniteStateError", "WalkerRNG",
    "minimize", "Minimization", "compare", "step_size_sweep", "plot_step_size_sweep", "StateReporter",
    "__version__",
]
