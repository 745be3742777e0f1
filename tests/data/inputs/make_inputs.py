"""Write the Amber, GROMACS and CHARMM input files of alanine dipeptide used by the tests.

Run once, by hand, with ParmEd importable (``pip install parmed``; it is not a dependency of
langevin_md or of its tests, which read the files written here):

    python tests/data/inputs/make_inputs.py

Files written next to this script (parameters: Amber ff14SB as OpenMM's amber14-all.xml,
TIP3P water, converted by ParmEd from the OpenMM System):

* ``ala2.prmtop``/``ala2.inpcrd``        vacuum, no box, mbondi2 GB radii
* ``ala2.top``/``ala2.gro``              vacuum (a .gro file always has a box line)
* ``ala2.psf``/``ala2.prm``              vacuum, CHARMM format (Amber's 1-4 scaling is not
                                         representable in CHARMM files: 1-4 terms differ)
* ``ala2_solv.prmtop``/``ala2_solv.inpcrd`` and ``ala2_solv.top``/``ala2_solv.gro``:
  solvated in a 1.8 nm cubic box of TIP3P water with Na+/Cl- (a periodic box record)
"""

import os

import openmm
import parmed
from openmm import app, unit

HERE = os.path.dirname(os.path.abspath(__file__))
PDB = os.path.join(HERE, "..", "..", "..", "langevin_md", "data", "alanine_dipeptide.pdb")


def structure(topology, positions, ff, **kwargs):
    system = ff.createSystem(topology, constraints=None, rigidWater=False, **kwargs)
    return parmed.openmm.load_topology(topology, system, xyz=positions)


def main():
    pdb = app.PDBFile(PDB)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    vac = structure(pdb.topology, pdb.positions, ff, nonbondedMethod=app.NoCutoff)
    amber = parmed.amber.AmberParm.from_structure(vac)
    # generalized-Born radii (mbondi2, the set OBC2 was fitted with) for implicit_solvent=
    parmed.tools.changeRadii(amber, "mbondi2").execute()
    amber.save(os.path.join(HERE, "ala2.prmtop"), overwrite=True)
    amber.save(os.path.join(HERE, "ala2.inpcrd"), format="rst7", overwrite=True)
    vac.save(os.path.join(HERE, "ala2.top"), format="gromacs", overwrite=True)
    vac.save(os.path.join(HERE, "ala2.gro"), overwrite=True)
    charmm = parmed.charmm.CharmmPsfFile.from_structure(vac)
    charmm.save(os.path.join(HERE, "ala2.psf"), overwrite=True)
    params = parmed.charmm.CharmmParameterSet.from_structure(vac)
    params.write(par=os.path.join(HERE, "ala2.prm"))

    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(1.8, 1.8, 1.8) * unit.nanometer,
                        ionicStrength=0.3 * unit.molar)
    solv = structure(modeller.topology, modeller.positions, ff, nonbondedMethod=app.PME,
                     nonbondedCutoff=0.8 * unit.nanometer)
    amber = parmed.amber.AmberParm.from_structure(solv)
    amber.save(os.path.join(HERE, "ala2_solv.prmtop"), overwrite=True)
    amber.save(os.path.join(HERE, "ala2_solv.inpcrd"), format="rst7", overwrite=True)
    solv.save(os.path.join(HERE, "ala2_solv.top"), format="gromacs", overwrite=True)
    solv.save(os.path.join(HERE, "ala2_solv.gro"), overwrite=True)


if __name__ == "__main__":
    main()
