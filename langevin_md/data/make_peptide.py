"""Regenerate the shipped polyalanine structures, ACE-(ALA)n-NME, without downloads.

How they were made (ideal internal coordinates, ``Modeller.addHydrogens`` with Amber ff14SB,
minimisation in vacuum on the Reference platform) is documented in
:mod:`langevin_md.systems.peptide_builder`, which does the work. The shipped files:

- ``polyalanine_20.pdb``: n = 20, one α helix, 212 atoms;
- ``polyalanine_57.pdb``: n = 57, one α helix, 582 atoms (villin headpiece 1–35's count);
- ``polyalanine_57_bundle.pdb``: n = 57 folded as three helices (17-3-17-3-17), 582 atoms,
  radius of gyration 1.02 nm (villin's ≈ 1 nm): the compact "villin-size" test molecule.

Run ``python langevin_md/data/make_peptide.py N [helix|bundle] [OUT.pdb]`` (default helix,
written as ``polyalanine_N.pdb`` or ``polyalanine_N_bundle.pdb`` next to this file).
"""

from __future__ import annotations

import os
import sys

from langevin_md.systems.peptide_builder import build

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    fold = sys.argv[2] if len(sys.argv) > 2 else "helix"
    name = f"polyalanine_{n}.pdb" if fold == "helix" else f"polyalanine_{n}_{fold}.pdb"
    out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    print(f"{out}: minimised energy {build(n, out, fold)[2]:.3f} kJ/mol")
