"""The table of exact laws (langevin_md.laws) against an independent computation.

On a harmonic well every scheme is a linear map of (x, v) plus Gaussian noise,
z' = M z + N ξ, so its stationary covariance is the fixed point of Σ ← M Σ Mᵀ + N Nᵀ. Building
M and N operator by operator (B, A, O written as 2×2 matrices) and iterating to the fixed point
checks the closed forms without sampling and without trusting their derivations.
"""

import math

import numpy as np
import pytest

from langevin_md import laws


def kick(tau, k, m):
    return np.array([[1.0, 0.0], [-tau * k / m, 1.0]]), np.zeros((2, 2))


def drift(tau):
    return np.array([[1.0, tau], [0.0, 1.0]]), np.zeros((2, 2))


def ou(tau, gamma, kT, m):
    c = math.exp(-gamma * tau)
    return np.array([[1.0, 0.0], [0.0, c]]), np.array([[0.0, 0.0], [0.0, math.sqrt((1 - c * c) * kT / m)]])


def compose(*ops):
    """Apply ops left to right: returns (M, Q) with z' = M z + noise of covariance Q."""
    M, Q = np.eye(2), np.zeros((2, 2))
    for A, N in ops:
        M, Q = A @ M, A @ Q @ A.T + N @ N.T
    return M, Q


def stationary(M, Q, n=20000):
    S = np.zeros((2, 2))
    for _ in range(n):
        S = M @ S @ M.T + Q
    return S


@pytest.mark.parametrize("h,k,m,gamma,kT", [(0.5, 1.0, 1.0, 1.0, 1.0), (1.2, 2.0, 2.0, 2.0, 1.5),
                                            (0.3, 4.0, 0.5, 0.7, 2.5)])
def test_splitting_laws_match_the_linear_map_fixed_point(h, k, m, gamma, kT):
    omega = math.sqrt(k / m)
    baoab = compose(kick(h / 2, k, m), drift(h / 2), ou(h, gamma, kT, m), drift(h / 2), kick(h / 2, k, m))
    obabo = compose(ou(h / 2, gamma, kT, m), kick(h / 2, k, m), drift(h), kick(h / 2, k, m), ou(h / 2, gamma, kT, m))
    sb, so = stationary(*baoab), stationary(*obabo)
    assert sb[0, 0] == pytest.approx(laws.baoab_position_variance(kT / k, h, omega), rel=1e-10)
    assert sb[1, 1] == pytest.approx(laws.baoab_step_end_velocity_variance(kT, m, h, omega), rel=1e-10)
    assert so[0, 0] == pytest.approx(laws.obabo_position_variance(kT / k, h, omega), rel=1e-10)
    assert so[1, 1] == pytest.approx(laws.obabo_velocity_variance(kT, m, h, omega), rel=1e-10)


@pytest.mark.parametrize("eps,s2,s", [(0.1, 1.0, 0.0), (0.5, 2.0, 1.5), (1.9, 1.0, 0.3)])
def test_ula_and_sgld_laws_match_the_variance_recursion(eps, s2, s):
    a = 1 - eps / s2
    v = 0.0
    for _ in range(20000):  # |a| <= 0.9 here: converged to round-off long before
        v = a * a * v + 2 * eps + eps * eps * s * s
    assert laws.sgld_stationary_variance(eps, s2, s) == pytest.approx(v, rel=1e-9)
    if s == 0.0:
        assert laws.ula_stationary_variance(eps, s2) == pytest.approx(v, rel=1e-9)
    mean, var = laws.ula_transient(2.0, eps, s2, 3)
    assert mean == pytest.approx(a ** 3 * 2.0)
    v3 = 0.0
    for _ in range(3):
        v3 = a * a * v3 + 2 * eps
    assert var == pytest.approx(v3, rel=1e-12)
    assert laws.ula_integrated_autocorrelation_time(eps, s2) == pytest.approx(
        1 + 2 * sum(a ** n for n in range(1, 20000)), rel=1e-9)


def test_brownian_and_annealed_laws():
    # n steps of sqrt(2 eps) noise with eps = kT h/(m gamma)
    kT, m, gamma, h, n = 2.0, 3.0, 0.5, 0.3, 50
    assert laws.brownian_mean_squared_displacement(kT, m, gamma, h * n) == pytest.approx(2 * n * kT * h / (m * gamma))
    # one annealed step: Var(c x + sqrt(alpha) z) = c² v + alpha
    v, alpha, s0sq, sigma = 1.3, 0.2, 1.0, 0.7
    c = 1 - alpha / (2 * (s0sq + sigma ** 2))
    assert laws.annealed_variance_step(v, alpha, s0sq, sigma) == pytest.approx(c * c * v + alpha)


def test_mala_acceptance_matches_the_tabulated_values():
    # The values rounded to 3 decimals in docs/exact_results.md (rounding error <= 5e-4).
    for eps, table in [(0.1, 0.993), (1.5, 0.633)]:
        assert abs(laws.mala_acceptance_on_standard_normal(eps) - table) < 6e-4


def test_laws_refuse_unstable_or_invalid_settings():
    with pytest.raises(ValueError, match="unstable"):
        laws.ula_stationary_variance(2.0, 1.0)
    with pytest.raises(ValueError, match="unstable"):
        laws.baoab_position_variance(1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="step_size"):
        laws.ula_stationary_variance(-0.1, 1.0)
    with pytest.raises(ValueError, match="n_steps"):
        laws.ula_transient(1.0, 0.1, 1.0, -1)
    with pytest.raises(ValueError, match="gradient_noise_sd"):
        laws.sgld_stationary_variance(0.1, 1.0, -1.0)
    assert {law.name for law in laws.TABLE} >= {"ULA stationary variance", "BAOAB positions", "OBABO positions",
                                                 "Brownian diffusion", "MALA exact"}
