"""Capped polyalanine, ACE-(ALA)n-NME: 100–1000-atom test molecules built offline.

The repository ships no protein structure (villin, chignolin) and downloads no input, so the
size-scaling cases (cutoff nonbonded and generalized-Born terms with neighbour lists) run on
polyalanine built from ideal internal coordinates (:mod:`langevin_md.systems.peptide_builder`).
Shipped structures (``langevin_md/data``, written by ``data/make_peptide.py``) are read as
they are; other lengths are built on the fly (seconds; the same structure to within the
minimiser's tolerance, not bitwise: ``addHydrogens`` does not place hydrogens reproducibly).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

from langevin_md.systems.engines import check_engine, finish_molecule, openmm_options, split_precision
from langevin_md.systems.molecules import DATA_DIR, CatalogueEntry
from langevin_md.systems.openmm_system import OpenMMSystem
from langevin_md.systems.peptide_builder import FOLDS

SOLVENTS = ("vacuum", "implicit")

_FORCEFIELDS = {
    "vacuum": ("amber14-all.xml",),
    "implicit": ("amber14-all.xml", "implicit/obc2.xml"),
}


def shipped_structure(n_residues: int, fold: str) -> Optional[str]:
    """Path of the shipped PDB of ACE-(ALA)n-NME in ``fold``, or None when none ships."""
    name = f"polyalanine_{n_residues}.pdb" if fold == "helix" else f"polyalanine_{n_residues}_{fold}.pdb"
    path = os.path.join(DATA_DIR, name)
    return path if os.path.exists(path) else None


def polyalanine(
    n_residues: int = 20,
    fold: str = "helix",
    solvent: str = "vacuum",
    nonbonded_cutoff=None,
    temperature=300.0,
    platform: str = "auto",
    constraints: Optional[str] = None,
    precision: Optional[str] = None,
    device_index: Optional[int] = None,
    engine: str = "auto",
    hydrogen_mass=None,
):
    """ACE-(ALA)n-NME (10 n + 12 atoms) with Amber ff14SB, in vacuum or OBC2 implicit water.

    Force field as :func:`~langevin_md.systems.molecules.alanine_dipeptide` (``amber14-all.xml``,
    plus ``implicit/obc2.xml`` for ``solvent="implicit"``), no periodic box. Without a cutoff
    every pair interacts (``NoCutoff``); with ``nonbonded_cutoff`` the nonbonded and GB terms
    use OpenMM's ``CutoffNonPeriodic`` (reaction-field Coulomb, GB pairs beyond the cutoff left
    out), and the torch force field evaluates them over neighbour lists rebuilt on a skin
    (:mod:`langevin_md.forcefield.neighbours`), exact to the all-pairs masked result.

    Parameters
    ----------
    n_residues : int
        Alanines n ≥ 1 (20: 212 atoms; 57: 582 atoms, villin headpiece's count). Shipped:
        n = 20 and 57 as a helix, 57 as a bundle; others are built (seconds).
    fold : {"helix", "bundle"}
        One ideal α helix (a rod, 2.5 nm radius of gyration at n = 57), or three helices
        joined by two loops (n ≥ 18; at n = 57 a compact 1.0 nm, like villin).
    solvent : {"vacuum", "implicit"}
        ``"implicit"`` is OBC2 (Onufriev, Bashford & Case, Proteins 55, 383 (2004)).
    nonbonded_cutoff : float or None
        Cutoff in nm for ``CutoffNonPeriodic``, or None for ``NoCutoff``.
    temperature, platform, constraints, precision, device_index, engine, hydrogen_mass
        As for :func:`~langevin_md.systems.molecules.alanine_dipeptide`.

    Returns
    -------
    OpenMMSystem or TorchForceField
        ``event_shape == (10 n + 12, 3)``, positions in nm, energies in kJ/mol.
    """
    from openmm import app, unit

    if isinstance(n_residues, bool) or not isinstance(n_residues, int) or n_residues < 1:
        raise ValueError(f"n_residues must be an int >= 1, got {n_residues!r}")
    if fold not in FOLDS:
        raise ValueError(f"fold must be one of {FOLDS}, got {fold!r}")
    if solvent not in SOLVENTS:
        raise ValueError(f"solvent must be one of {SOLVENTS}, got {solvent!r}")
    if nonbonded_cutoff is not None and (isinstance(nonbonded_cutoff, bool)
                                         or not isinstance(nonbonded_cutoff, (int, float))
                                         or not nonbonded_cutoff > 0):
        raise ValueError(f"nonbonded_cutoff must be a positive number of nm or None (NoCutoff), "
                         f"got {nonbonded_cutoff!r}")
    if constraints not in (None, "HBonds"):
        raise ValueError(f"constraints must be None or 'HBonds' for polyalanine, got {constraints!r}")
    check_engine(engine)
    torch_precision, precision = split_precision(engine, precision)

    topology, positions = _structure(n_residues, fold)
    forcefield = app.ForceField(*_FORCEFIELDS[solvent])
    if nonbonded_cutoff is None:
        method, cutoff = app.NoCutoff, 1.0 * unit.nanometer  # the cutoff is unused with NoCutoff
    else:
        method, cutoff = app.CutoffNonPeriodic, float(nonbonded_cutoff) * unit.nanometer
    omm_system = forcefield.createSystem(topology, nonbondedMethod=method, nonbondedCutoff=cutoff,
                                         constraints=None if constraints is None else getattr(app, constraints))
    system = OpenMMSystem(omm_system, topology, positions, temperature, platform, precision, device_index)
    return finish_molecule(system, engine, hydrogen_mass, openmm_options(platform, precision, device_index),
                           torch_precision=torch_precision)


@functools.lru_cache(maxsize=8)
def _structure(n_residues: int, fold: str):
    """(openmm Topology, positions Quantity) of ACE-(ALA)n-NME: the shipped file, or built."""
    from openmm import app

    path = shipped_structure(n_residues, fold)
    if path is not None:
        pdb = app.PDBFile(path)
        return pdb.topology, pdb.positions
    from langevin_md.systems.peptide_builder import build

    topology, positions, _ = build(n_residues, None, fold)
    return topology, positions


#: The polyalanine entries of the systems catalogue (merged with
#: :data:`langevin_md.systems.molecules.CATALOGUE` by ``run/choices.py``).
CATALOGUE: dict[str, CatalogueEntry] = {
    "polyalanine_vacuum": CatalogueEntry(
        functools.partial(polyalanine, solvent="vacuum"),
        "ACE-(ALA)n-NME, 10n+12 atoms (helix or 3-helix bundle), Amber ff14SB in vacuum, optional cutoff (OpenMM)",
    ),
    "polyalanine_implicit": CatalogueEntry(
        functools.partial(polyalanine, solvent="implicit"),
        "ACE-(ALA)n-NME, 10n+12 atoms (helix or 3-helix bundle), Amber ff14SB + OBC2, optional cutoff (OpenMM)",
    ),
}
