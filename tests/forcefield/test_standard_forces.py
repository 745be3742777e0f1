"""The torch force field equals OpenMM Reference on standard (non-custom) forces.

Float64 energies to 1e-6 relative and forces to 1e-6 of the RMS force (largest error on any
atom), on minimised and perturbed configurations. Measured errors are ~1e-14 (see the
report of issue 10); the 1e-6 bound is the issue's requirement.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langevin_md.forcefield.registry import BUILDERS
from langevin_md.systems import TorchForceField
from tests.forcefield.helpers import (configurations, create_system, errors, reference_energy_forces,
                                      torch_energy_forces)

openmm = pytest.importorskip("openmm")

TOL = 1e-6

CASES = [
    # structure, force-field files, nonbonded method, cutoff (nm)
    ("alanine", ("amber14-all.xml",), "NoCutoff", 1.0),
    ("alanine", ("amber14-all.xml",), "CutoffNonPeriodic", 0.6),
    ("alanine", ("amber99sbildn.xml", "amber99_obc.xml"), "NoCutoff", 1.0),  # native GBSAOBCForce
    ("alanine", ("amber99sbildn.xml", "amber99_obc.xml"), "CutoffNonPeriodic", 0.6),
    ("alanine", ("amber19-all.xml",), "NoCutoff", 1.0),  # ff19SB: CMAPTorsionForce
    ("decapeptide", ("amber14-all.xml",), "NoCutoff", 1.0),
    ("decapeptide", ("amber14-all.xml",), "CutoffNonPeriodic", 0.9),
    ("decapeptide", ("amber19-all.xml",), "CutoffNonPeriodic", 0.9),
    ("decapeptide", ("amber99sbildn.xml", "amber99_obc.xml"), "NoCutoff", 1.0),
    ("decapeptide", ("amber99sbildn.xml", "amber99_obc.xml"), "CutoffNonPeriodic", 0.9),
]


def _ids(case):
    structure, files, method, _ = case
    return f"{structure}-{'+'.join(f.split('.')[0].replace('/', '_') for f in files)}-{method}"


def _check(system, positions, scale=0.005, n_perturbed=3, seed=0):
    ff = TorchForceField.from_openmm(system, temperature=300.0)
    x = configurations(positions, n_perturbed, scale, seed)
    ref_e, ref_f = reference_energy_forces(system, x)
    e, f = torch_energy_forces(ff, x)
    return errors(e, f, ref_e, ref_f), ff, x, ref_e, ref_f


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float64_matches_reference(case):
    structure, files, method, cutoff = case
    system, _, positions = create_system(structure, files, method, cutoff)
    (e_err, f_err), *_ = _check(system, positions)
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


@pytest.mark.parametrize("solvent_files", [("amber14-all.xml",), ("amber99sbildn.xml", "amber99_obc.xml")])
def test_float32_errors_are_small(solvent_files):
    """Float32 is not exact. Measured on alanine dipeptide: energies ~1e-6 relative; forces
    ~3e-6 of the RMS force at perturbed configurations, and ~0.014 kJ/mol/nm absolute at the
    minimum, where the RMS force (~24 kJ/mol/nm) is a small remainder of cancelling terms."""
    system, _, positions = create_system("alanine", solvent_files)
    ff = TorchForceField.from_openmm(system)
    x = configurations(positions, 3, 0.005, 1)
    ref_e, ref_f = reference_energy_forces(system, x)
    e, f = torch_energy_forces(ff, x, dtype=torch.float32)
    e_err, f_err = errors(e[1:], f[1:], ref_e[1:], ref_f[1:])
    assert e_err < 1e-4 and f_err < 1e-4, (e_err, f_err)
    assert abs(e[0] - ref_e[0]) < 1e-3 * max(abs(ref_e[0]), 1.0)
    assert np.abs(f[0] - ref_f[0]).max() < 0.1  # kJ/mol/nm


def test_obc2_custom_gb():
    """amber14 + implicit/obc2.xml gives a CustomGBForce (langevin_md.forcefield.custom)."""
    assert "CustomGBForce" in BUILDERS
    system, _, positions = create_system("alanine", ("amber14-all.xml", "implicit/obc2.xml"))
    (e_err, f_err), *_ = _check(system, positions)
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


def test_rb_torsions_switching_and_exception_beyond_cutoff():
    """RBTorsionForce, the LJ switching function, and 1-4 exceptions that ignore the cutoff."""
    system, _, positions = create_system("alanine", ("amber14-all.xml",), "CutoffNonPeriodic", 0.35)
    rng = np.random.default_rng(3)
    rb = openmm.RBTorsionForce()
    for force in system.getForces():
        if isinstance(force, openmm.PeriodicTorsionForce):
            quads = {tuple(force.getTorsionParameters(i)[:4]) for i in range(force.getNumTorsions())}
        if isinstance(force, openmm.NonbondedForce):
            force.setUseSwitchingFunction(True)
            force.setSwitchingDistance(0.25)
            force.setReactionFieldDielectric(60.0)
            # a far exception: with the 0.35 nm cutoff it must still count in full
            force.addException(0, 21, 0.3, 0.3, 0.5, replace=True)
    for quad in sorted(quads):
        rb.addTorsion(*quad, *rng.uniform(-5.0, 5.0, size=6))
    system.addForce(rb)
    (e_err, f_err), ff, x, *_ = _check(system, positions, scale=0.02)
    assert "rb_torsion" in [t.kind for t in ff.module.terms]
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


def test_random_cmap_maps_at_random_angles():
    """Two random CMAP maps (sizes 24 and 7) on several torsion pairs, over the whole torus."""
    system, _, positions = create_system("alanine", ("amber14-all.xml",))
    rng = np.random.default_rng(4)
    cmap = openmm.CMAPTorsionForce()
    cmap.addMap(24, rng.normal(0.0, 5.0, 24 * 24))
    cmap.addMap(7, rng.normal(0.0, 5.0, 7 * 7))
    # phi (C-N-CA-C) and psi (N-CA-C-N) of alanine dipeptide, and two other quadruples
    cmap.addTorsion(0, 4, 6, 8, 14, 6, 8, 14, 16)
    cmap.addTorsion(1, 1, 4, 6, 8, 8, 14, 16, 18)
    cmap.addTorsion(1, 10, 8, 14, 16, 0, 1, 4, 6)
    system.addForce(cmap)
    # large perturbations sweep the dihedrals over the whole circle
    (e_err, f_err), *_ = _check(system, positions, scale=0.05, n_perturbed=8, seed=5)
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


# --------------------------------------------------------------------------- refusals
def _alanine_system(method="NoCutoff"):
    return create_system("alanine", ("amber14-all.xml",), method, 1.0)[0]


def test_pme_is_refused_with_the_alternative_named():
    system = _alanine_system()
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setNonbondedMethod(openmm.NonbondedForce.PME)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3))
    with pytest.raises(ValueError, match=r"NonbondedForce.*PME.*OpenMMSystem"):
        TorchForceField.from_openmm(system)


def test_periodic_bonded_force_is_refused():
    system = _alanine_system()
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            force.setUsesPeriodicBoundaryConditions(True)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3))
    with pytest.raises(ValueError, match="HarmonicBondForce uses periodic boundary conditions"):
        TorchForceField.from_openmm(system)


def test_unknown_force_is_refused_by_name():
    system = _alanine_system()
    system.addForce(openmm.AndersenThermostat(300.0, 1.0))
    with pytest.raises(ValueError, match=r"AndersenThermostat, is not supported.*backend='openmm'"):
        TorchForceField.from_openmm(system)


def test_virtual_sites_are_refused():
    system = _alanine_system()
    index = system.addParticle(0.0)
    system.setVirtualSite(index, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.addParticle(0.0, 0.1, 0.0)
    with pytest.raises(ValueError, match="virtual site"):
        TorchForceField.from_openmm(system)


def test_parameter_offsets_are_refused():
    system = _alanine_system()
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.addGlobalParameter("lam", 1.0)
            force.addParticleParameterOffset("lam", 0, 0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="parameter offsets"):
        TorchForceField.from_openmm(system)


def test_cmmotionremover_is_skipped():
    system = _alanine_system()
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    ff = TorchForceField.from_openmm(system)
    assert sorted(t.kind for t in ff.module.terms) == [
        "harmonic_angle", "harmonic_bond", "lj_coulomb_pairs", "periodic_torsion"]
