"""Exact discrete-time laws of every scheme on harmonic wells (EXACT_RESULTS.md rows 1, 3-6).

Each test runs many independent walkers from a fixed seed, burns in for many relaxation
times, compares with the exact value using the standard error across walkers (|z| <= 5), and
shows that the same data reject the known-wrong value (|z| >= 20).
"""

import numpy as np
import pytest

import langevin_md as lmd
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
    a = 1 - eps / s2
    tau = (1 + a) / (1 - a)
    r = run(system, lmd.integrators.ULA(eps), burn_in=int(20 * tau), record_every=int(3 * tau) + 1,
            n_walkers=20000)
    x2 = r.positions[..., 0] ** 2
    assert_exact_and_rejects_wrong(x2, s2 / (1 - eps / (2 * s2)), wrong=s2)


def test_ula_relaxes_from_a_fixed_start_as_a_to_the_n():
    # From x0: mean a^n x0, Var_n = Var_inf (1 - a^(2n)).
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    eps, x0, n = 0.3, 3.0, 5
    a = 1 - eps
    r = lmd.sample(system, lmd.integrators.ULA(eps), n_steps=n, n_walkers=40000,
                   initial_positions=np.array([x0]), seed=1)
    x = r.positions[-1, :, 0]
    mean_exact = a**n * x0
    var_exact = (1 / (1 - eps / 2)) * (1 - a ** (2 * n))
    se_mean = np.sqrt(var_exact / x.size)
    assert abs(x.mean() - mean_exact) / se_mean <= 5
    assert abs(x.mean() - np.exp(-eps * n) * x0) / se_mean >= 20  # continuous-time decay e^{-t}
    se_var = var_exact * np.sqrt(2 / (x.size - 1))
    assert abs(x.var(ddof=1) - var_exact) / se_var <= 5


@pytest.mark.parametrize("h", [0.5, 1.5])
def test_baoab_positions_exact_and_obabo_biased(h):
    # omega = 1: BAOAB <x^2> = kT/k for every h*omega < 2; OBABO (kT/k)/(1 - h^2 omega^2/4).
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    obabo_x2 = 1 / (1 - h * h / 4)
    rb = run(system, lmd.integrators.BAOAB(timestep=h, friction=1.0), n_walkers=20000)
    zw = 20.0 if h > 1 else 5.0  # the two laws differ by 6.7% at h = 0.5, by 2.3x at 1.5
    assert_exact_and_rejects_wrong(rb.positions[..., 0] ** 2, 1.0, wrong=obabo_x2, z_wrong_min=zw)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=1.0), n_walkers=20000)
    assert_exact_and_rejects_wrong(ro.positions[..., 0] ** 2, obabo_x2, wrong=1.0, z_wrong_min=zw)


def test_baoab_and_obabo_velocity_laws():
    # BAOAB at step ends: <v^2> = (kT/m)(1 - h^2 omega^2/4); OBABO: <v^2> = kT/m.
    h, m, k, kT = 1.2, 2.0, 2.0, 1.5   # omega = 1
    system = Harmonic(dim=1, k=k, kT=kT, masses=m)
    rb = run(system, lmd.integrators.BAOAB(timestep=h, friction=2.0), n_walkers=20000)
    v2_b = 2 * rb.kinetic_energies / m
    assert_exact_and_rejects_wrong(v2_b, (kT / m) * (1 - h * h / 4), wrong=kT / m)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=2.0), n_walkers=20000)
    v2_o = 2 * ro.kinetic_energies / m
    assert_exact_and_rejects_wrong(v2_o, kT / m, wrong=(kT / m) * (1 - h * h / 4))


def test_baoab_per_dimension_masses_and_springs():
    # Three modes with different k and m: each coordinate exact at kT/k_i; a scheme that
    # ignored the masses would thermalise to the wrong omega and fail OBABO's law below.
    k = np.array([1.0, 4.0, 0.25])
    m = np.array([2.0, 2.0, 0.5])
    h = 1.2
    system = Harmonic(dim=3, k=k, kT=1.0, masses=m)
    ro = run(system, lmd.integrators.OBABO(timestep=h, friction=1.0), n_walkers=10000)
    omega2 = k / m
    for i in range(3):
        exact = (1 / k[i]) / (1 - h * h * omega2[i] / 4)
        wrong = (1 / k[i]) / (1 - h * h * k[i] / 4)  # masses ignored
        assert_exact_and_rejects_wrong(ro.positions[..., i] ** 2, exact, wrong=wrong, z_wrong_min=10)


@pytest.mark.parametrize("eps,acceptance", [(0.5, 0.921), (1.0, 0.784)])
def test_mala_is_exact_where_ula_is_biased(eps, acceptance):
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    r = run(system, lmd.integrators.MALA(step_size=eps), n_walkers=10000)
    ula_var = 1 / (1 - eps / 2)
    assert_exact_and_rejects_wrong(r.positions[..., 0] ** 2, 1.0, wrong=ula_var)
    # Acceptance on N(0,1): quadrature of E[min(1, alpha)] (EXACT_RESULTS row 3 rounds it).
    exact_acc = mala_acceptance_on_standard_normal(eps)
    assert abs(exact_acc - acceptance) < 6e-4
    acc = r.acceptance_rate
    se = acc.std(ddof=1) / np.sqrt(acc.size)
    assert abs(acc.mean() - exact_acc) / se <= 5
    assert abs(acc.mean() - mala_acceptance_on_standard_normal(1.5 * eps)) / se >= 20


def mala_acceptance_on_standard_normal(eps):
    from scipy import integrate

    def integrand(xi, x):
        y = (1 - eps) * x + np.sqrt(2 * eps) * xi
        log_alpha = -(y * y - x * x) / 2 - (x - (1 - eps) * y) ** 2 / (4 * eps) + xi * xi / 2
        return np.exp(-(x * x + xi * xi) / 2) / (2 * np.pi) * min(1.0, np.exp(log_alpha))

    value, _ = integrate.dblquad(integrand, -9, 9, -9, 9, epsabs=1e-9)
    return value


def test_adaptive_mala_freezes_and_stays_exact():
    system = Harmonic(dim=2, k=[1.0, 3.0], kT=1.0)
    integ = lmd.integrators.MALA(step_size=0.05, target_accept=0.6)
    r = run(system, integ, n_walkers=4000, burn_in=1000)
    assert r.step_sizes is not None and np.all(r.step_sizes > 0.05)  # it did adapt
    assert abs(r.acceptance_rate.mean() - 0.6) < 0.1
    for i, k in enumerate([1.0, 3.0]):
        ula_var = (1 / k) / (1 - r.step_sizes.mean() * k / 2)
        assert_exact_and_rejects_wrong(r.positions[..., i] ** 2 * k, 1.0, wrong=ula_var * k, z_wrong_min=10)


@pytest.mark.parametrize("integrator", [lmd.integrators.HMC(step_size=0.8, n_leapfrog=3),
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
        D = kT / (m[i] * gamma)
        wrong = 2 * (kT / gamma) * h * n  # the mass preconditioning left out
        exact = 2 * D * h * n
        assert_exact_and_rejects_wrong(r.positions[..., i] ** 2, exact, wrong=wrong)


def test_compiled_path_samples_the_same_laws():
    # One compile (~15 s) covers the fused path: BAOAB's exact <x^2> and OBABO's value rejected.
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    h = 1.5
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=h, friction=1.0), n_steps=400,
                   n_walkers=20000, record_every=20, burn_in=200, seed=0, compile=True)
    assert_exact_and_rejects_wrong(r.positions[..., 0] ** 2, 1.0, wrong=1 / (1 - h * h / 4))
