"""Units and conversions, applied at the API edges only.

Molecular systems use OpenMM's MD units: nm, ps, amu, kJ/mol and K. Analytic systems are
dimensionless. Every conversion factor used anywhere in the package is named here.

``openmm.unit`` Quantities are accepted where users pass physical values and are stripped to
plain floats by :func:`strip`; hot paths never see a Quantity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

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


#: A median bonded distance above this (nm) means coordinates are almost surely in ångström:
#: real bonds are 0.1–0.16 nm, and 0.5 nm leaves room for strained starts.
ANGSTROM_BOND_THRESHOLD_NM = 0.5


def bond_pairs(topology) -> np.ndarray:
    """Atom index pairs ``(n_bonds, 2)`` of an OpenMM or mdtraj topology (empty without bonds)."""
    bonds = topology.bonds() if callable(topology.bonds) else topology.bonds
    return np.array([(b[0].index, b[1].index) for b in bonds], dtype=np.int64).reshape(-1, 2)


def check_not_angstrom(positions, pairs: np.ndarray, what: str) -> None:
    """Refuse coordinates whose bonded distances look like ångström (×10 too long).

    Parameters
    ----------
    positions : array_like, shape ``(n_atoms, 3)`` or ``(n_walkers, n_atoms, 3)``, nm
    pairs : numpy.ndarray of int, shape ``(n_bonds, 2)``
        Bonded atom pairs (:func:`bond_pairs`); with none there is nothing to judge by.
    what : str
        Named in the error, e.g. ``"initial_positions"``.

    Raises
    ------
    ValueError
        When any walker's median bonded distance exceeds ``ANGSTROM_BOND_THRESHOLD_NM``.
    """
    if len(pairs) == 0:
        return
    x = np.asarray(positions, dtype=np.float64)
    x = x.reshape((-1,) + x.shape[-2:])
    lengths = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)
    median = np.median(lengths, axis=-1)
    worst = int(np.argmax(median))
    if median[worst] > ANGSTROM_BOND_THRESHOLD_NM:
        where = f" (walker {worst})" if x.shape[0] > 1 else ""
        raise ValueError(
            f"{what} look like ångström{where}: the median bonded distance is {median[worst]:.3g} "
            "where nm coordinates give ~0.1-0.15; divide by 10 (or pass an openmm Quantity with units)")
