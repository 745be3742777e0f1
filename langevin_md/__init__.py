"""langevin_md: sample Boltzmann distributions with Langevin dynamics.

Heavy optional back ends (OpenMM, mdtraj, ASE, Dask) are imported only when used.
"""

from . import analysis, integrators, systems
from .random import WalkerRNG
from .errors import NonFiniteStateError
from .result import SampleResult
from .io.run_folder import load_run
from .executors import Reporter, Sampler, sample

__version__ = "0.1.0"

__all__ = [
    "analysis", "integrators", "systems",
    "sample", "Sampler", "load_run", "SampleResult", "Reporter", "NonFiniteStateError", "WalkerRNG",
    "__version__",
]
