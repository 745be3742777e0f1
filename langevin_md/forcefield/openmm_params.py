"""Reading parameters out of OpenMM forces (used only while building, never when loading)."""

from __future__ import annotations


def md(value) -> float:
    """A parameter as a float in OpenMM's MD units (nm, kJ/mol, rad, e, amu).

    OpenMM's getters return ``Quantity`` objects in MD units (or plain numbers for
    dimensionless values); both become plain floats.
    """
    if hasattr(value, "value_in_unit_system"):
        from openmm import unit

        return float(value.value_in_unit_system(unit.md_unit_system))
    return float(value)


def refuse_periodic(force) -> None:
    """Raise ``ValueError`` if ``force`` applies periodic boundary conditions."""
    if force.usesPeriodicBoundaryConditions():
        raise ValueError(
            f"{type(force).__name__} uses periodic boundary conditions, which the torch force "
            "field does not support; use the OpenMM bridge (OpenMMSystem, engine='openmm') or "
            "backend='openmm'"
        )
