"""Kinetic temperature with the degrees of freedom really present, on a real OpenMM run."""

import math

import numpy as np
import pytest

from langevin_md.analysis.thermo import (degrees_of_freedom, kinetic_energy_law,
                                         kinetic_temperature_check)
from langevin_md.systems.harmonic import Harmonic

TEMPERATURE = 300.0


def _langevin_middle_kinetic_energies(n_walkers=16, n_frames=100, every=40, burn_in=500):
    """K (kJ/mol) of alanine dipeptide under OpenMM's LangevinMiddleIntegrator, HBonds and a
    CMMotionRemover: independent walkers in one real Context, each from its own velocities."""
    openmm = pytest.importorskip("openmm")
    from langevin_md.minimize import minimize
    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(engine="openmm", platform="Reference", constraints="HBonds")
    omm = system.openmm_system
    assert any(isinstance(omm.getForce(i), openmm.CMMotionRemover) for i in range(omm.getNumForces()))
    start = minimize(system).positions.numpy()
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, 5.0, 0.002)
    integrator.setRandomNumberSeed(11)
    context = openmm.Context(omm, integrator, openmm.Platform.getPlatformByName("Reference"))
    kinetic = np.empty((n_frames, n_walkers))
    for w in range(n_walkers):
        context.setPositions(start)
        context.setVelocitiesToTemperature(TEMPERATURE, 100 + w)
        integrator.step(burn_in)
        for f in range(n_frames):
            integrator.step(every)
            kinetic[f, w] = context.getState(getEnergy=True).getKineticEnergy()._value
    return system, kinetic


@pytest.mark.slow
def test_langevin_middle_with_cm_remover_and_hbonds_passes_only_with_the_right_count():
    system, kinetic = _langevin_middle_kinetic_energies()
    n_dof = degrees_of_freedom(system)
    assert n_dof == 3 * 22 - 12 - 3 == 51  # 12 bonds to hydrogen, 3 for the centre of mass
    check = kinetic_temperature_check(kinetic, n_dof, TEMPERATURE)
    assert check.passed and abs(check.z) <= 5, str(check)
    assert abs(check.observed_relative_sd / check.expected_relative_sd - 1.0) < 0.1
    # the naive count makes the same run look ~23 % too cold: rejected by a wide margin
    naive = kinetic_temperature_check(kinetic, 3 * 22, TEMPERATURE)
    assert not naive.passed and naive.z < -15, str(naive)
    # so does forgetting only the centre of mass (3 of 51), at a smaller but clear margin
    no_cm = kinetic_temperature_check(kinetic, 54, TEMPERATURE)
    assert no_cm.z < -5, str(no_cm)


def test_degrees_of_freedom_counts():
    openmm = pytest.importorskip("openmm")
    s = openmm.System()
    for m in (12.0, 1.0, 1.0, 0.0):  # the last is massless (a virtual-site stand-in)
        s.addParticle(m)
    s.addConstraint(0, 1, 0.1)
    s.addConstraint(0, 2, 0.1)
    assert degrees_of_freedom(s) == 9 - 2
    s.addForce(openmm.CMMotionRemover())
    assert degrees_of_freedom(s) == 9 - 2 - 3
    assert degrees_of_freedom(Harmonic(dim=5)) == 5


def test_single_chain_uses_its_autocorrelation_and_the_law_is_gamma():
    rng = np.random.default_rng(3)
    n_dof, kT = 30, 2.5
    law = kinetic_energy_law(n_dof, kT)
    assert math.isclose(law.mean(), n_dof * kT / 2) and math.isclose(law.var(), n_dof * kT * kT / 2)
    temperature = kT / 8.314462618e-3
    k = law.rvs(size=4000, random_state=rng)
    check = kinetic_temperature_check(k, n_dof, temperature)
    assert check.passed and 2000 < check.n_independent < 8000
    assert not kinetic_temperature_check(k, n_dof, 1.1 * temperature).passed


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="n_dof"):
        kinetic_temperature_check(np.ones((5, 2)), 0, 300.0)
    with pytest.raises(ValueError, match="temperature"):
        kinetic_temperature_check(np.ones((5, 2)), 3, -1.0)
    with pytest.raises(ValueError, match="kinetic_energies"):
        kinetic_temperature_check(np.ones(1), 3, 300.0)
    with pytest.raises(ValueError, match="non-negative"):
        kinetic_temperature_check(-np.ones((5, 2)), 3, 300.0)
    with pytest.raises(TypeError, match="system"):
        degrees_of_freedom("alanine")
    with pytest.raises(ValueError, match="exactly one of temperature"):
        kinetic_temperature_check(np.ones((5, 2)), 3, 300.0, kT=2.5)
    with pytest.raises(ValueError, match="exactly one of temperature"):
        kinetic_temperature_check(np.ones((5, 2)), 3)


def test_check_of_a_baoab_result_counts_dof_and_knows_the_schemes_own_law():
    """A real run: BAOAB's step-end kinetic energy on a harmonic well is (1 − h²ω²/4) kT/2 per
    degree of freedom (EXACT_RESULTS row 4), so the check must fail against kT and pass against
    that value."""
    import langevin_md as lmd
    from langevin_md.integrators import BAOAB

    h = 0.8
    result = lmd.sample(Harmonic(dim=3, k=1.0, kT=1.0), BAOAB(timestep=h, friction=1.0), n_steps=400,
                        n_walkers=256, record_every=10, burn_in=100, seed=0)
    check = kinetic_temperature_check(result)
    assert check.unit == "kT" and check.n_dof == 3
    assert not check.passed and check.z < -10, str(check)
    exact = kinetic_temperature_check(result, kT=1.0 - h * h / 4.0)
    assert exact.passed, str(exact)


def test_degrees_of_freedom_follow_the_executor_that_ran():
    """OpenMM applies a CMMotionRemover, the torch executor does not: a report must count the
    3 centre-of-mass components only where they were really removed."""
    import langevin_md as lmd
    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(engine="openmm", platform="Reference", constraints="HBonds")
    assert degrees_of_freedom(system) == degrees_of_freedom(system, "openmm") == 3 * 22 - 12 - 3
    assert degrees_of_freedom(system, "torch") == 3 * 22 - 12
    with pytest.raises(ValueError, match="backend must be 'openmm' or 'torch', got 'jax'"):
        degrees_of_freedom(system, "jax")
    integrator = lmd.integrators.BAOAB(0.002, 5.0)
    ours = lmd.sample(system, integrator, n_steps=4, n_walkers=2, seed=1, record_every=2, backend="torch")
    theirs = lmd.sample(system, integrator, n_steps=4, n_walkers=2, seed=1, record_every=2, backend="openmm")
    assert ours.metadata["backend"] == "torch" and theirs.metadata["backend"] == "openmm"
    assert kinetic_temperature_check(ours).n_dof == 54
    assert kinetic_temperature_check(theirs).n_dof == 51
