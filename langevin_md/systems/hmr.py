"""Hydrogen mass repartitioning (HMR): heavier hydrogens, the same Boltzmann distribution.

Each hydrogen bonded to a heavy atom is given the mass ``hydrogen_mass`` (typically 3–4 amu)
and its heavy partner loses the difference, so every molecule keeps its total mass
(Feenstra, Hess & Berendsen, J. Comput. Chem. 20, 786 (1999); Hopkins, Le Grand, Walker &
Roitberg, J. Chem. Theory Comput. 11, 1864 (2015)).

Why the sampled configurations do not change: the Boltzmann law of the positions,
p(x) ∝ exp(−U(x)/kT), does not contain the masses. Masses enter only the momenta, whose law
exp(−Σ p²/2m kT) factors out of the joint density, and the dynamics' time scales. Langevin
dynamics (BAOAB, OBABO, OpenMM's ``LangevinMiddleIntegrator``) samples the joint law for any
positive masses, so the configurational marginal, hence every average of a function of the
positions (⟨U⟩, dihedral populations), is the same. What changes is the fastest vibration:
a heavier hydrogen oscillates more slowly, so with bonds to hydrogen constrained the angle
vibrations involving hydrogen no longer limit the step, and 4 fs steps become stable.
Time correlation functions and kinetics do change (slightly), because the dynamics does.

This works for both executors: the repartitioned ``openmm.System`` is what the OpenMM
executor runs, and what the batched torch force field (``OpenMMSystem.to_torch()``) reads its
masses from.
"""

from __future__ import annotations

import copy

import numpy as np

from .base import check_positive

__all__ = ["repartition_hydrogen_mass", "with_hydrogen_mass", "HYDROGEN_MASS_LIMIT"]

#: Hydrogens are recognised by element in a topology; without one, by a mass below this (amu),
#: which no heavier element reaches and which a repartitioned hydrogen (≤ 4 amu) exceeds,
#: so repartitioning twice by mass is refused rather than done wrongly.
HYDROGEN_MASS_LIMIT = 1.5


def _hydrogen_flags(openmm_system, topology) -> np.ndarray:
    from ..units import strip

    n = openmm_system.getNumParticles()
    if topology is None:
        masses = np.array([strip(openmm_system.getParticleMass(i), "dalton") for i in range(n)])
        return (masses > 0) & (masses < HYDROGEN_MASS_LIMIT)
    atoms = list(topology.atoms() if callable(getattr(topology, "atoms", None)) else topology.atoms)
    if len(atoms) != n:
        raise ValueError(f"the topology has {len(atoms)} atoms but the System has {n} particles")
    flags = np.zeros(n, dtype=bool)
    for k, atom in enumerate(atoms):
        el = atom.element
        flags[k] = el is not None and getattr(el, "symbol", None) == "H"
    return flags


def _bonds(openmm_system, topology) -> list[tuple[int, int]]:
    """Chemical bonds: the topology's, or else the System's harmonic bonds and constraints."""
    if topology is not None:
        bonds = topology.bonds() if callable(getattr(topology, "bonds", None)) else topology.bonds
        return [(int(a.index), int(b.index)) for a, b in bonds]
    pairs = set()
    for force in openmm_system.getForces():
        if type(force).__name__ == "HarmonicBondForce":
            for k in range(force.getNumBonds()):
                i, j = force.getBondParameters(k)[:2]
                pairs.add((min(i, j), max(i, j)))
    for k in range(openmm_system.getNumConstraints()):
        i, j = openmm_system.getConstraintParameters(k)[:2]
        pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def repartition_hydrogen_mass(openmm_system, hydrogen_mass, topology=None):
    """A copy of an ``openmm.System`` with heavy hydrogens and lighter heavy atoms.

    Parameters
    ----------
    openmm_system : openmm.System
        Left unchanged.
    hydrogen_mass : float or openmm Quantity
        The new mass of every hydrogen bonded to a heavy atom, amu (3–4 is usual; at least the
        current hydrogen mass).
    topology : openmm.app.Topology or mdtraj.Topology, optional
        Gives elements and bonds. Without it, hydrogens are the particles lighter than
        :data:`HYDROGEN_MASS_LIMIT` amu and bonds are the System's ``HarmonicBondForce``
        bonds and constraints.

    Returns
    -------
    openmm.System
        Same forces and constraints; total mass unchanged.

    Raises
    ------
    ValueError
        When ``hydrogen_mass`` is below a hydrogen's current mass, or when a heavy atom
        would be left without positive mass.
    """
    import openmm

    from ..units import strip

    if not isinstance(openmm_system, openmm.System):
        raise TypeError(f"openmm_system must be an openmm.System, got {type(openmm_system).__name__}")
    target = check_positive("hydrogen_mass", strip(hydrogen_mass, "dalton"))
    n = openmm_system.getNumParticles()
    masses = np.array([strip(openmm_system.getParticleMass(i), "dalton") for i in range(n)])
    is_h = _hydrogen_flags(openmm_system, topology)
    new = masses.copy()
    for i, j in _bonds(openmm_system, topology):
        if is_h[i] == is_h[j]:
            continue  # H–H (water's H–H constraint) or heavy–heavy: nothing moves
        h, heavy = (i, j) if is_h[i] else (j, i)
        if masses[heavy] <= 0:
            continue  # never take mass from a massless (virtual or fixed) particle
        if target < masses[h]:
            raise ValueError(f"hydrogen_mass {target:g} amu is below hydrogen {h}'s mass {masses[h]:g} amu; "
                             "repartitioning moves mass onto hydrogens, not off them")
        moved = target - new[h]
        new[h] = target
        new[heavy] -= moved
    # a methyl carbon at 4 amu per hydrogen keeps about 3 amu, which is fine (OpenMM allows
    # it); only a mass that is gone entirely would break the dynamics
    light = [k for k in range(n) if masses[k] > 0 and new[k] <= 0]
    if light:
        raise ValueError(
            f"hydrogen_mass {target:g} amu leaves heavy atom(s) {light[:10]} with mass "
            f"{new[light[0]]:.3g} amu (not positive); use a smaller hydrogen_mass"
        )
    out = copy.deepcopy(openmm_system)
    for k in range(n):
        if new[k] != masses[k]:
            out.setParticleMass(k, float(new[k]))
    return out


def with_hydrogen_mass(system, hydrogen_mass):
    """An ``OpenMMSystem`` like ``system`` whose ``openmm.System`` has repartitioned masses.

    Parameters
    ----------
    system : OpenMMSystem
    hydrogen_mass : float or openmm Quantity
        amu.

    Returns
    -------
    OpenMMSystem
        Same topology, positions, temperature and platform settings. Call ``.to_torch()`` on
        it for the batched torch force field with the same masses.
    """
    from .openmm_system import OpenMMSystem

    if not isinstance(system, OpenMMSystem):
        raise TypeError(f"system must be an OpenMMSystem, got {type(system).__name__}")
    omm = repartition_hydrogen_mass(system.openmm_system, hydrogen_mass, system.openmm_topology)
    return OpenMMSystem(omm, system.openmm_topology, system.positions, system.temperature,
                        system.platform_name, system.precision, system.device_index)
