"""Build capped polyalanine, ACE-(ALA)n-NME, from ideal internal coordinates.

The generalisation of ``make_alanine_dipeptide.py`` (which builds n = 1) to any length, so
that 100–1000-atom test molecules exist without downloads:

1. heavy atoms placed one after another along the chain (NeRF: Parsons et al., J. Comput.
   Chem. 26, 1063 (2005)) from standard bond lengths and angles (Engh & Huber values,
   rounded, as in ``make_alanine_dipeptide.py``), trans peptide bonds, L-alanine, with the
   backbone dihedrals (φ, ψ) of each residue given: by default an ideal right-handed α helix
   (φ, ψ) = (−57°, −47°);
2. hydrogens added by ``openmm.app.Modeller.addHydrogens`` with Amber ff14SB
   (``amber14-all.xml``) on the Reference platform;
3. energy-minimised in vacuum (NoCutoff) on the Reference platform.

ACE-(ALA)n-NME has 10 n + 12 atoms: 212 for n = 20, 582 (villin headpiece 1–35's count) for
n = 57. An ideal helix is a rod (about 0.15 nm per residue), less compact than a globular
protein of the same size, so a cutoff leaves out more of its pairs than of villin's.

The ``"bundle"`` fold joins three helices by two short loops (a compact stand-in for a
three-helix protein such as villin headpiece); its loops come from a small search, see
:data:`BUNDLE_LOOP`.

``langevin_md/data/make_peptide.py`` writes the shipped structures with :func:`build`;
:func:`langevin_md.systems.peptides.polyalanine` reads them, or builds other lengths here.
"""

from __future__ import annotations

import numpy as np

#: Backbone dihedrals (φ, ψ) in degrees of an ideal right-handed α helix.
ALPHA_HELIX = (-57.0, -47.0)

#: The two 3-residue loops of :func:`bundle_dihedrals`: αR, αL, β regions of the Ramachandran
#: map, found by a search over {αR, αL, β, PPII, bridge}⁶ for the most compact clash-free
#: 17-3-17-3-17 chain (heavy-atom radius of gyration 1.17 nm at n = 57; villin's is ≈ 0.95 nm).
BUNDLE_LOOP = ((-60.0, -45.0), (60.0, 45.0), (-120.0, 130.0))

#: The folds :func:`build` knows.
FOLDS = ("helix", "bundle")


def fold_dihedrals(n_residues: int, fold: str):
    """(φ, ψ) per residue: ``"helix"``, one α helix; ``"bundle"``, three α helices joined by
    two :data:`BUNDLE_LOOP` loops (helix lengths as equal as possible; n ≥ 18)."""
    if fold == "helix":
        return [ALPHA_HELIX] * n_residues
    if fold != "bundle":
        raise ValueError(f"fold must be one of {FOLDS}, got {fold!r}")
    helix_total = n_residues - 2 * len(BUNDLE_LOOP)
    if helix_total < 12:
        raise ValueError(f"the bundle fold needs n_residues >= {12 + 2 * len(BUNDLE_LOOP)} (three helices of 4), "
                         f"got {n_residues}")
    lengths = [helix_total // 3 + (1 if k < helix_total % 3 else 0) for k in range(3)]
    return ([ALPHA_HELIX] * lengths[0] + list(BUNDLE_LOOP) + [ALPHA_HELIX] * lengths[1] + list(BUNDLE_LOOP)
            + [ALPHA_HELIX] * lengths[2])

# bond lengths (Å) and angles (degrees) of the backbone and Cβ
_N_CA, _CA_C, _C_N, _C_O, _CA_CB = 1.46, 1.52, 1.33, 1.23, 1.53
_C_N_CA, _N_CA_C, _CA_C_N, _CA_C_O = 122.0, 111.0, 116.0, 121.0


def place(a, b, c, bond, angle_deg, torsion_deg):
    """Position of atom d with |cd| = bond, angle(b, c, d) and dihedral(a, b, c, d) (NeRF)."""
    angle, torsion = np.radians(angle_deg), np.radians(torsion_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion), bond * np.sin(angle) * np.sin(torsion)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def heavy_atoms(dihedrals):
    """Heavy atoms of ACE-(ALA)n-NME in Å: a list of (residue index, residue name, atom name,
    element, xyz), residue 0 being ACE; ``dihedrals`` is one (φ, ψ) in degrees per ALA."""
    ch3 = np.array([0.0, 0.0, 0.0])
    c_prev = np.array([_CA_C, 0.0, 0.0])
    n = place(np.array([0.0, 1.0, 0.0]), ch3, c_prev, _C_N, _CA_C_N, 180.0)
    o = place(n, ch3, c_prev, _C_O, _CA_C_O, 180.0)  # trans to N across CH3-C: carbonyl in plane
    atoms = [(0, "ACE", "CH3", "C", ch3), (0, "ACE", "C", "C", c_prev), (0, "ACE", "O", "O", o)]
    ca_prev = ch3
    for k, (phi, psi) in enumerate(dihedrals, start=1):
        ca = place(ca_prev, c_prev, n, _N_CA, _C_N_CA, 180.0)  # ω = 180° (trans)
        c = place(c_prev, n, ca, _CA_C, _N_CA_C, phi)
        cb = place(c, n, ca, _CA_CB, 110.5, -122.5)  # L-alanine
        n_next = place(n, ca, c, _C_N, _CA_C_N, psi)
        o = place(n_next, ca, c, _C_O, _CA_C_O, 180.0)
        atoms += [(k, "ALA", "N", "N", n), (k, "ALA", "CA", "C", ca), (k, "ALA", "C", "C", c),
                  (k, "ALA", "O", "O", o), (k, "ALA", "CB", "C", cb)]
        ca_prev, c_prev, n = ca, c, n_next
    last = len(dihedrals) + 1
    atoms += [(last, "NME", "N", "N", n), (last, "NME", "C", "C", place(ca_prev, c_prev, n, _N_CA, _C_N_CA, 180.0))]
    return atoms


def _bonds(n_residues):
    """Heavy-atom bonds as ((residue, atom), (residue, atom)) pairs."""
    bonds = [((0, "CH3"), (0, "C")), ((0, "C"), (0, "O")), ((0, "C"), (1, "N"))]
    for k in range(1, n_residues + 1):
        bonds += [((k, "N"), (k, "CA")), ((k, "CA"), (k, "C")), ((k, "C"), (k, "O")), ((k, "CA"), (k, "CB")),
                  ((k, "C"), (k + 1, "N"))]
    bonds.append(((n_residues + 1, "N"), (n_residues + 1, "C")))
    return bonds


def build(n_residues: int, out_path=None, fold: str = "helix", tolerance=1.0):
    """Build, protonate and minimise ACE-(ALA)n-NME; write a PDB if ``out_path`` is given.

    Parameters
    ----------
    n_residues : int
        Number of alanines n (≥ 1).
    out_path : str, optional
    fold : {"helix", "bundle"}
        Backbone dihedrals of :func:`fold_dihedrals`.
    tolerance : float
        Minimiser tolerance, kJ/mol/nm.

    Returns
    -------
    (openmm.app.Topology, positions as an openmm Quantity, minimised energy in kJ/mol)
    """
    import openmm
    from openmm import app, unit

    if isinstance(n_residues, bool) or not isinstance(n_residues, int) or n_residues < 1:
        raise ValueError(f"n_residues must be an int >= 1, got {n_residues!r}")
    atoms = heavy_atoms(fold_dihedrals(n_residues, fold))
    for k in range(1, n_residues + 1):  # chirality: (N − CA) · ((C − CA) × (CB − CA)) > 0 for L
        xyz = {name: x for res, _, name, _, x in atoms if res == k}
        if np.dot(xyz["N"] - xyz["CA"], np.cross(xyz["C"] - xyz["CA"], xyz["CB"] - xyz["CA"])) <= 0:
            raise RuntimeError(f"residue {k} was built as D-alanine; fix the CB torsion")

    top = app.Topology()
    chain = top.addChain("A")
    residues = {}
    by_key = {}
    positions = []
    for res, resname, name, element, x in atoms:
        if res not in residues:
            residues[res] = top.addResidue(resname, chain, id=str(res + 1))
        by_key[res, name] = top.addAtom(name, app.Element.getBySymbol(element), residues[res])
        positions.append(openmm.Vec3(*(x / 10.0)))
    for a, b in _bonds(n_residues):
        top.addBond(by_key[a], by_key[b])

    reference = openmm.Platform.getPlatformByName("Reference")
    forcefield = app.ForceField("amber14-all.xml")
    modeller = app.Modeller(top, positions * unit.nanometer)
    modeller.addHydrogens(forcefield, platform=reference)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), reference)
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    if out_path is not None:
        with open(out_path, "w") as fh:
            app.PDBFile.writeFile(modeller.topology, state.getPositions(), fh, keepIds=True)
    return modeller.topology, state.getPositions(), state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

