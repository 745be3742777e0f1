"""Exact discrete-time laws of every scheme on harmonic wells (``docs/exact_results.md``; the
values come from :mod:`langevin_md.laws`, the table ``langevin-md validate`` also uses).

Each test runs many independent walkers from a fixed seed, burns in for many relaxation
times, compares with the exact value using the standard error across walkers (|z| <= 5), and
shows that the same data reject the known-wrong value (|z| >= 20).
"""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md import laws
from langevin_md.systems import FreeParticle, Harmonic

from .stats import assert_exact_and_rejects_wrong, walker_mean_and_se

pytestmark = pytest.mark.slow


def run(system, integrator, n_walkers=4000, burn_in=200, n_frames=20, record_every=20, seed=0):
    return lmd.sample(system, integrator, n_steps=n_frames * record_every, n_walkers=n_walkers,
                      record_every=record_every, burn_in=burn_in, seed=seed)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_ula_stationary_variance_is_the_discrete_law(eps):
    # sigma^2 = kT/k = 1: Var = sigma^2 / (1 - eps/(2 sigma^2)); continuous time says sigma^2.
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    s2 = 1.0
    tau = laws.ula_integrated_autocorrelation_time(eps, s2)
    r = run(system, lmd.integrators.ULA(eps), burn_in=int(20 * tau), record_every=int(3 * tau) + 1,
            n_walkers=20000)
    x2 = r.positions[..., 0] ** 2
    assert_exact_and_rejects_wrong(x2, laws.ula_stationary_variance(eps, s2), wrong=s2)


def test_ula_relaxes_from_a_fixed_start_as_a_to_the_n():
    # From x0: mean a^n x0, Var_n = Var_inf (1 - a^(2n)).
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    eps, x0, n = 0.3, 3.0, 5
    r = lmd.sample(system, lmd.integrators.ULA(eps), n_steps=n, n_walkers=40000,
                   initial_positions=np.array([x0]), seed=1)
    x = r.positions[-1, :, 0]
    mean_exact, var_exact = laws.ula_transient(x0, eps, 1.0, n)
    se_mean = np.sqrt(var_exact / x.size)
    assert abs(x.mean() - mean_exact) / se_mean <= 5
    assert abs(x.mean() - np.exp(-eps * n) * x0) / se_mean >= 20  # continuous-time decay e^{-t}
    se_var = var_exact * np.sqrt(2 / (x.size - 1))
    assert abs(x.var(ddof=1) - var_exact) / se_var <= 5


@pytest.mark.parametrize("h", [0.5, 1.5])
def test_baoab_positions_exact_and_obabo_biased(h):
    # omega = 1: BAOAB <x^2> = kT/k for every h*omega < 2; OBABO (kT/k)/(1 - h^2 omega^2/4).
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    obabo_x2 = laws.obabo_position_variance(1.0, h, 1.0)
    rb = run(system, lmd.integrators.BAOAB(timestep=h, friction=1.0), n_walkers=20000)
    zw = 20.0 if h > 1 else 5.0  # the two laws differ by 6.7% at h = 0.5, by 2.3x at 1.5
    assert_exact_and_rejects_wrong(rb.positions[..., 0] ** 2, laws.baoab_position_variance(1.0, h, 1.0),
                                   wrong=obabo_x2, z_wrong_min=zw)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=1.0), n_walkers=20000)
    assert_exact_and_rejects_wrong(ro.positions[..., 0] ** 2, obabo_x2, wrong=1.0, z_wrong_min=zw)


def test_baoab_and_obabo_velocity_laws():
    # BAOAB at step ends: <v^2> = (kT/m)(1 - h^2 omega^2/4); OBABO: <v^2> = kT/m.
    h, m, k, kT = 1.2, 2.0, 2.0, 1.5   # omega = 1
    system = Harmonic(dim=1, k=k, kT=kT, masses=m)
    baoab_v2 = laws.baoab_step_end_velocity_variance(kT, m, h, 1.0)
    obabo_v2 = laws.obabo_velocity_variance(kT, m, h, 1.0)
    rb = run(system, lmd.integrators.BAOAB(timestep=h, friction=2.0), n_walkers=20000)
    v2_b = 2 * rb.kinetic_energies / m
    assert_exact_and_rejects_wrong(v2_b, baoab_v2, wrong=obabo_v2)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=2.0), n_walkers=20000)
    v2_o = 2 * ro.kinetic_energies / m
    assert_exact_and_rejects_wrong(v2_o, obabo_v2, wrong=baoab_v2)


def test_baoab_per_dimension_masses_and_springs():
    # Three modes with different k and m: each coordinate exact at kT/k_i; a scheme that
    # ignored the masses would thermalise to the wrong omega and fail OBABO's law below.
    k = np.array([1.0, 4.0, 0.25])
    m = np.array([2.0, 2.0, 0.5])
    h = 1.2
    system = Harmonic(dim=3, k=k, kT=1.0, masses=m)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=1.0), n_walkers=10000)
    omega = np.sqrt(k / m)
    for i in range(3):
        exact = laws.obabo_position_variance(1 / k[i], h, omega[i])
        # masses ignored (ω² = k): the formula, evaluated even where that ω would be unstable
        wrong = (1 / k[i]) / (1 - h * h * k[i] / 4)
        assert_exact_and_rejects_wrong(ro.positions[..., i] ** 2, exact, wrong=wrong, z_wrong_min=10)


@pytest.mark.parametrize("eps,acceptance", [(0.5, 0.921), (1.0, 0.784)])
def test_mala_is_exact_where_ula_is_biased(eps, acceptance):
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    r = run(system, lmd.integrators.MALA(step_size=eps), n_walkers=10000)
    ula_var = laws.ula_stationary_variance(eps, 1.0)
    assert_exact_and_rejects_wrong(r.positions[..., 0] ** 2, 1.0, wrong=ula_var)
    # Acceptance on N(0,1): quadrature of E[min(1, alpha)]; the tabulated values are rounded
    # to 3 decimals (error <= 5e-4) and the quadrature is good to ~1e-9.
    exact_acc = laws.mala_acceptance_on_standard_normal(eps)
    assert abs(exact_acc - acceptance) < 6e-4
    acc = r.acceptance_rate
    se = acc.std(ddof=1) / np.sqrt(acc.size)
    assert abs(acc.mean() - exact_acc) / se <= 5
    assert abs(acc.mean() - laws.mala_acceptance_on_standard_normal(1.5 * eps)) / se >= 20


def mala_expected_acceptance(step_sizes, k, n_draws, rng):
    """Exact stationary acceptance E[min(1, α) | ε] of MALA on U = Σ k_i x_i²/2 (kT = 1), one
    value per ε, by Monte Carlo over exact draws x ~ N(0, 1/k) and ξ ~ N(0, I); returns the
    estimates and their standard errors, shape (len(step_sizes),) each."""
    eps = np.asarray(step_sizes, dtype=np.float64)[:, None, None]
    x = rng.standard_normal((eps.shape[0], n_draws, k.size)) / np.sqrt(k)
    xi = rng.standard_normal(x.shape)
    y = x - eps * k * x + np.sqrt(2 * eps) * xi
    log_q_back = -((x - y + eps * k * y) ** 2).sum(-1) / (4 * eps[..., 0])
    log_q_fwd = -(xi * xi).sum(-1) / 2
    log_alpha = -0.5 * (k * (y * y - x * x)).sum(-1) + log_q_back - log_q_fwd
    a = np.exp(np.minimum(log_alpha, 0.0))
    return a.mean(-1), a.std(-1, ddof=1) / np.sqrt(n_draws)


def test_adaptive_mala_freezes_and_stays_exact():
    system = Harmonic(dim=2, k=[1.0, 3.0], kT=1.0)
    integ = lmd.integrators.MALA(step_size=0.05, target_accept=0.6)
    r = run(system, integ, n_walkers=4000, burn_in=1000)
    assert r.step_sizes is not None and np.all(r.step_sizes > 0.05)  # it did adapt
    # The frozen kernel's acceptance is that of a fixed MALA at each walker's own ε: compare
    # the measured rates with the exact expectation walker by walker (z over walkers).
    k = np.array([1.0, 3.0])
    rng = np.random.default_rng(11)
    expected, mc_se = mala_expected_acceptance(r.step_sizes, k, 2000, rng)
    diff = r.acceptance_rate - expected
    se = np.sqrt(diff.var(ddof=1) / diff.size + (mc_se ** 2).mean() / diff.size)
    assert abs(diff.mean()) / se <= 5
    # The same rates reject the acceptance of the unadapted ε₀ = 0.05 (about 0.99).
    start, _ = mala_expected_acceptance(np.full(1, 0.05), k, 200_000, rng)
    assert abs(r.acceptance_rate.mean() - start[0]) / se >= 20
    # Dual averaging aims at 0.6 without an exact law for where it lands; it must at least
    # have moved the exact acceptance most of the way from ε₀'s towards the target.
    assert abs(expected.mean() - 0.6) < 0.25 * abs(start[0] - 0.6)
    for i, k in enumerate([1.0, 3.0]):
        ula_var = laws.ula_stationary_variance(r.step_sizes.mean(), 1 / k)
        assert_exact_and_rejects_wrong(r.positions[..., i] ** 2 * k, 1.0, wrong=ula_var * k, z_wrong_min=10)


@pytest.mark.parametrize("integrator", [lmd.integrators.HMC(timestep=0.8, n_leapfrog=3),
                                        lmd.integrators.RandomWalkMetropolis(scale=2.0)])
def test_metropolis_baselines_are_exact(integrator):
    system = Harmonic(dim=1, k=2.0, kT=1.0)
    r = run(system, integrator, n_walkers=10000)
    # The wrong answer: the variance of the target at twice the temperature.
    assert_exact_and_rejects_wrong(r.positions[..., 0] ** 2, 0.5, wrong=1.0)


def test_brownian_free_diffusion():
    # <dx^2> = 2 D t per coordinate, D = kT/(m gamma), exact at any timestep.
    kT, gamma, h, n = 2.0, 0.5, 0.3, 50
    m = np.array([2.0, 3.0])
    system = FreeParticle(dim=2, kT=kT, masses=m)
    r = lmd.sample(system, lmd.integrators.Brownian(timestep=h, friction=gamma), n_steps=n,
                   n_walkers=20000, record_every=n, seed=2)
    for i in range(2):
        wrong = laws.brownian_mean_squared_displacement(kT, 1.0, gamma, h * n)  # masses left out
        exact = laws.brownian_mean_squared_displacement(kT, m[i], gamma, h * n)
        assert_exact_and_rejects_wrong(r.positions[..., i] ** 2, exact, wrong=wrong)


def test_compiled_path_samples_the_same_laws():
    # One compile (~15 s) covers the fused path: BAOAB's exact <x^2> and OBABO's value rejected.
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    h = 1.5
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=h, friction=1.0), n_steps=400,
                   n_walkers=20000, record_every=20, burn_in=200, seed=0, compile=True)
    assert_exact_and_rejects_wrong(r.positions[..., 0] ** 2, laws.baoab_position_variance(1.0, h, 1.0),
                                   wrong=laws.obabo_position_variance(1.0, h, 1.0))
