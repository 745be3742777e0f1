"""Built-in molecular systems, and a catalogue of them for the command line.

Structures ship in ``langevin_md/data`` (see ``data/make_alanine_dipeptide.py`` for how the
alanine dipeptide structure was built); nothing is downloaded.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from langevin_md.systems.base import check_positive
from langevin_md.systems.engines import (ENGINES, check_engine, choose_engine,  # noqa: F401 (re-exported)
                                         finish_molecule, openmm_options, split_precision)
from langevin_md.systems.openmm_system import OpenMMSystem

# openmm is imported inside the builders that need it: it takes seconds to import, and
# listing the catalogue (`langevin-md systems`) must not pay that.

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

#: The shipped ACE-ALA-NME structure (22 atoms, C7eq basin, minimised with Amber ff14SB).
ALANINE_DIPEPTIDE_PDB = os.path.join(DATA_DIR, "alanine_dipeptide.pdb")

SOLVENTS = ("vacuum", "implicit")

_FORCEFIELDS = {
    "vacuum": ("amber14-all.xml",),
    "implicit": ("amber14-all.xml", "implicit/obc2.xml"),
}


def alanine_dipeptide(
    solvent: str = "vacuum",
    temperature=300.0,
    platform: str = "auto",
    constraints: Optional[str] = None,
    precision: Optional[str] = None,
    device_index: Optional[int] = None,
    engine: str = "auto",
    hydrogen_mass=None,
):
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms) with the Amber ff14SB force field.

    Force field: Amber ff14SB (Maier et al., J. Chem. Theory Comput. 11, 3696 (2015)) as
    OpenMM's ``amber14-all.xml``; for ``solvent="implicit"`` add the OBC2 generalized-Born
    model (Onufriev, Bashford & Case, Proteins 55, 383 (2004)) from ``implicit/obc2.xml``,
    with OpenMM's defaults (solvent dielectric 78.5, solute 1, no salt). No cutoff, no
    periodic box in either case.

    Parameters
    ----------
    solvent : {"vacuum", "implicit"}
    temperature : float or openmm.unit.Quantity
        Kelvin.
    platform : str
        ``"auto"`` or an OpenMM platform name (see :mod:`langevin_md.systems.platforms`).
    constraints : {None, "HBonds"}
        ``"HBonds"`` constrains bonds to hydrogen (``system.constrained`` is then True). Both
        executors enforce them: OpenMM with its own algorithms, the torch executor's BAOAB
        and OBABO with SHAKE/RATTLE on the same constraint list; 2 fs steps become stable.
    precision : {None, "single", "mixed", "double"}
        With ``engine="torch"``: the torch force field's precision, ``"double"`` (the
        default) or ``"mixed"`` (terms in float32, integrator state in float64, like
        OpenMM's "mixed"). Otherwise the OpenMM platform's precision property (which makes
        ``engine="auto"`` choose OpenMM).
    device_index : int or None
    engine : {"auto", "torch", "openmm"}
        Who evaluates energies and forces (see :func:`choose_engine`): ``"torch"`` compiles
        the force field into one batched torch computation over all walkers
        (:class:`~langevin_md.systems.TorchForceField`, CPU or CUDA, any dtype);
        ``"openmm"`` loops over walkers through one OpenMM Context
        (:class:`~langevin_md.systems.openmm_system.OpenMMSystem`, needed for
        ``backend="openmm"``). ``"auto"`` picks torch unless an OpenMM-only option is given or
        the torch force field lacks a force of this System.
    hydrogen_mass : float or openmm Quantity, optional
        Repartition masses so that every hydrogen weighs this much (amu, 3–4 usual), taking
        the difference from its bonded heavy atom (:mod:`langevin_md.systems.hmr`). The
        configurational Boltzmann distribution does not change (masses do not enter it);
        with ``constraints="HBonds"`` it allows 4 fs steps. Applies to both engines and
        executors: they all read the masses of the same ``openmm.System``.

    Returns
    -------
    OpenMMSystem or TorchForceField
        ``event_shape == (22, 3)``, positions in nm, energies in kJ/mol.
    """
    if solvent not in SOLVENTS:
        raise ValueError(f"solvent must be one of {SOLVENTS}, got {solvent!r}")
    if constraints not in (None, "HBonds"):
        raise ValueError(f"constraints must be None or 'HBonds' for alanine dipeptide, got {constraints!r}")
    check_engine(engine)
    torch_precision, precision = split_precision(engine, precision)
    system = OpenMMSystem.from_pdb(
        ALANINE_DIPEPTIDE_PDB,
        forcefield=_FORCEFIELDS[solvent],
        temperature=temperature,
        constraints=constraints,
        platform=platform,
        precision=precision,
        device_index=device_index,
    )
    return finish_molecule(system, engine, hydrogen_mass, openmm_options(platform, precision, device_index),
                           torch_precision=torch_precision)


#: Argon Lennard-Jones parameters (Rowley, Nicholson & Parsonage, J. Comput. Phys. 17, 401
#: (1975)): σ in nm, ε in kJ/mol, mass in amu.
ARGON_SIGMA_NM = 0.3405
ARGON_EPSILON_KJ_PER_MOL = 0.99774
ARGON_MASS_AMU = 39.948

#: Lennard-Jones cutoff of :func:`lennard_jones_fluid`, in units of σ.
LJ_CUTOFF_SIGMAS = 2.5


def lennard_jones_fluid(
    n_per_side: int = 5,
    reduced_density: float = 0.8,
    temperature=120.0,
    platform: str = "auto",
    precision: Optional[str] = None,
    device_index: Optional[int] = None,
    engine: str = "openmm",
    hydrogen_mass=None,
):
    """Liquid argon: n_per_side³ Lennard-Jones atoms in a periodic cubic box.

    U = Σ_{i<j} 4ε[(σ/r)¹² − (σ/r)⁶] with OpenMM's ``NonbondedForce`` (``CutoffPeriodic``,
    cutoff 2.5σ, no switching, long-range dispersion correction on), argon parameters.
    Atoms start on a simple cubic lattice.

    Parameters
    ----------
    n_per_side : int
        Atoms per box edge (125 atoms for 5).
    reduced_density : float
        ρσ³ (0.8 is a dense liquid near the triple point at T* ≈ 1).
    temperature : float or Quantity
        Kelvin (120 K is T* = kT/ε ≈ 1.0).
    platform, precision, device_index
        See :class:`~langevin_md.systems.openmm_system.OpenMMSystem`.
    engine : {"openmm", "auto", "torch"}
        As in :func:`alanine_dipeptide`; the default keeps OpenMM (the periodic cutoff
        ``NonbondedForce`` is what it was validated with).
    hydrogen_mass : float or openmm Quantity, optional
        As in :func:`alanine_dipeptide` (argon has no hydrogens: the masses stay as they are).

    Returns
    -------
    OpenMMSystem or TorchForceField
    """
    import openmm
    from openmm import app

    check_engine(engine)
    if isinstance(n_per_side, bool) or not isinstance(n_per_side, int) or n_per_side < 2:
        raise ValueError(f"n_per_side must be an int >= 2, got {n_per_side!r}")
    rho = check_positive("reduced_density", reduced_density)
    n = n_per_side**3
    box = (n / rho) ** (1.0 / 3.0) * ARGON_SIGMA_NM
    cutoff = LJ_CUTOFF_SIGMAS * ARGON_SIGMA_NM
    if cutoff > box / 2:
        raise ValueError(
            f"the box edge {box:.3f} nm is shorter than twice the {LJ_CUTOFF_SIGMAS}σ cutoff "
            f"({2 * cutoff:.3f} nm); use n_per_side >= {math.ceil(2 * LJ_CUTOFF_SIGMAS * rho ** (1 / 3))}"
        )
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0), openmm.Vec3(0, 0, box))
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(cutoff)
    nb.setUseDispersionCorrection(True)
    topology = app.Topology()
    chain = topology.addChain()
    argon = app.Element.getBySymbol("Ar")
    for _ in range(n):
        system.addParticle(ARGON_MASS_AMU)
        nb.addParticle(0.0, ARGON_SIGMA_NM, ARGON_EPSILON_KJ_PER_MOL)
        topology.addAtom("Ar", argon, topology.addResidue("AR", chain))
    system.addForce(nb)
    topology.setPeriodicBoxVectors(system.getDefaultPeriodicBoxVectors())
    grid = (np.arange(n_per_side) + 0.5) * (box / n_per_side)
    positions = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    fluid = OpenMMSystem(system, topology, positions, temperature, platform, precision, device_index)
    return finish_molecule(fluid, engine, hydrogen_mass, openmm_options(platform, precision, device_index))


@dataclass(frozen=True)
class CatalogueEntry:
    """A built-in system: ``factory(temperature=..., platform=...)`` builds it."""

    factory: Callable
    description: str


CATALOGUE: dict[str, CatalogueEntry] = {
    "alanine_dipeptide_vacuum": CatalogueEntry(
        functools.partial(alanine_dipeptide, solvent="vacuum"),
        "ACE-ALA-NME, 22 atoms, Amber ff14SB in vacuum (OpenMM)",
    ),
    "alanine_dipeptide_implicit": CatalogueEntry(
        functools.partial(alanine_dipeptide, solvent="implicit"),
        "ACE-ALA-NME, 22 atoms, Amber ff14SB + OBC2 implicit water (OpenMM)",
    ),
    "lj_fluid": CatalogueEntry(
        lennard_jones_fluid,
        "liquid argon, 125 Lennard-Jones atoms, periodic box, 120 K default (OpenMM)",
    ),
}


def list_systems() -> list[tuple[str, str]]:
    """Rows ``(name, description)`` of the built-in molecular systems, sorted by name."""
    return sorted((name, entry.description) for name, entry in CATALOGUE.items())
