"""Molecular observables: φ/ψ against mdtraj, state assignment, round trips, populations."""

import numpy as np
import pytest

from langevin_md.analysis import (
    ALANINE_DIPEPTIDE_STATES,
    assign_states,
    core_assignment,
    dihedrals,
    distances,
    phi_psi,
    ramachandran_free_energy,
    round_trip_times,
    state_populations,
    transition_counts,
)


@pytest.fixture(scope="module")
def ala_result():
    import langevin_md as lmd

    system = lmd.systems.alanine_dipeptide(platform="Reference")
    return lmd.sample(system, lmd.integrators.BAOAB(timestep=0.002, friction=5.0), n_steps=600,
                      n_walkers=3, record_every=10, seed=0, backend="openmm")


def test_phi_psi_equal_mdtraj(ala_result):
    import mdtraj

    phi, psi = phi_psi(ala_result)
    assert phi.shape == psi.shape == (ala_result.n_frames, 3)
    for w in range(3):
        traj = ala_result.to_mdtraj(walker=w)
        _, ref_phi = mdtraj.compute_phi(traj)
        _, ref_psi = mdtraj.compute_psi(traj)
        np.testing.assert_allclose(phi[:, w], ref_phi[:, 0], atol=1e-5)
        np.testing.assert_allclose(psi[:, w], ref_psi[:, 0], atol=1e-5)
    # A Trajectory input counts as one walker.
    p1, _ = phi_psi(ala_result.to_mdtraj(walker=1))
    np.testing.assert_allclose(p1[:, 0], phi[:, 1], atol=1e-5)


def test_dihedrals_and_distances_equal_mdtraj(ala_result):
    import mdtraj

    quads = np.array([[4, 6, 8, 14], [6, 8, 14, 16]])
    pairs = np.array([[0, 5], [4, 14]])
    d = dihedrals(ala_result, quads)
    r = distances(ala_result, pairs)
    assert d.shape == (ala_result.n_frames, 3, 2) and r.shape == (ala_result.n_frames, 3, 2)
    traj = ala_result.to_mdtraj(walker=2)
    np.testing.assert_allclose(d[:, 2], mdtraj.compute_dihedrals(traj, quads), atol=1e-5)
    np.testing.assert_allclose(r[:, 2], mdtraj.compute_distances(traj, pairs, periodic=False), atol=1e-6)
    assert dihedrals(ala_result, quads[0]).shape == (ala_result.n_frames, 3)
    with pytest.raises(ValueError, match="atom indices"):
        distances(ala_result, [0, 99])


def test_phi_psi_needs_a_molecule():
    from langevin_md.result import SampleResult

    r = SampleResult(positions=np.zeros((5, 2, 3)), energies=np.zeros((5, 2)), steps=np.arange(5), kT=1.0)
    with pytest.raises(ValueError, match="n_atoms, 3"):
        phi_psi(r)


def test_ramachandran_free_energy_min_zero_and_boltzmann_ratio():
    # Two bins with counts 3:1 differ by kT ln 3.
    phi = np.array([0.1, 0.1, 0.1, 2.0])
    psi = np.array([0.1, 0.1, 0.1, 2.0])
    surf = ramachandran_free_energy(phi, psi, kT=2.5, bins=10)
    f = surf.free_energy
    assert f.shape == (10, 10) and np.nanmin(f) == 0.0
    assert np.isclose(np.sort(f[np.isfinite(f)])[-1], 2.5 * np.log(3))
    assert np.isinf(f).sum() == 98


def two_state_series():
    """φ/ψ hopping C7eq (core) -> barrier -> αR at known frames, with barrier recrossings."""
    c7, ar, barrier = (-80.0, 150.0), (-70.0, -40.0), (-70.0, 30.0)
    path = ([c7] * 5 + [barrier, c7, barrier] + [ar] * 4 + [barrier, ar, barrier] + [c7] * 3
            + [ar] * 2 + [c7] * 2)
    deg = np.array(path)
    return np.radians(deg[:, 0]), np.radians(deg[:, 1])


def test_core_assignment_ignores_recrossings_and_counts_transitions():
    phi, psi = two_state_series()
    lab = assign_states(phi, psi)
    expected = [0] * 8 + [1] * 7 + [0] * 3 + [1] * 2 + [0] * 2
    np.testing.assert_array_equal(lab, expected)
    counts = transition_counts(lab, 3)
    np.testing.assert_array_equal(counts, [[0, 2, 0], [2, 0, 0], [0, 0, 0]])
    # Without cores every barrier frame is unassigned.
    raw = assign_states(phi, psi, cores=False)
    assert (raw == -1).sum() == 4
    # Round trips a -> b -> a: entries into C7eq at frames 15 and 20 -> one trip of 5 frames.
    rt = round_trip_times(lab, 0, 1, dt=0.5)
    assert rt.n_round_trips == 1 and rt.mean == pytest.approx(2.5)


def test_core_assignment_before_first_core_is_unassigned():
    lab = core_assignment(np.array([[-1, 2], [-1, -1], [1, -1], [-1, 0]]))
    np.testing.assert_array_equal(lab, [[-1, 2], [-1, 2], [1, 2], [1, 0]])


def test_round_trips_on_a_markov_chain_match_the_exact_mean():
    # Two-state chain switching with probability q per frame: a round trip is the sum of two
    # geometric dwell times, mean 2/q.
    rng = np.random.default_rng(3)
    q, n, w = 0.05, 4000, 40
    flips = rng.random((n, w)) < q
    lab = (np.cumsum(flips, axis=0) % 2).astype(np.int64)
    rt = round_trip_times(lab, 0, 1)
    assert abs(rt.mean - 2 / q) / rt.standard_error <= 5
    assert abs(rt.mean - 1 / q) / rt.standard_error >= 20


def test_populations_with_error_bars_across_walkers():
    rng = np.random.default_rng(7)
    p_true = np.array([0.7, 0.2, 0.1])
    n, w = 400, 200
    lab = rng.choice(3, size=(n, w), p=p_true)
    pops = state_populations(lab, 3)
    z = (pops.populations - p_true) / pops.standard_errors
    assert np.all(np.abs(z) <= 5)
    # Independent frames: the SE is the binomial one, sqrt(p(1-p)/(n w)).
    np.testing.assert_allclose(pops.standard_errors, np.sqrt(p_true * (1 - p_true) / (n * w)), rtol=0.15)
    wrong = np.array([0.6, 0.3, 0.1])
    assert np.abs((pops.populations - wrong) / pops.standard_errors).max() >= 20
    assert pops.per_walker.shape == (w, 3)


def test_default_states_are_named():
    assert [s.name for s in ALANINE_DIPEPTIDE_STATES] == ["C7eq/β", "αR", "αL"]


def test_phi_psi_if_molecule_is_none_for_non_molecules():
    """The reports' switch: a 1-D target, or atoms without a topology, have no backbone, so
    no φ/ψ sections and no error."""
    from langevin_md.analysis.molecular import phi_psi_if_molecule
    from langevin_md.result import SampleResult

    flat = SampleResult(positions=np.zeros((3, 2, 1)), energies=np.zeros((3, 2)), steps=np.arange(3), kT=1.0)
    atoms = SampleResult(positions=np.zeros((3, 2, 4, 3)), energies=np.zeros((3, 2)), steps=np.arange(3), kT=1.0)
    assert phi_psi_if_molecule(flat) is None
    assert phi_psi_if_molecule(atoms) is None
