"""Regenerate ``alanine_dipeptide.pdb`` (ACE-ALA-NME) from ideal internal coordinates.

How the shipped structure was made, kept so it can be rebuilt without downloads:

1. heavy atoms placed from standard peptide bond lengths and angles (Engh & Huber values,
   rounded), trans peptide bonds, L-alanine, backbone started at (φ, ψ) = (−80°, 75°);
2. hydrogens added by ``openmm.app.Modeller.addHydrogens`` with Amber ff14SB
   (``amber14-all.xml``);
3. energy-minimised in vacuum (NoCutoff) on the Reference platform, which lands in the C7eq
   basin.

Run ``python langevin_md/data/make_alanine_dipeptide.py [OUT.pdb]``.
"""

from __future__ import annotations

import sys

import numpy as np

from langevin_md.safe_paths import open_for_write
from langevin_md.systems.peptide_builder import place as _place  # NeRF, shared with the peptide builder


def heavy_atoms(phi=-80.0, psi=75.0):
    """Heavy-atom coordinates in Å as a list of (residue, atom name, element, xyz)."""
    ch3 = np.array([0.0, 0.0, 0.0])
    c0 = np.array([1.52, 0.0, 0.0])
    n1 = _place(np.array([0.0, 1.0, 0.0]), ch3, c0, 1.33, 116.0, 180.0)
    o0 = _place(n1, ch3, c0, 1.23, 121.0, 180.0)  # trans to N across CH3-C: carbonyl in plane
    ca = _place(ch3, c0, n1, 1.46, 122.0, 180.0)  # omega = 180 (trans)
    c1 = _place(c0, n1, ca, 1.52, 111.0, phi)
    cb = _place(c1, n1, ca, 1.53, 110.5, -122.5)  # L-alanine
    n2 = _place(n1, ca, c1, 1.33, 116.0, psi)
    o1 = _place(n2, ca, c1, 1.23, 121.0, 180.0)
    cm = _place(ca, c1, n2, 1.46, 122.0, 180.0)
    return [
        ("ACE", "CH3", "C", ch3), ("ACE", "C", "C", c0), ("ACE", "O", "O", o0),
        ("ALA", "N", "N", n1), ("ALA", "CA", "C", ca), ("ALA", "C", "C", c1),
        ("ALA", "O", "O", o1), ("ALA", "CB", "C", cb),
        ("NME", "N", "N", n2), ("NME", "C", "C", cm),
    ]


def build(out_path):
    import openmm
    from openmm import app, unit

    atoms = heavy_atoms()
    # chirality check: (N − CA) · ((C − CA) × (CB − CA)) > 0 for L-amino acids
    xyz = {name: x for res, name, _, x in atoms if res == "ALA"}
    vol = np.dot(xyz["N"] - xyz["CA"], np.cross(xyz["C"] - xyz["CA"], xyz["CB"] - xyz["CA"]))
    if vol <= 0:
        raise RuntimeError("built D-alanine; fix the CB torsion")

    top = app.Topology()
    chain = top.addChain("A")
    residues = {}
    positions = []
    for i, resname in enumerate(["ACE", "ALA", "NME"]):
        residues[resname] = top.addResidue(resname, chain, id=str(i + 1))
    by_name = {}
    for res, name, element, x in atoms:
        by_name[(res, name)] = top.addAtom(name, app.Element.getBySymbol(element), residues[res])
        positions.append(openmm.Vec3(*(x / 10.0)))
    for a, b in [(("ACE", "CH3"), ("ACE", "C")), (("ACE", "C"), ("ACE", "O")), (("ACE", "C"), ("ALA", "N")),
                 (("ALA", "N"), ("ALA", "CA")), (("ALA", "CA"), ("ALA", "C")), (("ALA", "C"), ("ALA", "O")),
                 (("ALA", "CA"), ("ALA", "CB")), (("ALA", "C"), ("NME", "N")), (("NME", "N"), ("NME", "C"))]:
        top.addBond(by_name[a], by_name[b])

    forcefield = app.ForceField("amber14-all.xml")
    modeller = app.Modeller(top, positions * unit.nanometer)
    modeller.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    state = context.getState(positions=True, energy=True)
    with open_for_write(out_path, "w") as fh:  # never through a link or into a FIFO
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), fh, keepIds=True)
    return state.getPotentialEnergy()


if __name__ == "__main__":
    import os

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "alanine_dipeptide.pdb")
    print("minimised energy:", build(out))
