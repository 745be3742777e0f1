"""langevin_md: sample Boltzmann distributions with Langevin dynamics.

The public names below are resolved on first use (PEP 562), so ``import langevin_md`` — and
with it ``langevin-md --help`` — costs milliseconds: torch, scipy, OpenMM, mdtraj, ASE and
Dask load only when a name that needs them is touched.

Three public names are subpackages (``analysis``, ``integrators``, ``systems``) and resolve to
the subpackage. Two are functions that share their module's name (``minimize`` in
``langevin_md/minimize.py``, ``compare`` in ``langevin_md/compare``): they resolve to the
function, as the README calls them (``lmd.minimize(system, positions)``). Python's import
system binds a submodule to its parent package's attribute of the same name when the
submodule is first imported (``from langevin_md.minimize import Minimization`` anywhere would
do it), so the package's module type refuses that binding for these two names; the submodules
stay importable by their dotted names (``from langevin_md.minimize import minimize``).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: Public name -> the module or package that defines it (relative to this package).
_PUBLIC = {
    "analysis": ".analysis", "integrators": ".integrators", "systems": ".systems",
    "sample": ".executors", "Sampler": ".executors", "Reporter": ".executors",
    "load_run": ".run.folder", "SampleResult": ".result", "NonFiniteStateError": ".errors",
    "WalkerRNG": ".random", "minimize": ".minimize", "Minimization": ".minimize",
    "compare": ".compare", "step_size_sweep": ".compare", "plot_step_size_sweep": ".compare",
    "StateReporter": ".run.state_reporter",
}

#: Public names that are subpackages: they resolve to the module itself. Every other public
#: name is an object defined in (or exported by) its module, even when the module has the
#: same name (``minimize``, ``compare``).
_SUBPACKAGES = frozenset({"analysis", "integrators", "systems"})

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'langevin_md' has no attribute {name!r}")
    module = importlib.import_module(module_name, __name__)
    value = module if name in _SUBPACKAGES else getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """This package's module type: keeps ``minimize`` and ``compare`` bound to the functions.

    The import system calls ``setattr(langevin_md, "minimize", <module>)`` when it first loads
    ``langevin_md.minimize``; for a public name that is not a subpackage that binding would
    hide the function, so it is dropped and :func:`__getattr__` resolves the name instead.
    """

    def __setattr__(self, name: str, value) -> None:
        if (name in _PUBLIC and name not in _SUBPACKAGES and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.{name}"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
