"""Units and conversions, applied at the API edges only.

Molecular systems use OpenMM's MD units: nm, ps, amu, kJ/mol and K. Analytic systems are
dimensionless. Every conversion factor used anywhere in the package is named here.

``openmm.unit`` Quantities are accepted where users pass physical values and are stripped to
plain floats by :func:`strip`; hot paths never see a Quantity.
"""

from __future__ import annotations

import math
from typing import Any

#: Boltzmann constant times Avogadro's number, kJ/(mol K) (CODATA 2018, exact).
MOLAR_GAS_CONSTANT_KJ_PER_MOL_K = 8.314462618e-3

#: 1 eV in kJ/mol (CODATA 2018: e * N_A / 1000).
KJ_PER_MOL_PER_EV = 96.48533212331002

#: 1 Å in nm.
NM_PER_ANGSTROM = 0.1

#: 1 kcal in kJ (thermochemical calorie).
KJ_PER_KCAL = 4.184

#: 1 fs in ps.
PS_PER_FS = 1.0e-3


def kT_from_temperature(temperature: Any) -> float:
    """Thermal energy kT in kJ/mol for a temperature in kelvin.

    Parameters
    ----------
    temperature : float or openmm.unit.Quantity
        Temperature in K (a Quantity with temperature units is converted).

    Returns
    -------
    float
        kT in kJ/mol.
    """
    t = strip(temperature, "kelvin")
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number of kelvin, got {t!r}")
    return MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * t


def temperature_from_kT(kT: float) -> float:
    """Temperature in K for a kT in kJ/mol."""
    return float(kT) / MOLAR_GAS_CONSTANT_KJ_PER_MOL_K


def strip(value: Any, unit_name: str) -> float:
    """Return ``value`` as a plain float in the OpenMM MD unit called ``unit_name``.

    Plain numbers are taken to be in that unit already. An ``openmm.unit.Quantity`` is
    converted; an incompatible one raises ``ValueError`` naming both units.

    Parameters
    ----------
    value : float or openmm.unit.Quantity
    unit_name : str
        An attribute of ``openmm.unit``: ``"kelvin"``, ``"picosecond"``, ``"nanometer"``,
        ``"kilojoule_per_mole"``, ``"dalton"`` or ``"picosecond**-1"`` (written ``"/picosecond"``).
    """
    if hasattr(value, "value_in_unit") and hasattr(value, "unit"):
        from openmm import unit as u  # only when the user handed us a Quantity

        if unit_name.startswith("/"):
            target = 1 / getattr(u, unit_name[1:])
        else:
            target = getattr(u, unit_name)
        try:
            return float(value.value_in_unit(target))
        except TypeError as exc:
            raise ValueError(f"expected a quantity in {unit_name}, got {value} ({exc})") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number in {unit_name}, got {value!r}") from None
