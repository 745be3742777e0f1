"""Preconditioned ULA, MALA and HMC on a correlated Gaussian against their exact laws.

Target N(0, Σ) in 3-D with variances spanning two decades and strong correlations; a fixed
dense metric M that is a rough (not exact) guess of Σ, so that M, M^{1/2} and M² differ
clearly. ULA's stationary covariance is the discrete Lyapunov solution C = A C Aᵀ + 2εM,
A = I − εMΣ⁻¹ (docs/exact_results.md); MALA and HMC are exact (covariance Σ) at a step where
that C is far from Σ. Every second moment ⟨x_i x_j⟩ is a mean over independent walkers of the
per-walker average over frames, so its standard error is the spread across walkers.

Each test also shows the same data reject a known-wrong answer: for ULA the continuous-time Σ
and the law of noise scaled by M instead of M^{1/2}; for MALA/HMC the ULA law, and the data of
a MALA whose ratio omits the metric (or an HMC whose kinetic energy omits it) reject Σ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md import laws
from langevin_md.integrators import HMC, MALA, ULA, with_temperature
from langevin_md.integrators.base import sum_event, thermal_energy, walker_view
from langevin_md.integrators.metropolis import metropolis_select
from langevin_md.integrators.overdamped import preconditioned_move
from langevin_md.systems.mixture import GaussianMixture

from .stats import Z_MAX

pytestmark = pytest.mark.slow

SIGMA = np.array([[4.0, 1.5, 0.2],
                  [1.5, 1.0, 0.1],
                  [0.2, 0.1, 0.05]])
# A rough guess of Σ: right scales, wrong correlations (so M ≠ Σ and the bias is anisotropic).
METRIC = np.array([[3.0, 0.8, 0.0],
                   [0.8, 1.2, 0.05],
                   [0.0, 0.05, 0.04]])
PAIRS = [(i, j) for i in range(3) for j in range(i, 3)]
N_WALKERS = 3000


def _system():
    return GaussianMixture([[0.0, 0.0, 0.0]], covariances=[SIGMA])


def _start(seed):
    """Exact draws from the target: the exact schemes need no burn-in."""
    return np.random.default_rng(seed).multivariate_normal(np.zeros(3), SIGMA, size=N_WALKERS)


def _moments(positions):
    """⟨x_i x_j⟩ per frame and walker for each pair, shape (n_pairs, n_frames, n_walkers)."""
    return np.stack([positions[..., i] * positions[..., j] for i, j in PAIRS])


def _z(moments, exact):
    """z-score of every pair's moment against ``exact`` (d, d)."""
    per_walker = moments.mean(1)  # (n_pairs, n_walkers)
    mean = per_walker.mean(1)
    se = per_walker.std(1, ddof=1) / np.sqrt(per_walker.shape[1])
    return (mean - np.array([exact[i, j] for i, j in PAIRS])) / se


def _run(integrator, n_steps, burn_in, record_every, seed=3, kT=None):
    sampler = lmd.Sampler(_system(), integrator, n_walkers=N_WALKERS, seed=seed,
                          initial_positions=_start(seed), compile=False)
    if kT is not None:
        sampler.state = with_temperature(sampler.system, sampler.state, kT)
    return sampler.run(n_steps, record_every=record_every, burn_in=burn_in)


def test_preconditioned_ula_has_the_discrete_lyapunov_covariance():
    eps = 0.5
    exact = laws.preconditioned_ula_stationary_covariance(eps, SIGMA, METRIC)
    # Noise M ξ instead of M^{1/2} ξ: the same Lyapunov equation with 2εM² as noise covariance.
    from scipy.linalg import solve_discrete_lyapunov

    a = laws.preconditioned_ula_contraction(eps, SIGMA, METRIC)
    wrong_noise = solve_discrete_lyapunov(a, 2 * eps * METRIC @ METRIC)
    res = _run(ULA(eps, preconditioner=METRIC), n_steps=60, burn_in=60, record_every=3)
    m = _moments(res.positions)
    z = _z(m, exact)
    assert np.all(np.abs(z) <= Z_MAX), f"z = {np.round(z, 2)} against C = {exact.round(4).tolist()}"
    assert np.abs(_z(m, SIGMA)).max() >= 20.0, "fails to reject the continuous-time Σ"
    assert np.abs(_z(m, wrong_noise)).max() >= 20.0, "fails to reject noise scaled by M"


@dataclass(frozen=True)
class _MALAWithoutMetricInRatio(MALA):
    """A known-wrong MALA: preconditioned proposal, but the reverse density uses |·|² not M⁻¹."""

    def _preconditioned_step(self, system, state, metric, kT, eps, noise, u):
        x = state.positions
        y = preconditioned_move(state, metric, kT, eps, noise)
        energy, forces = system.energy_and_forces(y)
        back = x - y - (eps / kT) * metric.apply(forces)
        fwd = y - x - (eps / kT) * metric.apply(state.forces)
        log_q = (sum_event(fwd * fwd) - sum_event(back * back)) / (4.0 * state.step_size)
        log_ratio = -(energy - state.energy) / thermal_energy(system, state, 1) + log_q
        return metropolis_select(state, replace(state, positions=y, energy=energy, forces=forces), log_ratio, u)


@dataclass(frozen=True)
class _HMCWithoutMetricInKinetic(HMC):
    """A known-wrong HMC: preconditioned momenta and drift, but kinetic energy ½|p|²."""

    def _preconditioned_step(self, system, state, generator):
        from langevin_md.integrators.metric import state_metric

        metric = state_metric(state)
        x0 = state.positions
        h = walker_view(state.step_size, x0.ndim)
        xi = generator.normal(system.event_shape, dtype=x0.dtype)
        u = generator.uniform((), dtype=x0.dtype)
        kT = thermal_energy(system, state, x0.ndim)
        p = metric.solve_sqrt_transpose(xi)
        x, forces, energy = x0, state.forces, state.energy
        k0 = 0.5 * sum_event(p * p)
        for _ in range(self.n_leapfrog):
            p = p + (0.5 * h) * forces / kT
            x = x + h * metric.apply(p)
            energy, forces = system.energy_and_forces(x)
            p = p + (0.5 * h) * forces / kT
        log_ratio = -(energy - state.energy) / thermal_energy(system, state, 1) - (0.5 * sum_event(p * p) - k0)
        return metropolis_select(state, replace(state, positions=x, energy=energy, forces=forces), log_ratio, u)


@pytest.mark.parametrize("right, wrong", [
    (MALA(0.5, preconditioner=METRIC), _MALAWithoutMetricInRatio(0.5, preconditioner=METRIC)),
    (HMC(0.6, 3, preconditioner=METRIC), _HMCWithoutMetricInKinetic(0.6, 3, preconditioner=METRIC)),
], ids=["MALA", "HMC"])
def test_preconditioned_mala_and_hmc_are_exact_where_ula_is_biased(right, wrong):
    ula = laws.preconditioned_ula_stationary_covariance(0.5, SIGMA, METRIC)
    res = _run(right, n_steps=40, burn_in=0, record_every=2)
    m = _moments(res.positions)
    z = _z(m, SIGMA)
    assert np.all(np.abs(z) <= Z_MAX), f"z = {np.round(z, 2)} against Σ"
    assert np.abs(_z(m, ula)).max() >= 20.0, "fails to reject the biased preconditioned-ULA law"
    assert 0.3 < float(np.mean(res.acceptance_rate)) < 0.99  # a real test of the Metropolis step
    # The same statistic, on a scheme that forgets the metric in its Metropolis test, rejects Σ.
    bad = _moments(_run(wrong, n_steps=40, burn_in=0, record_every=2).positions)
    assert np.abs(_z(bad, SIGMA)).max() >= 2 * Z_MAX, "a metric-free Metropolis ratio went unnoticed"


def test_preconditioned_mala_is_exact_at_per_walker_temperatures():
    """Half the walkers at kT = 1, half at kT = 2: each half samples N(0, kT Σ) (U is −log N at kT = 1)."""
    kT = np.where(np.arange(N_WALKERS) % 2 == 0, 1.0, 2.0)
    # The kT = 2 walkers start from N(0, Σ), not N(0, 2Σ): a burn-in lets them relax.
    res = _run(MALA(0.4, preconditioner=METRIC), n_steps=40, burn_in=60, record_every=2, kT=kT)
    m = _moments(res.positions)
    cold, hot = m[:, :, kT == 1.0], m[:, :, kT == 2.0]
    assert np.all(np.abs(_z(cold, SIGMA)) <= Z_MAX)
    assert np.all(np.abs(_z(hot, 2 * SIGMA)) <= Z_MAX)
    assert np.abs(_z(hot, SIGMA)).max() >= 20.0
