"""The OpenMM executor: compiled integrators, ``sample(backend="openmm")``, constraints, energy
conservation, and statistical agreement with the torch executor and OpenMM's own integrator.

Real OpenMM Contexts on the Reference platform throughout. The harmonic-well exact laws are in
tests/statistical/test_openmm_executor_exact.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
mdtraj = pytest.importorskip("mdtraj")

import langevin_md as lmd  # noqa: E402
from langevin_md.integrators import BAOAB, HMC, MALA, OBABO, ULA, Brownian, RandomWalkMetropolis  # noqa: E402
from langevin_md.executors.openmm.export import (  # noqa: E402
    parse_splitting,
    splitting_integrator,
    to_openmm_integrator,
)
from langevin_md.executors.openmm import walker_seed  # noqa: E402
from langevin_md.systems import Harmonic  # noqa: E402
from langevin_md.systems.molecules import alanine_dipeptide  # noqa: E402

from .harmonic import harmonic_openmm_system  # noqa: E402


@pytest.fixture(scope="module")
def vacuum():
    return alanine_dipeptide("vacuum", platform="Reference")


@pytest.fixture(scope="module")
def hbonds():
    return alanine_dipeptide("vacuum", platform="Reference", constraints="HBonds")


# --------------------------------------------------------------------------- compilation
def test_native_integrators_carry_the_settings(vacuum):
    lm = to_openmm_integrator(BAOAB(timestep=0.002, friction=3.0), vacuum)
    assert isinstance(lm, openmm.LangevinMiddleIntegrator)
    assert lm.getStepSize()._value == pytest.approx(0.002)
    assert lm.getFriction()._value == pytest.approx(3.0)
    assert lm.getTemperature()._value == pytest.approx(300.0)
    br = to_openmm_integrator(Brownian(timestep=0.001, friction=50.0), vacuum)
    assert isinstance(br, openmm.BrownianIntegrator)
    assert br.getFriction()._value == pytest.approx(50.0)
    for scheme in (OBABO(), ULA(1e-6), MALA(1e-6)):
        assert isinstance(to_openmm_integrator(scheme, vacuum), openmm.CustomIntegrator)


@pytest.mark.parametrize("scheme", [HMC(timestep=0.001, n_leapfrog=3), RandomWalkMetropolis(scale=0.01)])
def test_unsupported_schemes_name_the_supported_ones(vacuum, scheme):
    for call in (lambda: to_openmm_integrator(scheme, vacuum),
                 lambda: lmd.sample(vacuum, scheme, n_steps=1, backend="openmm")):
        with pytest.raises(ValueError, match="BAOAB, OBABO, Brownian, ULA, MALA"):
            call()


def test_subclasses_are_refused(vacuum):
    class MyBAOAB(BAOAB):
        pass

    with pytest.raises(ValueError, match="MyBAOAB cannot run in the OpenMM executor"):
        to_openmm_integrator(MyBAOAB(), vacuum)


def test_bad_arguments_are_refused(vacuum):
    with pytest.raises(ValueError, match="backend must be 'auto', 'torch' or 'openmm', got 'jax'"):
        lmd.sample(vacuum, BAOAB(), n_steps=1, backend="jax")
    with pytest.raises(TypeError, match="needs an OpenMMSystem"):
        lmd.sample(Harmonic(dim=2), BAOAB(), n_steps=1, backend="openmm")
    with pytest.raises(ValueError, match="device='cpu' applies to backend='torch' only"):
        lmd.sample(vacuum, BAOAB(), n_steps=1, device="cpu", backend="openmm")
    with pytest.raises(ValueError, match="compile=True applies to backend='torch' only"):
        lmd.sample(vacuum, BAOAB(), n_steps=1, compile=True, backend="openmm")
    with pytest.raises(ValueError, match="target_accept"):
        lmd.sample(vacuum, MALA(1e-6, target_accept=0.6), n_steps=1, backend="openmm")
    with pytest.raises(ValueError, match=r"initial_positions have shape \(5, 3\)"):
        lmd.sample(vacuum, BAOAB(), n_steps=1, initial_positions=np.zeros((5, 3)), backend="openmm")


def test_splitting_strings():
    assert parse_splitting("O B A B O") == [("O", 0.5), ("B", 0.5), ("A", 1.0), ("B", 0.5), ("O", 0.5)]
    assert parse_splitting("B A O A B") == [("B", 0.5), ("A", 0.5), ("O", 1.0), ("A", 0.5), ("B", 0.5)]
    with pytest.raises(ValueError, match="letters from"):
        parse_splitting("V R O R V")
    with pytest.raises(ValueError, match="has no 'A'"):
        parse_splitting("B O B")


def test_constrained_obabo_compiles_openmms_constraint_pattern():
    ci = splitting_integrator("O B A B O", 0.002, 1.0, 2.5, constrained=True)
    steps = [tuple(ci.getComputationStep(i)[:2]) for i in range(ci.getNumComputations())]
    kinds = openmm.CustomIntegrator
    drift = steps.index((kinds.ComputePerDof, "x"))
    # x += h v; x1 = x; constrain x; v += (x - x1)/h; constrain v
    assert steps[drift + 1:drift + 5] == [(kinds.ComputePerDof, "x1"), (kinds.ConstrainPositions, ""),
                                          (kinds.ComputePerDof, "v"), (kinds.ConstrainVelocities, "")]
    assert steps[-1] == (kinds.ConstrainVelocities, "")


# --------------------------------------------------------------------------- sample(backend="openmm")
@pytest.mark.parametrize("scheme", [BAOAB(0.001, 1.0), OBABO(0.001, 1.0), Brownian(0.0005, 100.0),
                                    ULA(1e-7), MALA(1e-7)], ids=lambda s: type(s).__name__)
def test_result_has_the_torch_executors_shape(vacuum, scheme):
    r = lmd.sample(vacuum, scheme, n_steps=25, n_walkers=3, record_every=10, burn_in=5, seed=1,
                   backend="openmm")
    assert r.positions.shape == (2, 3, 22, 3) and r.positions.dtype == np.float64
    assert r.energies.shape == (2, 3)
    np.testing.assert_array_equal(r.steps, [15, 25])
    assert r.n_steps_run == 30
    assert r.metadata["backend"] == "openmm"
    assert np.all(np.isfinite(r.positions)) and np.all(np.isfinite(r.energies))
    if scheme.has_velocities:
        assert r.kinetic_energies.shape == (2, 3) and np.all(r.kinetic_energies > 0)
    else:
        assert r.kinetic_energies is None
    if isinstance(scheme, MALA):
        assert r.acceptance_rate.shape == (3,) and np.all((r.acceptance_rate > 0) & (r.acceptance_rate <= 1))
    else:
        assert r.acceptance_rate is None
    # the energies recorded are the force field's at the recorded positions
    e, _ = vacuum.energy_and_forces(torch.from_numpy(r.positions[-1].copy()))
    np.testing.assert_allclose(r.energies[-1], e.numpy(), rtol=1e-9, atol=1e-9)


def test_same_seed_same_chains_and_walkers_independent_of_n_walkers(vacuum):
    def run(n_walkers, seed):
        return lmd.sample(vacuum, OBABO(0.001, 5.0), n_steps=40, n_walkers=n_walkers, record_every=20,
                          seed=seed, backend="openmm")

    a, b, c, d = run(3, 7), run(3, 7), run(2, 7), run(3, 8)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.positions[:, :2], c.positions)   # walker w's chain is its own
    assert not np.allclose(a.positions, d.positions)
    assert not np.allclose(a.positions[:, 0], a.positions[:, 1])     # walkers differ
    seeds = {walker_seed(7, w, s) for w in range(100) for s in (1, 2)}
    assert len(seeds) == 200 and 0 not in seeds


def test_initial_positions_and_float32(vacuum):
    x0 = np.stack([vacuum.positions, vacuum.positions + 0.01])
    r = lmd.sample(vacuum, MALA(1e-12), n_steps=1, n_walkers=2, initial_positions=x0, dtype="float32",
                   backend="openmm")
    assert r.positions.dtype == np.float32
    # at a tiny step almost nothing moves: the walkers started where they were told
    np.testing.assert_allclose(r.positions[0], x0, atol=1e-4)


def test_nonfinite_state_raises_with_the_frames_before_it():
    # BAOAB at h*omega = 5 is unstable (|lambda| ~ 23 per step): positions overflow within ~250 steps.
    system = harmonic_openmm_system(np.full(4, 10.0), 1000.0, 300.0)
    with pytest.raises(lmd.NonFiniteStateError, match=r"non-finite state between steps \d+ and \d+ for walkers \[0, 1\]") as info:
        lmd.sample(system, BAOAB(timestep=0.5, friction=1.0), n_steps=5000, n_walkers=2, record_every=50,
                   backend="openmm")
    err = info.value
    assert err.walkers == [0, 1]
    assert err.result is not None and err.result.n_frames >= 1
    assert np.all(np.isfinite(err.result.positions))
    assert err.steps[0] == err.result.steps[-1] and err.steps[1] == err.steps[0] + 50
    with pytest.raises(lmd.NonFiniteStateError, match="the starting state is not finite"):
        lmd.sample(system, BAOAB(), n_steps=1, initial_positions=np.full((4, 3), np.nan), backend="openmm")



def test_a_divergence_inside_a_chunk_of_frames_is_reported_at_its_first_bad_frame():
    # Frames are finished (kinetic energy, finiteness) 64 at a time: with a frame every step the
    # divergence (~250 steps in) falls after several chunks, and it must still be reported at the
    # first bad frame, with every frame before it kept and finite.
    system = harmonic_openmm_system(np.full(4, 10.0), 1000.0, 300.0)
    with pytest.raises(lmd.NonFiniteStateError) as info:
        lmd.sample(system, BAOAB(timestep=0.5, friction=1.0), n_steps=5000, n_walkers=1, record_every=1,
                   backend="openmm")
    err = info.value
    r = err.result
    assert r.n_frames > 64 and err.steps == (r.steps[-1], r.steps[-1] + 1)
    assert np.all(np.isfinite(r.positions)) and np.all(np.isfinite(r.energies))
    assert np.all(np.isfinite(r.kinetic_energies))
    np.testing.assert_array_equal(r.steps, np.arange(1, r.n_frames + 1))

# --------------------------------------------------------------------------- energy conservation
def test_frictionless_baoab_conserves_energy_to_order_h2(vacuum):
    # Velocity Verlet (BAOAB with friction 0 = LangevinMiddleIntegrator with friction 0): the total
    # energy, with BAOAB's step-end kinetic energy, fluctuates O(h^2), so halving h divides the
    # fluctuation by ~4. OpenMM's own half-step kinetic energy would make it O(h) (ratio ~2) and
    # ~20x larger: the reconstruction of the step-end velocities is what this checks.
    fluct = {}
    for h in (0.0005, 0.00025):
        n = int(round(0.5 / h))  # 0.5 ps
        r = lmd.sample(vacuum, BAOAB(timestep=h, friction=0.0), n_steps=n, n_walkers=4,
                       record_every=n // 250, seed=3, backend="openmm")
        total = r.energies + r.kinetic_energies
        fluct[h] = total.std(0)
        drift = np.abs(total[-25:].mean(0) - total[:25].mean(0))
        assert np.all(drift < 0.2 * r.energies.std(0) * (h / 0.0005) ** 2)
        assert np.all(fluct[h] < 0.02 * r.energies.std(0) * (h / 0.0005) ** 2)
    ratio = fluct[0.0005] / fluct[0.00025]
    assert np.all((ratio > 3.0) & (ratio < 5.5)), ratio

    # the known-wrong total: OpenMM's half-step kinetic energy, same step and walker 0's start
    lm = openmm.LangevinMiddleIntegrator(300.0, 0.0, 0.0005)
    context = vacuum.make_context(lm)
    context.setVelocitiesToTemperature(300.0, 5)
    half_step_total = []
    for _ in range(250):
        lm.step(4)
        state = context.getState(getEnergy=True)
        half_step_total.append(state.getPotentialEnergy()._value + state.getKineticEnergy()._value)
    assert np.std(half_step_total) > 5 * fluct[0.0005].max()


# --------------------------------------------------------------------------- constraints
def _constraint_table(system):
    s = system.openmm_system
    rows = [s.getConstraintParameters(i) for i in range(s.getNumConstraints())]
    pairs = np.array([(i, j) for i, j, _ in rows])
    lengths = np.array([d._value for _, _, d in rows])
    return pairs, lengths


def test_constrained_systems_run_where_a_scheme_constrains_and_are_refused_elsewhere(hbonds):
    assert hbonds.constrained
    # The torch executor's BAOAB constrains (SHAKE/RATTLE on the System's own list) ...
    res = lmd.sample(hbonds, BAOAB(timestep=0.002, friction=1.0), n_steps=2, backend="torch")
    assert np.isfinite(res.energies).all()
    # ... its overdamped and Metropolis schemes refuse, naming the schemes that constrain.
    for scheme in (ULA(1e-7), MALA(1e-7)):
        with pytest.raises(ValueError, match="BAOAB"):
            lmd.sample(hbonds, scheme, n_steps=1)
    for scheme in (ULA(1e-7), MALA(1e-7)):
        with pytest.raises(ValueError, match="cannot run on a system with constraints"):
            lmd.sample(hbonds, scheme, n_steps=1, backend="openmm")


@pytest.mark.slow
def test_hbond_constraints_hold_and_obabo_equipartition(hbonds):
    # 2 fs steps with the X-H bonds constrained. OBABO's step-end velocities are thermal, so
    # <K> = (3N - n_constraints - 3) kT/2 (the CMMotionRemover zeroes the centre-of-mass
    # velocity at each step start) plus the centre-of-mass part re-thermalised by the two
    # O(h/2) steps, (3/2) kT (1 - exp(-2 gamma h)). Wrong: constraints not counted in the
    # kinetic energy (3N - 3 degrees of freedom).
    pairs, lengths = _constraint_table(hbonds)
    n_c, n_atoms = len(lengths), hbonds.event_shape[0]
    h, gamma = 0.002, 10.0
    for scheme in (BAOAB(h, gamma), OBABO(h, gamma)):
        r = lmd.sample(hbonds, scheme, n_steps=5000, n_walkers=8, record_every=25, burn_in=500,
                       seed=4, backend="openmm")
        x = r.positions
        d = np.linalg.norm(x[:, :, pairs[:, 0]] - x[:, :, pairs[:, 1]], axis=-1)
        assert np.max(np.abs(d / lengths - 1)) < 5e-5   # OpenMM's default tolerance is 1e-5
        ke = r.kinetic_energies / hbonds.kT
        per_walker = ke.mean(0)
        mean, se = per_walker.mean(), per_walker.std(ddof=1) / np.sqrt(per_walker.size)
        internal = (3 * n_atoms - n_c - 3) / 2
        exact = internal + 1.5 * (1 - np.exp(-2 * gamma * h))
        wrong = (3 * n_atoms - 3) / 2
        if isinstance(scheme, OBABO):
            assert abs(mean - exact) / se <= 5, (mean, se, exact)
        else:
            # BAOAB's step-end velocities run a little cold for the stiffest modes,
            # (1 - h^2 omega^2/4); their projection onto the constraints must still hold.
            assert abs(mean / exact - 1) < 0.05, (mean, exact)
        assert abs(mean - wrong) / se >= 20


# --------------------------------------------------------------------------- three samplers agree
def _langevin_middle_by_hand(system, temperature, h, gamma, n_walkers, burn_in, n_frames, record_every, seed):
    """OpenMM's LangevinMiddleIntegrator, one Context per walker: (positions, energies) per frame."""
    positions = np.empty((n_frames, n_walkers) + system.event_shape)
    energies = np.empty((n_frames, n_walkers))
    for w in range(n_walkers):
        integrator = openmm.LangevinMiddleIntegrator(temperature, gamma, h)
        integrator.setRandomNumberSeed(1000 * seed + w + 1)
        context = system.make_context(integrator)
        context.setVelocitiesToTemperature(temperature, 1000 * seed + w + 1)
        integrator.step(burn_in)
        for f in range(n_frames):
            integrator.step(record_every)
            state = context.getState(getPositions=True, getEnergy=True)
            positions[f, w] = state.getPositions(asNumpy=True)._value
            energies[f, w] = state.getPotentialEnergy()._value
    return positions, energies


def _observables(system, positions, energies):
    """Per-frame, per-walker potential energy and basin indicators (alpha_R, beta/C7eq, alpha_L)."""
    n_frames, n_walkers = energies.shape
    traj = mdtraj.Trajectory(positions.reshape((-1,) + system.event_shape), system.topology)
    phi = np.degrees(mdtraj.compute_phi(traj)[1][:, 0]).reshape(n_frames, n_walkers)
    psi = np.degrees(mdtraj.compute_psi(traj)[1][:, 0]).reshape(n_frames, n_walkers)
    alpha_r = (phi < 0) & (psi > -120) & (psi < 50)
    return {"energy": energies, "alpha_R": alpha_r.astype(float),
            "beta": ((phi < 0) & ~alpha_r).astype(float), "alpha_L": (phi >= 0).astype(float)}


def _mean_se(series):
    per_walker = series.mean(0)
    return per_walker.mean(), per_walker.std(ddof=1) / np.sqrt(per_walker.size)


@pytest.mark.slow
def test_torch_executor_openmm_executor_and_langevin_middle_agree(vacuum):
    # The same Markov chain (BAOAB, h = 2 fs, gamma = 5/ps, 300 K) from the same start, run
    # three ways: the torch executor through the OpenMM force bridge, the OpenMM executor, and
    # OpenMM's LangevinMiddleIntegrator by hand. At every time their laws are equal, so means
    # over independent walkers agree within standard errors from per-walker means. The same
    # data reject a run at 360 K (the potential-energy mean moves by ~15 kJ/mol).
    h, gamma, n_walkers, burn_in, n_frames, every = 0.002, 5.0, 16, 500, 150, 50
    runs = {}
    r = lmd.sample(vacuum, BAOAB(h, gamma), n_steps=n_frames * every, n_walkers=n_walkers,
                   record_every=every, burn_in=burn_in, seed=11, backend="torch")
    runs["torch"] = _observables(vacuum, r.positions, r.energies)
    r = lmd.sample(vacuum, BAOAB(h, gamma), n_steps=n_frames * every, n_walkers=n_walkers,
                   record_every=every, burn_in=burn_in, seed=12, backend="openmm")
    runs["openmm executor"] = _observables(vacuum, r.positions, r.energies)
    runs["LangevinMiddle"] = _observables(vacuum, *_langevin_middle_by_hand(
        vacuum, 300.0, h, gamma, n_walkers, burn_in, n_frames, every, seed=13))
    hot = _observables(vacuum, *_langevin_middle_by_hand(
        vacuum, 360.0, h, gamma, n_walkers, burn_in, n_frames, every, seed=14))

    names = list(runs)
    for obs in ("energy", "alpha_R", "beta"):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (ma, sa), (mb, sb) = _mean_se(runs[a][obs]), _mean_se(runs[b][obs])
                z = (ma - mb) / np.hypot(sa, sb)
                assert abs(z) <= 5, f"{obs}: {a} {ma:.4g} ± {sa:.2g} vs {b} {mb:.4g} ± {sb:.2g} (z = {z:.2f})"
    for name in names:
        (m, s), (mh, sh) = _mean_se(runs[name]["energy"]), _mean_se(hot["energy"])
        assert (mh - m) / np.hypot(s, sh) >= 10, f"{name} fails to reject 360 K: {m:.4g} ± {s:.2g} vs {mh:.4g} ± {sh:.2g}"
    # the basin test has power: alpha_R is visited, and its population is known to a few percent
    m, s = _mean_se(runs["openmm executor"]["alpha_R"])
    assert 0.05 < m < 0.6 and s < 0.06
