"""Distribution checks: histogram distances, energy KS test, configurational and kinetic temperature.

Exact samples are drawn directly (numpy, fixed seed); each check also rejects a known-wrong law.
"""

import numpy as np
import pytest
from scipy import stats

import langevin_md as lmd
from langevin_md.analysis import (
    configurational_temperature,
    distance_to_density,
    distance_to_probabilities,
    distance_to_reference,
    energy_ks_test,
    kinetic_temperature,
)
from langevin_md.result import SampleResult

EDGES = np.linspace(-4, 4, 41)
P_NORMAL = np.diff(stats.norm.cdf(EDGES))


@pytest.mark.parametrize("metric", ["tv", "js", "kl"])
def test_distance_small_for_exact_samples_and_large_for_a_wrong_law(metric):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 250))
    d = distance_to_probabilities(x, EDGES, P_NORMAL, metric=metric)
    assert abs(d.z) <= 5, d
    wrong = distance_to_probabilities(1.1 * x, EDGES, P_NORMAL, metric=metric)
    assert wrong.z >= 20, wrong


def test_total_variation_noise_floor_matches_repeated_experiments():
    # The mean TV of many exact histograms equals the predicted noise floor.
    rng = np.random.default_rng(1)
    tvs = [distance_to_probabilities(rng.standard_normal(2000), EDGES, P_NORMAL).distance for _ in range(200)]
    floor = distance_to_probabilities(rng.standard_normal(2000), EDGES, P_NORMAL).noise_floor
    assert abs(np.mean(tvs) - floor) / (np.std(tvs) / np.sqrt(len(tvs))) <= 5


def test_distance_to_an_exact_grid_of_a_system():
    mb = lmd.systems.MullerBrown(kT=1.0, energy_scale=0.1)
    x, y, dens = mb.density_grid(bins=40)
    # Exact samples: draw grid cells by their mass, then uniformly inside the cell.
    rng = np.random.default_rng(2)
    h = np.array([x[1] - x[0], y[1] - y[0]])
    mass = (dens * h.prod()).ravel()
    cell = rng.choice(mass.size, size=50_000, p=mass / mass.sum())
    pts = np.stack([x[cell // 40], y[cell % 40]], -1) + (rng.random((cell.size, 2)) - 0.5) * h
    d = distance_to_density(pts, (x, y), dens)
    assert abs(d.z) <= 5, d
    hot = lmd.systems.MullerBrown(kT=2.0, energy_scale=0.1).density_grid(bins=40)[2]
    assert distance_to_density(pts, (x, y), hot).z >= 20


def test_distance_to_a_reference_sample():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(20000), rng.standard_normal(20000)
    assert abs(distance_to_reference(a, b).z) <= 5
    assert distance_to_reference(a, 1.2 * b).z >= 20


def test_energy_ks_test_gamma_law_of_harmonic_energy():
    rng = np.random.default_rng(5)
    system = lmd.systems.Harmonic(dim=4, k=[1, 2, 3, 4], kT=1.5)
    x = rng.standard_normal((5000, 4)) * np.sqrt(system.variance)
    u = 0.5 * (system.k * x * x).sum(-1)
    assert energy_ks_test(u, n_dof=4, kT=1.5).pvalue > 1e-4
    assert energy_ks_test(u, n_dof=4, kT=1.7).pvalue < 1e-10
    assert energy_ks_test(u, n_dof=3, kT=1.5).pvalue < 1e-10


def harmonic_samples(system, n_frames, n_walkers, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_frames, n_walkers, system.event_shape[0])) * np.sqrt(system.variance)


@pytest.mark.parametrize("method", ["laplacian", "exact", "hutchinson", "finite-difference"])
def test_configurational_temperature_is_kT_on_exact_samples(method):
    system = lmd.systems.Harmonic(dim=3, k=[1.0, 2.0, 5.0], kT=1.5)
    pos = harmonic_samples(system, 20, 200, seed=6)
    t = configurational_temperature(system, pos, method=method)
    assert abs(t.z(1.5)) <= 5, t
    assert abs(t.z(3.0)) >= 20, t


def test_configurational_temperature_on_a_nonquadratic_system_by_autograd():
    # Double well along x1 at kT = 1: exact samples by inverse CDF on a fine grid.
    system = lmd.systems.DoubleWell(dim=2, barrier=2.0, kT=1.0)
    rng = np.random.default_rng(7)
    grid, logp = system.log_density_grid(bins=20001)
    cdf = np.cumsum(np.exp(logp))
    x1 = np.interp(rng.random(20000), cdf / cdf[-1], grid)
    x2 = rng.standard_normal(20000) * np.sqrt(system.variance[1])
    pos = np.stack([x1, x2], -1).reshape(200, 100, 2)
    t = configurational_temperature(system, pos)
    assert t.method == "exact"
    assert abs(t.z(1.0)) <= 5, t
    assert abs(t.z(2.0)) >= 20, t


def test_configurational_temperature_detects_ula_bias():
    # ULA on U = x²/2 with eps = 0.5 samples Var = 4/3, i.e. kT_conf = 4/3.
    system = lmd.systems.Harmonic(dim=1, k=1.0, kT=1.0)
    r = lmd.sample(system, lmd.integrators.ULA(step_size=0.5), n_steps=200, n_walkers=1000,
                   record_every=10, burn_in=50, seed=0)
    t = configurational_temperature(system, r.positions)
    assert abs(t.z(4 / 3)) <= 5 and abs(t.z(1.0)) >= 10


def test_kinetic_temperature():
    rng = np.random.default_rng(8)
    kin = 1.5 * rng.gamma(1.5, size=(100, 300))  # 3 dof at kT = 1.5
    r = SampleResult(positions=np.zeros((100, 300, 3)), energies=np.zeros((100, 300)),
                     steps=np.arange(100), kT=1.5, kinetic_energies=kin)
    t = kinetic_temperature(r)
    assert abs(t.z(1.5)) <= 5 and abs(t.z(1.7)) >= 20
    with pytest.raises(ValueError, match="no kinetic energies"):
        kinetic_temperature(SampleResult(positions=np.zeros((4, 1, 1)), energies=np.zeros((4, 1)),
                                         steps=np.arange(4), kT=1.0))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="metric"):
        distance_to_probabilities([0.0], EDGES, P_NORMAL, metric="hellinger")
    with pytest.raises(ValueError, match="shape"):
        distance_to_probabilities([0.0], EDGES, P_NORMAL[:-1])
    with pytest.raises(ValueError, match="positions must have shape"):
        configurational_temperature(lmd.systems.Harmonic(dim=2), np.zeros((3, 2)))
