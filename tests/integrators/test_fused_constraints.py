"""SHAKE/RATTLE lanes kernels (:mod:`langevin_md.integrators.fused_constraints`) against the torch solver.

Constraints come from a real ``openmm.System`` (alanine dipeptide, HBonds: three single bonds
and three CH₃ stars); rigid and flexible water and a four-bond methane are built by hand (no
test system here has rigid water from OpenMM). Each walker gets its own random thermal
displacement, as a 2 or 4 fs BAOAB drift would give.
"""

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators import fused_constraints as fc
from langevin_md.integrators.constraints import ConstraintError, Constraints, ConstraintSolver, constraints_of

pytest.importorskip("openmm")
pytest.importorskip("numba")

N_WALKERS = 100  # three chunks of 32 lanes and a tail of 4
KT = 0.0083144626 * 300.0  # kJ/mol


@pytest.fixture(scope="module")
def bridge():
    return lmd.systems.alanine_dipeptide(constraints="HBonds", engine="openmm")


@pytest.fixture(scope="module")
def solver(bridge):
    return ConstraintSolver(constraints_of(bridge), bridge.masses)


@pytest.fixture(scope="module")
def lanes(bridge):
    return fc.pack_clusters(constraints_of(bridge), bridge.masses, np.float64)


def start(solver, positions, n, seed, noise=0.01):
    """n constrained walkers near ``positions`` (float64 torch)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(positions), dtype=torch.float64).expand(n, -1, -1)
    return solver.constrain_positions(x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64))


def thermal(masses, shape, seed):
    """Velocities ~ N(0, kT/m) (nm/ps), float64 torch."""
    g = torch.Generator().manual_seed(seed)
    sd = torch.as_tensor(np.sqrt(KT / np.asarray(masses)), dtype=torch.float64).reshape(1, -1, 1)
    return sd * torch.randn(shape, generator=g, dtype=torch.float64)


def relative_violation(x, constraints):
    """max_k |r_k − d_k| / d_k per walker (numpy, independent of both solvers)."""
    i, j = constraints.atoms[:, 0], constraints.atoms[:, 1]
    return np.abs(np.linalg.norm(x[:, i] - x[:, j], axis=-1) / constraints.distances - 1.0).max(axis=1)


def to_lanes(x, b):
    """``(N, A, 3)`` as ``(N/b, A, 3, b)`` blocks."""
    n, a, _ = x.shape
    return np.ascontiguousarray(x.reshape(n // b, b, a, 3).transpose(0, 2, 3, 1))


def from_lanes(xl):
    nb, a, _, b = xl.shape
    return np.ascontiguousarray(xl.transpose(0, 3, 1, 2).reshape(nb * b, a, 3))


# ---------------------------------------------------------------------------- packing
def test_pack_clusters_makes_stars_with_the_mass_coupling(bridge, lanes):
    c = constraints_of(bridge)
    assert lanes.cluster_sizes == {1: 3, 3: 3}
    assert [a.dtype for a in lanes.arrays()] == [np.int64, np.int64, np.int64] + [np.float64] * 4
    assert all(a.flags.c_contiguous for a in lanes.arrays())
    inv_m = 1.0 / np.asarray(bridge.masses)
    for cl in range(6):
        s0, s1 = lanes.slot_start[cl], lanes.slot_start[cl + 1]
        b = s1 - s0
        block = lanes.coupling[lanes.coupling_start[cl]:lanes.coupling_start[cl] + b * b].reshape(b, b)
        atoms = lanes.atoms[s0:s1]
        # (C M⁻¹ Cᵀ)_kl from the dense incidence matrix, C = +1 at i, −1 at j
        inc = np.zeros((b, len(inv_m)))
        inc[np.arange(b), atoms[:, 0]] += 1.0
        inc[np.arange(b), atoms[:, 1]] -= 1.0
        np.testing.assert_allclose(block, inc @ np.diag(inv_m) @ inc.T, rtol=1e-15, atol=0)
        if b == 3:  # a star: one centre shared by all three bonds
            assert len(set(atoms.reshape(-1).tolist())) == 4
    # every constraint lands in exactly one slot, with its own distance
    order = [np.flatnonzero((c.atoms == a).all(1))[0] for a in lanes.atoms]
    assert sorted(order) == list(range(len(c)))
    np.testing.assert_array_equal(lanes.dist2, c.distances[order] ** 2)
    f32 = fc.pack_clusters(c, bridge.masses, np.float32)
    assert f32.dtype == np.float32 and f32.coupling.dtype == np.float32


def test_pack_clusters_refuses_bad_input(bridge):
    c = constraints_of(bridge)
    with pytest.raises(ValueError, match="float16"):
        fc.pack_clusters(c, bridge.masses, np.float16)
    masses = np.array(bridge.masses, dtype=np.float64)
    masses[c.atoms[4, 1]] = 0.0
    with pytest.raises(ValueError, match=f"atom {c.atoms[4, 1]} has mass 0.0"):
        fc.pack_clusters(c, masses, np.float64)
    with pytest.raises(ValueError, match="atom 21, but there are 5 masses"):
        fc.pack_clusters(c, np.ones(5), np.float64)
    with pytest.raises(ValueError, match="Constraints"):
        fc.pack_clusters([(0, 1)], bridge.masses, np.float64)


def test_wrappers_refuse_wrong_shapes_and_dtypes(bridge, lanes):
    x = np.zeros((4, 22, 3))
    with pytest.raises(ValueError, match=r"shape \(n_walkers, 22, 3\), got \(4, 21, 3\)"):
        fc.shake(x, x[:, :21], lanes)
    with pytest.raises(ValueError, match="float32, but the constraints were packed for float64"):
        fc.project(x, x.astype(np.float32), lanes)


# ---------------------------------------------------------------------------- SHAKE
@pytest.mark.parametrize("timestep", [0.002, 0.004])
def test_shake_holds_bonds_and_matches_the_torch_solver(bridge, solver, lanes, timestep):
    c = constraints_of(bridge)
    x0 = start(solver, bridge.positions, N_WALKERS, seed=1)
    x1 = x0 + timestep * thermal(bridge.masses, x0.shape, seed=2)  # a BAOAB step's unconstrained drift
    assert relative_violation(x1.numpy(), c).min() > 1e-4
    out = fc.shake(x0.numpy(), x1.numpy(), lanes)
    # (a) every bond of every walker at its length (default tolerance 1e-12)
    assert relative_violation(out, c).max() < 1e-11
    # (b) the same solution as the torch M-SHAKE (both converge to g = 0 along M⁻¹G(x0)ᵀ)
    np.testing.assert_allclose(out, solver.shake(x0, x1).numpy(), rtol=0, atol=1e-12)
    # internal forces: the centre of mass stays, and unconstrained atoms do not move
    m = np.asarray(bridge.masses).reshape(1, -1, 1)
    np.testing.assert_allclose((m * out).sum(1), (m * x1.numpy()).sum(1), rtol=0, atol=1e-12)
    free = sorted(set(range(22)) - set(c.atoms.reshape(-1).tolist()))
    np.testing.assert_array_equal(out[:, free], x1.numpy()[:, free])


def test_shake_with_velocities_adds_the_drift_correction(bridge, solver, lanes):
    # V ← V + (x' − x̃)/h, the constrained drift's velocity update (drift_ou_drift); X as shake_block
    h = 0.002
    x0 = start(solver, bridge.positions, N_WALKERS, seed=21)
    v = thermal(bridge.masses, x0.shape, seed=22)
    x1 = x0 + h * v
    X0, X = np.ascontiguousarray(x0.numpy().transpose(1, 2, 0)), np.ascontiguousarray(x1.numpy().transpose(1, 2, 0))
    V = np.ascontiguousarray(v.numpy().transpose(1, 2, 0))
    X_only = X.copy()
    assert fc.shake_block_with_velocities(X0, X, V, 1.0 / h, *lanes.arrays(), 1e-12, 50) == 0
    assert fc.shake_block(X0, X_only, *lanes.arrays(), 1e-12, 50) == 0
    assert np.array_equal(X, X_only)
    x = solver.shake(x0, x1)
    expected = (v + (x - x1) / h).numpy()
    np.testing.assert_allclose(V.transpose(2, 0, 1), expected, rtol=0, atol=1e-9)  # (x − x̃) ~ 1e-16 nm / 2 fs
    # the corrected velocity is the secant (x' − x0)/h, whose bond-length change is second order
    np.testing.assert_allclose(V.transpose(2, 0, 1), (x - x0).numpy() / h, rtol=0, atol=1e-9)


def test_shake_correction_is_along_inverse_mass_times_reference_gradients(bridge, solver, lanes):
    # (d) x' − x̃ must lie in the span of M⁻¹G(x0)ᵀ: least squares on that basis leaves only round-off.
    c = constraints_of(bridge)
    x0 = start(solver, bridge.positions, 8, seed=3)
    x1 = x0 + 0.004 * thermal(bridge.masses, x0.shape, seed=4)
    out = fc.shake(x0.numpy(), x1.numpy(), lanes)
    inv_m = 1.0 / np.asarray(bridge.masses)
    for w in range(8):
        r = x0.numpy()[w, c.atoms[:, 0]] - x0.numpy()[w, c.atoms[:, 1]]               # (K, 3)
        basis = np.zeros((len(c), 22, 3))
        basis[np.arange(len(c)), c.atoms[:, 0]] += r * inv_m[c.atoms[:, 0], None]
        basis[np.arange(len(c)), c.atoms[:, 1]] -= r * inv_m[c.atoms[:, 1], None]
        delta = (out[w] - x1.numpy()[w]).reshape(-1)
        lam, *_ = np.linalg.lstsq(basis.reshape(len(c), -1).T, delta, rcond=None)
        assert np.abs(basis.reshape(len(c), -1).T @ lam - delta).max() < 1e-14
        assert np.abs(delta).max() > 1e-5


def test_shake_rejects_known_wrong_corrections(bridge, solver, lanes):
    # (d) Two wrong SHAKEs also put bonds at their lengths, but elsewhere on the manifold; the
    # agreement tolerance of 1e-12 nm is many orders of magnitude below their distance from the
    # right answer, so the comparison in test (b) would catch either.
    c = constraints_of(bridge)
    x0 = start(solver, bridge.positions, N_WALKERS, seed=5)
    x1 = x0 + 0.002 * thermal(bridge.masses, x0.shape, seed=6)
    right = solver.shake(x0, x1).numpy()
    ours = fc.shake(x0.numpy(), x1.numpy(), lanes)
    assert np.abs(ours - right).max() < 1e-12
    # corrected along the gradients at the unconstrained point x̃ (not at x0)
    along_new = fc.shake(x1.numpy(), x1.numpy(), lanes)
    # corrected without the masses (unit masses: hydrogens and carbons move alike)
    unit = fc.shake(x0.numpy(), x1.numpy(), fc.pack_clusters(c, np.ones(22), np.float64))
    for wrong in (along_new, unit):
        assert relative_violation(wrong, c).max() < 1e-11
        assert np.abs(wrong - right).max() > 1e-6


def test_shake_of_a_point_onto_itself_is_constrain_positions(bridge, solver, lanes):
    # X0 may be X (the kernel reads each cluster's reference bonds before moving its atoms)
    g = torch.Generator().manual_seed(7)
    x = torch.as_tensor(bridge.positions, dtype=torch.float64).expand(16, -1, -1)
    x = x + 0.005 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    X = np.ascontiguousarray(x.numpy().transpose(1, 2, 0))
    assert fc.shake_block(X, X, *lanes.arrays(), 1e-12, 50) == 0
    np.testing.assert_allclose(X.transpose(2, 0, 1), solver.constrain_positions(x).numpy(), rtol=0, atol=1e-12)


def test_lane_results_do_not_depend_on_the_block_size(bridge, solver, lanes):
    # each lane stops at its own convergence, so blocks of 4, 20 or 100 walkers give the same bits
    x0 = start(solver, bridge.positions, N_WALKERS, seed=8).numpy()
    x1 = x0 + 0.004 * thermal(bridge.masses, x0.shape, seed=9).numpy()
    v = thermal(bridge.masses, x0.shape, seed=10).numpy()
    results = []
    for b in (4, 20, 100):
        X0, X, V = to_lanes(x0, b), to_lanes(x1, b), to_lanes(v, b)
        assert fc.shake_lanes(X0, X, *lanes.arrays(), 1e-12, 50) == 0
        fc.project_lanes(X, V, *lanes.arrays())
        results.append((from_lanes(X), from_lanes(V)))
    for x, pv in results[1:]:
        assert np.array_equal(x, results[0][0]) and np.array_equal(pv, results[0][1])


def test_non_convergent_steps_are_counted(bridge, solver, lanes):
    # (e) a 5 nm displacement of one walker's atoms: that lane cannot be brought back
    x0 = start(solver, bridge.positions, 40, seed=11).numpy()
    x1 = x0 + 0.002 * thermal(bridge.masses, x0.shape, seed=12).numpy()
    x1[35] += 5.0 * np.random.default_rng(13).standard_normal(x1.shape[1:])
    X0, X = np.ascontiguousarray(x0.transpose(1, 2, 0)), np.ascontiguousarray(x1.transpose(1, 2, 0))
    assert fc.shake_block(X0, X.copy(), *lanes.arrays(), 1e-12, 50) == 1
    # too few iterations for a sane step fail every lane (Newton needs 3-4 in float64)
    assert fc.shake_block(X0, X.copy(), *lanes.arrays(), 1e-12, 1) == 40
    with pytest.raises(ConstraintError) as err:
        fc.shake(x0, x1, lanes)
    assert err.value.walkers == [35]


def test_float32_lanes_reach_single_precision(bridge, solver):
    lc32 = fc.pack_clusters(constraints_of(bridge), bridge.masses, np.float32)
    x0 = start(solver, bridge.positions, N_WALKERS, seed=14)
    x1 = x0 + 0.002 * thermal(bridge.masses, x0.shape, seed=15)
    out = fc.shake(x0.numpy().astype(np.float32), x1.numpy().astype(np.float32), lc32)
    assert out.dtype == np.float32
    assert relative_violation(out.astype(np.float64), constraints_of(bridge)).max() < 1e-5
    np.testing.assert_allclose(out, solver.shake(x0, x1).numpy(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- RATTLE projection
def test_projection_matches_the_torch_solver_and_is_tangent(bridge, solver, lanes):
    # (c)
    x = start(solver, bridge.positions, N_WALKERS, seed=16)
    v = thermal(bridge.masses, x.shape, seed=17)
    assert float(solver.velocity_violation(x, v).max()) > 0.1
    p = fc.project(x.numpy(), v.numpy(), lanes)
    np.testing.assert_allclose(p, solver.project_velocities(x, v).numpy(), rtol=0, atol=1e-12)
    assert float(solver.velocity_violation(x, torch.as_tensor(p)).max()) < 1e-12  # G(x) v = 0
    np.testing.assert_allclose(fc.project(x.numpy(), p, lanes), p, rtol=0, atol=1e-13)  # idempotent
    # a projection without masses is also tangent, but not this one: rejected by the 1e-12 comparison
    unit = fc.project(x.numpy(), v.numpy(), fc.pack_clusters(constraints_of(bridge), np.ones(22), np.float64))
    assert float(solver.velocity_violation(x, torch.as_tensor(unit)).max()) < 1e-12
    assert np.abs(unit - p).max() > 1e-3


# ---------------------------------------------------------------------------- other cluster shapes
WATER = np.array([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
WATER_D = {(0, 1): 0.09572, (0, 2): 0.09572, (1, 2): 0.15139}
METHANE = 0.109 / np.sqrt(3) * np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])


def water_box(pairs, n_water):
    """n_water waters 0.3 nm apart, each with the constraints ``pairs`` (a block of 2 or 3)."""
    atoms = np.concatenate([np.array(pairs) + 3 * w for w in range(n_water)])
    dist = np.tile([WATER_D[p] for p in pairs], n_water)
    positions = np.concatenate([WATER + [0.3 * w, 0.0, 0.0] for w in range(n_water)])
    return Constraints(atoms, dist), np.tile([15.999, 1.008, 1.008], n_water), positions


@pytest.mark.parametrize("case", ["rigid-water", "flexible-water", "methane"])
def test_other_cluster_sizes_match_the_torch_solver(case):
    # rigid water is a triangle (a closed cycle, block of 3), flexible water a block of 2, and
    # methane's four C–H bonds a block of 4 (the kernels' general Gaussian elimination)
    if case == "methane":
        c, masses, pos = (Constraints(np.array([[0, 1], [0, 2], [0, 3], [0, 4]]), np.full(4, 0.109)),
                          np.array([12.011, 1.008, 1.008, 1.008, 1.008]), METHANE)
    else:
        c, masses, pos = water_box([(0, 1), (0, 2), (1, 2)] if case == "rigid-water" else [(0, 1), (0, 2)], 4)
    s = ConstraintSolver(c, masses)
    lc = fc.pack_clusters(c, masses, np.float64)
    assert set(lc.cluster_sizes) == {3 if case == "rigid-water" else 2 if case == "flexible-water" else 4}
    x0 = start(s, pos, 40, seed=18, noise=0.003)
    x1 = x0 + 0.004 * thermal(masses, x0.shape, seed=19)
    out = fc.shake(x0.numpy(), x1.numpy(), lc)
    assert relative_violation(out, c).max() < 1e-11
    np.testing.assert_allclose(out, s.shake(x0, x1).numpy(), rtol=0, atol=1e-12)
    v = thermal(masses, x0.shape, seed=20)
    xs = torch.as_tensor(out)
    p = fc.project(out, v.numpy(), lc)
    np.testing.assert_allclose(p, s.project_velocities(xs, v).numpy(), rtol=0, atol=1e-12)
    assert float(s.velocity_violation(xs, torch.as_tensor(p)).max()) < 1e-12
