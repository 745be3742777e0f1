"""Solvent in a structure: which residues are water or ions, and the explicit choice a user must
make when a structure has them (or a periodic box): strip them, or keep them with a named
nonbonded method. Shared by the OpenMM structure readers (``openmm_system``, ``inputs``) so a
box record never switches on PME behind the user's back.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from langevin_md.units import strip as strip_units

__all__ = ["WATER_RESIDUES", "ION_RESIDUES", "has_box", "solvent_residues", "require_solvent_choice"]

#: Residue names read as water (Amber, GROMACS, CHARMM and PDB spellings).
WATER_RESIDUES = frozenset({"HOH", "WAT", "SOL", "TIP3", "TIP3P", "TIP4", "TIP4P", "TIP5P", "T3P", "T4P", "SPC",
                            "SPCE", "OPC", "H2O"})
#: Residue names read as monatomic ions (Amber/PDB and CHARMM spellings).
ION_RESIDUES = frozenset({"NA", "CL", "K", "LI", "RB", "CS", "MG", "CA", "ZN", "NA+", "CL-", "K+", "Na+", "Cl-", "Na", "Cl",
                          "SOD", "CLA", "POT", "CAL", "CES", "LIT", "RUB", "ZN2", "MG2", "IOD", "BR", "F", "I"})

def has_box(box) -> bool:
    """A box record that is really there (.gro files of molecules in vacuum may write zeros)."""
    if box is None:
        return False
    arr = np.array([[strip_units(c, "nanometer") for c in v] for v in box], dtype=np.float64)
    return bool(np.all(np.isfinite(arr)) and abs(np.linalg.det(arr)) > 1e-12)


def solvent_residues(topology) -> Counter:
    """Counts of water and ion residues in an ``openmm.app.Topology``, by residue name."""
    return Counter(r.name for r in topology.residues() if r.name in WATER_RESIDUES or r.name in ION_RESIDUES)


def require_solvent_choice(topology, box, strip, nonbonded_method, source: str) -> None:
    """Raise ``ValueError`` (with the options) when an input with waters, ions or a periodic box
    comes with neither ``strip`` nor ``nonbonded_method``; do nothing otherwise.

    Parameters
    ----------
    topology : openmm.app.Topology
    box : periodic box vectors (Quantity or nm) or None
    strip, nonbonded_method
        The user's choices (None when not given).
    source : str
        The input's name, for the message.
    """
    if strip is not None or nonbonded_method is not None:
        return
    found = solvent_residues(topology)
    if not found and not has_box(box):
        return
    parts = []
    if found:
        parts.append("solvent residues " + ", ".join(f"{n} x{c}" for n, c in sorted(found.items())))
    if has_box(box):
        parts.append("a periodic box record")
    if found:
        choice = (f"strip={sorted(found)!r} (or strip='solvent') to delete them and sample the rest in vacuum "
                  "(NoCutoff), or keep them with an explicit nonbonded_method such as 'PME' (periodic, with "
                  "nonbonded_cutoff)")
    else:
        choice = ("nonbonded_method='NoCutoff' to treat it as a molecule in vacuum (the box is ignored), or "
                  "'PME'/'CutoffPeriodic' to simulate it periodically in that box")
    note = " Every .gro file has a box line." if ".gro" in source else ""
    raise ValueError(f"{source} has {' and '.join(parts)}. Choose what to simulate: {choice}. A box record "
                     f"does not switch on PME by itself.{note}")
