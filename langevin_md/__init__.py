"""langevin_md: sample Boltzmann distributions with Langevin dynamics.

The public names below are resolved on first use (PEP 562), so ``import langevin_md`` — and
with it ``langevin-md --help`` — costs milliseconds: torch, scipy, OpenMM, mdtraj, ASE and
Dask load only when a name that needs them is touched.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it (relative to this package). Subpackages map to
#: themselves.
_PUBLIC = {
    "analysis": ".analysis", "integrators": ".integrators", "systems": ".systems",
    "sample": ".executors", "Sampler": ".executors", "Reporter": ".executors",
    "load_run": ".run.folder", "SampleResult": ".result", "NonFiniteStateError": ".errors",
    "WalkerRNG": ".random", "minimize": ".minimize", "Minimization": ".minimize",
    "compare": ".compare", "step_size_sweep": ".compare", "plot_step_size_sweep": ".compare",
    "StateReporter": ".run.state_reporter",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'langevin_md' has no attribute {name!r}")
    module = importlib.import_module(module_name, __name__)
    value = module if module_name == f".{name}" else getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
