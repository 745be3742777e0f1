"""Amber, GROMACS and CHARMM inputs through OpenMM's readers, and the explicit solvent choice.

The input files in tests/data/inputs were written by make_inputs.py there (ParmEd, from the
same Amber ff14SB System as langevin_md's alanine dipeptide), so every reader must give back
that System's energies.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
from openmm import unit  # noqa: E402

from langevin_md.systems.inputs import from_amber, from_charmm, from_gromacs, solvent_residues  # noqa: E402
from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB, alanine_dipeptide  # noqa: E402
from langevin_md.systems.openmm_system import OpenMMSystem  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "inputs"


@pytest.fixture(scope="module")
def reference():
    return alanine_dipeptide(engine="openmm", platform="Reference")


@pytest.fixture(scope="module")
def configurations(reference):
    rng = np.random.default_rng(0)
    return torch.as_tensor(reference.positions[None] + rng.normal(0.0, 0.005, (4, 22, 3)))


def _same_energy_and_forces(system, reference, x, atol):
    e, f = system.energy_and_forces(x)
    e_ref, f_ref = reference.energy_and_forces(x)
    np.testing.assert_allclose(e.numpy(), e_ref.numpy(), atol=atol)
    np.testing.assert_allclose(f.numpy(), f_ref.numpy(), atol=50 * atol)


def test_amber_prmtop_gives_the_ff14sb_system(reference, configurations):
    system = from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", temperature=310 * unit.kelvin,
                        platform="Reference")
    assert isinstance(system, OpenMMSystem) and system.temperature == pytest.approx(310.0)
    np.testing.assert_allclose(system.positions, reference.positions, atol=1e-6)
    _same_energy_and_forces(system, reference, configurations, atol=1e-4)
    nb = next(f for f in system.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff


# ParmEd writes no GB screening factors: OpenMM warns that they differ from OBC2's own
@pytest.mark.filterwarnings("ignore:Non-optimal GB parameters")
def test_amber_implicit_solvent_and_constraints(reference):
    system = from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", implicit_solvent="OBC2", constraints="HBonds",
                        platform="Reference")
    assert system.constrained and system.openmm_system.getNumConstraints() == 12
    assert any("GB" in type(f).__name__ for f in system.openmm_system.getForces())


def test_gromacs_box_line_needs_a_choice_then_matches(reference, configurations):
    with pytest.raises(ValueError, match=r"periodic box record.*nonbonded_method='NoCutoff'.*Every .gro file"):
        from_gromacs(DATA / "ala2.top", DATA / "ala2.gro")
    system = from_gromacs(DATA / "ala2.top", DATA / "ala2.gro", nonbonded_method="NoCutoff", platform="Reference")
    _same_energy_and_forces(system, reference, configurations, atol=1e-4)


def test_charmm_psf_matches_with_charmm_1_4_scaling(reference, configurations):
    system = from_charmm(DATA / "ala2.psf", [DATA / "ala2.prm"], ALANINE_DIPEPTIDE_PDB, platform="Reference")
    # CHARMM files cannot say Amber's 1-4 scaling (1/1.2 electrostatics, 1/2 Lennard-Jones):
    # the same System with unscaled 1-4 pairs is what the psf should reproduce.
    omm = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(reference.openmm_system))
    nb = next(f for f in omm.getForces() if isinstance(f, openmm.NonbondedForce))
    for k in range(nb.getNumExceptions()):
        i, j, q, s, eps = nb.getExceptionParameters(k)
        if q._value != 0 or eps._value != 0:
            nb.setExceptionParameters(k, i, j, 1.2 * q, s, 2.0 * eps)
    unscaled = OpenMMSystem(omm, reference.openmm_topology, reference.positions, platform="Reference")
    # ParmEd writes the Amber impropers as CHARMM harmonic impropers, which agree with the
    # periodic ones only near the minimum: compare at the (minimised) reference structure
    x0 = torch.as_tensor(reference.positions[None])
    e0 = float(system.energy(x0)[0])
    assert e0 == pytest.approx(float(unscaled.energy(x0)[0]), abs=0.1)
    assert abs(e0 - float(reference.energy(x0)[0])) > 10.0  # Amber's 1-4 scaling is not it
    # and away from it the wrapper gives exactly what OpenMM's reader gives
    from openmm import app

    raw = app.CharmmPsfFile(str(DATA / "ala2.psf")).createSystem(app.CharmmParameterSet(str(DATA / "ala2.prm")))
    direct = OpenMMSystem(raw, reference.openmm_topology, reference.positions, platform="Reference")
    _same_energy_and_forces(system, direct, configurations, atol=1e-9)


@pytest.mark.parametrize("reader", ["amber", "gromacs"])
def test_solvated_input_strip_or_keep(reader, reference, configurations):
    def build(**kwargs):
        if reader == "amber":
            return from_amber(DATA / "ala2_solv.prmtop", DATA / "ala2_solv.inpcrd", platform="Reference", **kwargs)
        return from_gromacs(DATA / "ala2_solv.top", DATA / "ala2_solv.gro", platform="Reference", **kwargs)

    with pytest.raises(ValueError, match=r"CL x1, HOH x159, NA x1 and a periodic box.*strip=\['CL', 'HOH', 'NA'\]"):
        build()
    for strip in ("solvent", ["HOH", "NA", "CL"]):
        stripped = build(strip=strip)
        assert stripped.event_shape == (22, 3) and stripped.openmm_topology.getPeriodicBoxVectors() is None
        assert not solvent_residues(stripped.openmm_topology)
        _same_energy_and_forces(stripped, reference, configurations, atol=1e-4)
    kept = build(nonbonded_method="PME", nonbonded_cutoff=8 * unit.angstrom)
    assert kept.event_shape == (501, 3)
    nb = next(f for f in kept.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.PME
    assert nb.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(0.8)
    assert bool(torch.isfinite(kept.energy(torch.as_tensor(kept.positions[None]))).all())
    # strip is the choice: stripping only the ions leaves the waters, run in vacuum
    waters_only = build(strip=["NA", "CL"])
    assert waters_only.event_shape == (22 + 3 * 159, 3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="nonbonded_method must be one of"):
        from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", nonbonded_method="pme")
    with pytest.raises(ValueError, match=r"\['WAT'\] that are not in the structure.*'HOH'"):
        from_amber(DATA / "ala2_solv.prmtop", DATA / "ala2_solv.inpcrd", strip=["WAT"])
    with pytest.raises(ValueError, match="no water or ion"):
        from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", strip="solvent")
    with pytest.raises(ValueError, match="nonbonded_method must be None or 'NoCutoff'"):
        from_amber(DATA / "ala2_solv.prmtop", DATA / "ala2_solv.inpcrd", strip="solvent", nonbonded_method="PME")
    with pytest.raises(ValueError, match="needs a periodic box.*box="):
        from_charmm(DATA / "ala2.psf", [DATA / "ala2.prm"], ALANINE_DIPEPTIDE_PDB, nonbonded_method="PME")
    with pytest.raises(TypeError, match="strip must be"):
        from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", strip="HOH")
    with pytest.raises(FileNotFoundError, match="inpcrd"):
        from_amber(DATA / "ala2.prmtop", DATA / "missing.inpcrd")
    with pytest.raises(ValueError, match="nonbonded_cutoff"):
        from_gromacs(DATA / "ala2.top", DATA / "ala2.gro", nonbonded_method="NoCutoff", nonbonded_cutoff=-1.0)
    with pytest.raises(ValueError, match="constraints"):
        from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", constraints="hbonds")
    with pytest.raises(ValueError, match="implicit_solvent"):
        from_amber(DATA / "ala2.prmtop", DATA / "ala2.inpcrd", implicit_solvent="GB")
    with pytest.raises(ValueError, match="box must be three"):
        from_charmm(DATA / "ala2.psf", [DATA / "ala2.prm"], ALANINE_DIPEPTIDE_PDB, box=(2.0, 2.0))
