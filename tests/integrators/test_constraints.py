"""Batched SHAKE/RATTLE, the constrained BAOAB/OBABO steps, and hydrogen mass repartitioning.

Constraints come from a real ``openmm.System`` (alanine dipeptide, bonds to hydrogen
constrained: 12 constraints in 6 coupled groups, three of them CH₃); the torch side is
checked against hand-solvable cases and against OpenMM's own bookkeeping.
"""

import math

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators.constraints import (
    ConstraintError,
    Constraints,
    ConstraintSolver,
    constraint_solver,
    constraints_of,
)
from langevin_md.integrators.underdamped import ornstein_uhlenbeck
from langevin_md.integrators.base import UnderdampedState
from langevin_md.random import WalkerRNG

pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def bridge():
    """Alanine dipeptide, HBonds, forces through the OpenMM bridge (carries the openmm.System)."""
    return lmd.systems.alanine_dipeptide(constraints="HBonds", engine="openmm")


@pytest.fixture(scope="module")
def solver(bridge):
    return ConstraintSolver(constraints_of(bridge), bridge.masses)


def walkers(system, n, seed=0, noise=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(system.positions, dtype=torch.float64).expand(n, -1, -1).clone()
    return x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)


def test_constraints_read_from_the_openmm_system(bridge):
    c = constraints_of(bridge)
    omm = bridge.openmm_system
    assert len(c) == omm.getNumConstraints() == 12
    for k in range(len(c)):
        i, j, d = omm.getConstraintParameters(k)
        assert (c.atoms[k, 0], c.atoms[k, 1]) == (i, j)
        assert c.distances[k] == pytest.approx(d.value_in_unit(d.unit), rel=1e-15)
    # CH₃ groups couple three constraints through their carbon
    assert sorted(len(g) for g in c.components()) == [1, 1, 1, 3, 3, 3]


def test_unconstrained_system_has_no_solver():
    system = lmd.systems.alanine_dipeptide(engine="openmm")
    assert constraints_of(system) is None
    assert constraint_solver(system, torch.zeros(1, 22, 3, dtype=torch.float64)) is None


def test_shake_reaches_float64_tolerance_from_a_perturbed_structure(bridge, solver):
    x0 = solver.constrain_positions(walkers(bridge, 64, noise=0.0))
    assert float(solver.relative_violation(x0).max()) < 1e-11
    # a 4 fs-sized unconstrained displacement of every atom
    x1 = x0 + 0.004 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(solver.relative_violation(x1).max()) > 1e-2
    x = solver.shake(x0, x1)
    assert float(solver.relative_violation(x).max()) < 1e-11
    # only constrained atoms move, and the centre of mass does not (SHAKE's forces are internal)
    m = torch.as_tensor(bridge.masses).reshape(1, -1, 1)
    assert torch.allclose((m * x).sum(1), (m * x1).sum(1), rtol=0, atol=1e-12)
    free = sorted(set(range(22)) - set(constraints_of(bridge).atoms.reshape(-1).tolist()))
    assert torch.equal(x[:, free], x1[:, free])


def test_shake_matches_the_closed_form_for_one_bond():
    # two atoms, masses 1 and 3, bond d = 1 along x; the unconstrained update moves atom 1
    # by (0.2, 0.3, 0); the correction is along the old bond r = (−1, 0, 0):
    # x0' = x̃0 + λ r/m0, x1' = x̃1 − λ r/m1, with |x0' − x1'| = 1 a quadratic in λ
    c = Constraints(np.array([[0, 1]]), np.array([1.0]))
    s = ConstraintSolver(c, np.array([1.0, 3.0]))
    x = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    x_new = x + torch.tensor([[[0.0, 0.0, 0.0], [0.2, 0.3, 0.0]]], dtype=torch.float64)
    out = s.shake(x, x_new)
    # s̃ = x̃0 − x̃1 = (−1.2, −0.3, 0); s(λ) = s̃ + λ(1 + 1/3) r = (−1.2 − 4λ/3, −0.3, 0)
    # |s|² = 1 → 1.2 + 4λ/3 = sqrt(1 − 0.09) (the root continuous at λ = 0... taken positive side)
    lam = (math.sqrt(1 - 0.09) - 1.2) * 3 / 4
    expected = x_new.clone()
    expected[0, 0, 0] += lam * -1.0 / 1.0
    expected[0, 1, 0] -= lam * -1.0 / 3.0
    assert torch.allclose(out, expected, rtol=0, atol=1e-14)


def test_velocity_projection_is_the_mass_weighted_projection(bridge, solver):
    x = solver.constrain_positions(walkers(bridge, 32, noise=0.01))
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(solver.velocity_violation(x, v).max()) > 0.1
    p = solver.project_velocities(x, v)
    assert float(solver.velocity_violation(x, p).max()) < 1e-13
    # idempotent, and the removed part is M-orthogonal to what is kept: ⟨Pv, M(v − Pv)⟩ = 0
    assert torch.allclose(solver.project_velocities(x, p), p, rtol=0, atol=1e-14)
    m = torch.as_tensor(bridge.masses).reshape(1, -1, 1)
    assert float((m * p * (v - p)).sum((1, 2)).abs().max()) < 1e-12


def test_float32_solver_reaches_single_precision(bridge):
    s32 = constraint_solver(bridge, torch.zeros(1, dtype=torch.float32))
    x0 = walkers(bridge, 16).float()
    x = s32.constrain_positions(x0)
    x1 = x + 0.002 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert float(s32.relative_violation(s32.shake(x, x1)).max()) < 1e-5


def test_shake_refuses_an_impossible_step(solver, bridge):
    x0 = solver.constrain_positions(walkers(bridge, 4))
    x1 = x0.clone()
    x1[2] += 5.0 * torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with pytest.raises(ConstraintError) as err:
        solver.shake(x0, x1)
    assert 2 in err.value.walkers


def test_bad_constraints_are_refused():
    with pytest.raises(ValueError, match="distances"):
        Constraints(np.array([[0, 1]]), np.array([-1.0]))
    with pytest.raises(ValueError, match="itself"):
        Constraints(np.array([[1, 1]]), np.array([1.0]))
    with pytest.raises(ValueError, match="atom 5"):
        ConstraintSolver(Constraints(np.array([[0, 5]]), np.array([1.0])), np.ones(3))


def test_projected_noise_has_3n_minus_k_degrees_of_freedom(bridge, solver):
    # O with c = 0 from v = 0 draws v = P ξ sqrt(kT/m): E[m v²]/kT = trace(P) = 3N − K = 54
    # exactly; unprojected noise has 66. One draw per walker, 4096 walkers.
    n = 4096
    x = solver.constrain_positions(walkers(bridge, n))
    state = UnderdampedState(x, torch.zeros(n, dtype=torch.float64), torch.zeros_like(x), velocities=torch.zeros_like(x))
    m = torch.as_tensor(bridge.masses).reshape(1, -1, 1)
    v_th = torch.sqrt(bridge.kT / m)
    twice_k = {}
    for name, project in (("projected", solver), ("unprojected", None)):
        out = ornstein_uhlenbeck(state, 0.0, v_th, WalkerRNG(11, torch.arange(n)), project)
        twice_k[name] = ((m * out.velocities**2).sum((1, 2)) / bridge.kT).numpy()
    k = twice_k["projected"]
    se = k.std(ddof=1) / math.sqrt(n)
    assert abs(k.mean() - 54) / se < 5, (k.mean(), se)
    assert abs(k.mean() - 66) / se > 30
    # and the per-walker spread is that of chi² with 54 dof: var = 2·54
    assert k.var(ddof=1) == pytest.approx(108, rel=0.15)


@pytest.mark.parametrize("scheme", [lmd.integrators.BAOAB, lmd.integrators.OBABO])
@pytest.mark.parametrize("timestep,hydrogen_mass", [(0.002, None), (0.004, 4.0)])
def test_constrained_steps_hold_bonds_and_velocities(bridge, scheme, timestep, hydrogen_mass):
    from langevin_md.systems.hmr import with_hydrogen_mass

    system = bridge if hydrogen_mass is None else with_hydrogen_mass(bridge, hydrogen_mass)
    integrator = scheme(timestep=timestep, friction=1.0)
    n = 8
    rng = WalkerRNG(5, torch.arange(n))
    state = integrator.init(system, walkers(system, n), rng)
    solver = constraint_solver(system, state.positions)
    v_scale = math.sqrt(system.kT / 1.0)  # nm/ps for the lightest masses
    for _ in range(25):
        state, _ = integrator.step(system, state, rng)
        assert float(solver.relative_violation(state.positions).max()) < 1e-8
        assert float(solver.velocity_violation(state.positions, state.velocities).max()) < 1e-10 * v_scale
    assert torch.isfinite(state.energy).all()


@pytest.mark.parametrize("make", [lambda: lmd.integrators.ULA(step_size=1e-4), lambda: lmd.integrators.MALA(step_size=1e-4),
                                  lambda: lmd.integrators.HMC(timestep=1e-3, n_leapfrog=2)])
def test_overdamped_and_metropolis_schemes_refuse_constraints(bridge, make):
    with pytest.raises(ValueError, match="BAOAB or OBABO"):
        make().check_system(bridge)


def test_underdamped_schemes_accept_constraints(bridge):
    lmd.integrators.BAOAB().check_system(bridge)
    lmd.integrators.OBABO().check_system(bridge)


# ---------------------------------------------------------------- hydrogen mass repartitioning
def test_hmr_matches_openmm_create_system(bridge):
    from openmm import app, unit

    from langevin_md.systems.hmr import repartition_hydrogen_mass
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    pdb = app.PDBFile(ALANINE_DIPEPTIDE_PDB)
    ff = app.ForceField("amber14-all.xml")
    ref = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds,
                          hydrogenMass=3.5 * unit.amu)
    for topology in (bridge.openmm_topology, None):  # with elements, and by mass alone
        ours = repartition_hydrogen_mass(bridge.openmm_system, 3.5, topology)
        for k in range(ref.getNumParticles()):
            assert ours.getParticleMass(k).value_in_unit(unit.amu) == pytest.approx(
                ref.getParticleMass(k).value_in_unit(unit.amu), abs=1e-12)
    # the input is left alone, total mass is kept
    assert bridge.openmm_system.getParticleMass(1).value_in_unit(unit.amu) == pytest.approx(1.008)
    total = sum(ours.getParticleMass(k).value_in_unit(unit.amu) for k in range(22))
    assert total == pytest.approx(bridge.masses.sum(), rel=1e-14)


def test_hmr_refuses_bad_masses(bridge):
    from langevin_md.systems.hmr import repartition_hydrogen_mass

    with pytest.raises(ValueError, match="below hydrogen"):
        repartition_hydrogen_mass(bridge.openmm_system, 0.5)
    with pytest.raises(ValueError, match="not positive"):
        repartition_hydrogen_mass(bridge.openmm_system, 6.0)
    with pytest.raises(ValueError, match="hydrogen_mass"):
        repartition_hydrogen_mass(bridge.openmm_system, -1.0)


def dense_projection(x, v, constraints, masses):
    """P v = v − M⁻¹Gᵀ(G M⁻¹ Gᵀ)⁻¹G v with G built densely in numpy, walker by walker."""
    out = np.empty_like(v)
    inv_m = np.repeat(1.0 / masses, 3)
    for w in range(x.shape[0]):
        g = np.zeros((len(constraints), x.shape[1] * 3))
        for k, (i, j) in enumerate(constraints.atoms):
            r = x[w, i] - x[w, j]
            g[k, 3 * i:3 * i + 3] = r
            g[k, 3 * j:3 * j + 3] = -r
        vw = v[w].reshape(-1)
        mu = np.linalg.solve((g * inv_m) @ g.T, g @ vw)
        out[w] = (vw - inv_m * (g.T @ mu)).reshape(-1, 3)
    return out


def test_projection_matches_a_dense_numpy_projection(bridge, solver):
    x = solver.constrain_positions(walkers(bridge, 5, noise=0.01))
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    expected = dense_projection(x.numpy(), v.numpy(), constraints_of(bridge), bridge.masses)
    np.testing.assert_allclose(solver.project_velocities(x, v).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pairs", [[(0, 1), (0, 2)], [(0, 1), (0, 2), (1, 2)]], ids=["flexible-HOH", "rigid-water"])
def test_water_blocks_of_two_and_three(pairs):
    # a water with its two O–H bonds (a block of 2), or rigid (the H–H distance too: a closed
    # triangle, a block of 3 whose constraints form a cycle); 16 copies, one per walker
    d = {(0, 1): 0.09572, (0, 2): 0.09572, (1, 2): 0.15139}
    c = Constraints(np.array(pairs), np.array([d[p] for p in pairs]))
    masses = np.array([15.999, 1.008, 1.008])
    s = ConstraintSolver(c, masses)
    g = torch.Generator().manual_seed(7)
    x0 = torch.tensor([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]], dtype=torch.float64)
    x = s.constrain_positions(x0.expand(16, -1, -1) + 0.005 * torch.randn(16, 3, 3, generator=g, dtype=torch.float64))
    assert float(s.relative_violation(x).max()) < 1e-11
    y = s.shake(x, x + 0.003 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    assert float(s.relative_violation(y).max()) < 1e-11
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(s.project_velocities(y, v).numpy(), dense_projection(y.numpy(), v.numpy(), c, masses),
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------------- clusters and the fast solver
def test_hbonds_constraints_are_solved_as_clusters_by_size(solver):
    # three single bonds (N–H, Cα–H) and three CH₃ stars, each size one batch
    assert solver.cluster_sizes == {1: 3, 3: 3}


def test_index_path_for_many_waters_matches_one_water_at_a_time():
    # 120 rigid waters (360 atoms) exceed the dense-matrix limit, so bonds are gathered by
    # index; every water must come out as the same water solved alone (dense path)
    d = {(0, 1): 0.09572, (0, 2): 0.09572, (1, 2): 0.15139}
    one = Constraints(np.array(list(d)), np.array(list(d.values())))
    masses1 = np.array([15.999, 1.008, 1.008])
    n_water = 120
    pairs = np.concatenate([np.array(list(d)) + 3 * w for w in range(n_water)])
    many = ConstraintSolver(Constraints(pairs, np.tile(list(d.values()), n_water)), np.tile(masses1, n_water))
    assert many.cluster_sizes == {3: n_water}
    assert not any(g.dense for g in many._groups)  # noqa: SLF001 - the path under test
    g = torch.Generator().manual_seed(8)
    x0 = torch.tensor([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]], dtype=torch.float64)
    x = x0.repeat(n_water, 1) + 0.3 * torch.arange(n_water, dtype=torch.float64).repeat_interleave(3).unsqueeze(-1)
    x = many.constrain_positions(x.expand(4, -1, -1) + 0.004 * torch.randn(4, 3 * n_water, 3, generator=g,
                                                                             dtype=torch.float64))
    x1 = x + 0.003 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    y, pv = many.shake(x, x1), many.project_velocities(x, v)
    assert float(many.relative_violation(y).max()) < 1e-11
    single = ConstraintSolver(one, masses1)
    for w in (0, 57, n_water - 1):
        sl = slice(3 * w, 3 * w + 3)
        torch.testing.assert_close(y[:, sl], single.shake(x[:, sl].contiguous(), x1[:, sl].contiguous()),
                                   rtol=0, atol=1e-14)
        torch.testing.assert_close(pv[:, sl], single.project_velocities(x[:, sl].contiguous(), v[:, sl].contiguous()),
                                   rtol=0, atol=1e-13)


def test_clusters_of_four_use_the_general_solve():
    # methane with its four C–H bonds constrained: one cluster of 4 (batched LU, not cofactors)
    c = Constraints(np.array([[0, 1], [0, 2], [0, 3], [0, 4]]), np.full(4, 0.109))
    masses = np.array([12.011, 1.008, 1.008, 1.008, 1.008])
    s = ConstraintSolver(c, masses)
    assert s.cluster_sizes == {4: 1}
    tet = 0.109 / math.sqrt(3) * np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    g = torch.Generator().manual_seed(9)
    x = s.constrain_positions(torch.as_tensor(tet).expand(8, -1, -1) + 0.003 * torch.randn(8, 5, 3, generator=g,
                                                                                           dtype=torch.float64))
    assert float(s.relative_violation(x).max()) < 1e-11
    y = s.shake(x, x + 0.004 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    assert float(s.relative_violation(y).max()) < 1e-11
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(s.project_velocities(y, v).numpy(), dense_projection(y.numpy(), v.numpy(), c, masses),
                               rtol=0, atol=1e-12)


def test_constrained_baoab_positions_are_langevin_middle_positions(bridge):
    """Frictionless, so no noise on either side: from the same start, ten constrained BAOAB
    steps retrace OpenMM's LangevinMiddleIntegrator (Reference platform, float64) to SHAKE's
    tolerance. LangevinMiddle's velocity is half a kick behind ours: v_ours = P(v + (h/2) F/m).
    Known-wrong: two SHAKEs per step (one after each half drift) leave the trajectory by far
    more than the tolerance."""
    import openmm
    from openmm import unit

    h, n_steps = 0.002, 10
    # the same System without its CMMotionRemover, which the torch executor does not have
    omm = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(bridge.openmm_system))
    for k in reversed(range(omm.getNumForces())):
        if isinstance(omm.getForce(k), openmm.CMMotionRemover):
            omm.removeForce(k)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 0.0 / unit.picosecond, h * unit.picosecond)
    integrator.setConstraintTolerance(1e-12)
    context = openmm.Context(omm, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(bridge.positions)
    context.applyConstraints(1e-12)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 3)
    context.applyVelocityConstraints(1e-12)
    st = context.getState(getPositions=True, getVelocities=True)
    x0 = torch.as_tensor(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)).unsqueeze(0)
    v0 = torch.as_tensor(st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)).unsqueeze(0)
    integrator.step(n_steps)
    expected = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    ff = bridge.to_torch()
    solver = constraint_solver(ff, x0)
    energy, forces = ff.energy_and_forces(x0)
    inv_m = 1.0 / torch.as_tensor(ff.masses).reshape(1, -1, 1)
    state = UnderdampedState(x0, energy, forces, velocities=solver.project_velocities(x0, v0 + 0.5 * h * inv_m * forces))
    baoab = lmd.integrators.BAOAB(timestep=h, friction=0.0)
    rng = WalkerRNG(0, torch.arange(1))
    for _ in range(n_steps):
        state, _ = baoab.step(ff, state, rng)
    gap = float((state.positions[0] - torch.as_tensor(expected)).abs().max())
    assert gap < 1e-10, gap

    # known-wrong: SHAKE after each half drift (the previous scheme) drifts away from OpenMM
    from langevin_md.integrators.underdamped import drift, kick, refresh_forces

    s = UnderdampedState(x0, energy, forces, velocities=solver.project_velocities(x0, v0 + 0.5 * h * inv_m * forces))
    for _ in range(n_steps):
        s = drift(drift(kick(s, 0.5 * h, inv_m), 0.5 * h, solver), 0.5 * h, solver)
        s = kick(refresh_forces(ff, s), 0.5 * h, inv_m, solver)
    assert float((s.positions[0] - torch.as_tensor(expected)).abs().max()) > 1e3 * gap + 1e-9
