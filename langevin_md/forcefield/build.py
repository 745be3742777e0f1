"""Compile an ``openmm.System`` into a :class:`ForceFieldModule`, one builder per force type.

Every term module is imported here explicitly, so the builder and term-kind tables
(:mod:`langevin_md.forcefield.registry`) are complete whenever a force field is built or
loaded. None of these imports OpenMM at import time.
"""

from __future__ import annotations

import importlib

# Imported for their side effect: each term module registers its builders and term kinds.
import langevin_md.forcefield.bonded  # noqa: F401
import langevin_md.forcefield.cmap  # noqa: F401
import langevin_md.forcefield.gbsa  # noqa: F401
import langevin_md.forcefield.nonbonded  # noqa: F401
from langevin_md.forcefield.module import ForceFieldModule
from langevin_md.forcefield.registry import BUILDERS

#: Forces that change no configurational distribution and are skipped.
SKIPPED = ("CMMotionRemover",)

_CUSTOM_MODULE = "langevin_md.forcefield.custom"


def _import_custom() -> bool:
    """Register the custom-expression builders; False when that module is not installed."""
    try:
        importlib.import_module(_CUSTOM_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _CUSTOM_MODULE:
            raise
        return False
    return True


HAS_CUSTOM = _import_custom()


def force_names(openmm_system) -> list[str]:
    """OpenMM class names of the forces in ``openmm_system``, in order."""
    return [type(f).__name__ for f in openmm_system.getForces()]


def unsupported_forces(openmm_system) -> list[str]:
    """Names of forces the torch force field cannot build (empty when it can build them all).

    Only the force type is checked; a supported type with unsupported settings (e.g.
    ``NonbondedForce`` with PME) is reported by :func:`compile_forcefield`.
    """
    return [n for n in force_names(openmm_system) if n not in BUILDERS and n not in SKIPPED]


def compile_forcefield(openmm_system) -> ForceFieldModule:
    """Build the batched torch force field of an ``openmm.System`` (float64, CPU).

    Parameters
    ----------
    openmm_system : openmm.System

    Returns
    -------
    ForceFieldModule
        Move it with ``.to(device, dtype)``.

    Raises
    ------
    ValueError
        For virtual sites, and for any force (or force setting) the torch force field does not
        reproduce exactly, naming the force and the alternative. Nothing falls back silently.
    """
    import openmm

    if not isinstance(openmm_system, openmm.System):
        raise TypeError(f"expected an openmm.System, got {type(openmm_system).__name__}")
    n = openmm_system.getNumParticles()
    vsites = [i for i in range(n) if openmm_system.isVirtualSite(i)]
    if vsites:
        raise ValueError(
            f"the System has {len(vsites)} virtual site(s) (particles {vsites[:10]}), which the torch "
            "force field does not support; use the OpenMM bridge (OpenMMSystem, engine='openmm') "
            "with backend='openmm'"
        )
    terms = []
    for index, force in enumerate(openmm_system.getForces()):
        name = type(force).__name__
        if name in SKIPPED:
            continue
        builder = BUILDERS.get(name)
        if builder is None:
            extra = ""
            if name.startswith("Custom") and not HAS_CUSTOM:
                extra = f" (custom forces need {_CUSTOM_MODULE}, which is not installed)"
            raise ValueError(
                f"force {index} of the System, {name}, is not supported by the torch force field"
                f"{extra}; use the OpenMM bridge (OpenMMSystem, engine='openmm') or backend='openmm'"
            )
        terms.extend(builder(force, openmm_system))
    return ForceFieldModule(terms, n)


def load_term_kinds() -> dict:
    """The table of term kinds (every term module imported), for loading saved force fields."""
    from langevin_md.forcefield.registry import TERM_KINDS

    return dict(TERM_KINDS)
