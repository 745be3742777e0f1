"""Tests of the sampling-quality statistics in langevin_md.analysis.

The reference process is the stationary AR(1) chain x' = a x + sqrt(1 - a²) ξ, the exact law of
ULA on a unit harmonic well (``docs/exact_results.md``, ULA; :mod:`langevin_md.laws`): ρ(n) = aⁿ, τ = (1 + a)/(1 − a), so
a = 0.9 gives τ = 19. Statistical checks use many independent walkers, fixed seeds and a
standard error from the spread across independent walker groups (|z| <= 5), and show that the
same data reject a known-wrong answer by a wide margin.
"""

from __future__ import annotations

import time
import warnings

import emcee
import numpy as np
import pytest
from scipy.signal import lfilter

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # arviz's import-time notice
    import arviz

import langevin_md.analysis as lmd_analysis
from langevin_md.analysis import (
    Equilibration,
    ShortChainWarning,
    autocorrelation,
    circular_mean,
    circular_standard_error,
    detect_equilibration,
    effective_sample_size,
    integrated_autocorrelation_time,
    mcse,
    rhat,
)

A = 0.9
TAU_EXACT = (1 + A) / (1 - A)  # 19
TWO_PI = 2 * np.pi


def ar1(a: float, n_steps: int, n_walkers: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) chains of unit variance, shape (n_steps, n_walkers)."""
    noise = rng.standard_normal((n_steps, n_walkers))
    x_before = rng.standard_normal(n_walkers)  # the step before t = 0, drawn from N(0, 1)
    out, _ = lfilter([np.sqrt(1 - a * a)], [1.0, -a], noise, axis=0, zi=(a * x_before)[None])
    return out


def sokal_tau_standard_error(tau: float, n_steps: int, c: float = 5.0) -> float:
    """Standard error of Sokal's windowed τ estimate from one chain of ``n_steps``:
    Var(τ̂) ≈ 2(2M + 1)/N · τ² with window M ≈ cτ (Sokal 1997, eq. 3.19; Madras & Sokal 1988)."""
    window = c * tau
    return tau * np.sqrt(2.0 * (2.0 * window + 1.0) / n_steps)


def z_score(samples: np.ndarray, value) -> np.ndarray:
    """(mean − value) / standard error, from independent replicate estimates along axis 0."""
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    return (samples.mean(axis=0) - value) / se


def wrap(angle, period=TWO_PI):
    return (np.asarray(angle) + period / 2) % period - period / 2


@pytest.fixture(scope="module")
def chains() -> np.ndarray:
    """128 stationary AR(1) walkers with a = 0.9, 20 000 steps each."""
    return ar1(A, 20_000, 128, np.random.default_rng(20240601))


def groups(x: np.ndarray, n_groups: int = 16) -> list[np.ndarray]:
    """Independent walker groups, each of shape (n_steps, n_walkers // n_groups)."""
    return np.split(x, n_groups, axis=1)


# ------------------------------------------------------------------------- autocorrelation
def test_public_names_are_exported():
    for name in lmd_analysis.__all__:
        assert hasattr(lmd_analysis, name), name
    assert issubclass(ShortChainWarning, UserWarning)


def test_autocorrelation_shapes_and_normalisation(chains):
    x = chains[:1000, :5]
    rho = autocorrelation(x, max_lag=30)
    assert rho.shape == (31, 5)
    np.testing.assert_allclose(rho[0], 1.0)
    assert autocorrelation(x, max_lag=30, pooled=True).shape == (31,)
    assert autocorrelation(x[:, 0]).shape == (1000,)
    # Per-walker column equals the 1-D computation on that walker.
    np.testing.assert_allclose(rho[:, 2], autocorrelation(x[:, 2], max_lag=30), rtol=1e-12)
    # FFT result equals the direct biased estimator (1/n) Σ (x_s − x̄)(x_{s+t} − x̄).
    y = x[:, 0] - x[:, 0].mean()
    direct = np.array([y[: len(y) - t] @ y[t:] for t in range(31)]) / len(y)
    np.testing.assert_allclose(rho[:, 0], direct / direct[0], rtol=1e-10, atol=1e-12)


def test_autocorrelation_of_ar1_is_a_to_the_n(chains):
    lags = np.arange(41)
    per_group = np.array([autocorrelation(g, max_lag=40, pooled=True) for g in groups(chains)])
    z = z_score(per_group[:, 1:], A ** lags[1:])
    assert np.max(np.abs(z)) <= 5, z
    # The same data reject the autocorrelation of a = 0.8 by a wide margin.
    z_wrong = z_score(per_group[:, 1:], 0.8 ** lags[1:])
    assert np.max(np.abs(z_wrong)) > 50


def test_tau_of_ar1_pooled_over_walker_groups(chains):
    per_group = np.array([integrated_autocorrelation_time(g) for g in groups(chains)])
    assert abs(z_score(per_group, TAU_EXACT)) <= 5
    # Wrong answers: independent samples (τ = 1) and the τ of a = 0.8 (= 9).
    assert abs(z_score(per_group, 1.0)) > 50
    assert abs(z_score(per_group, (1 + 0.8) / (1 - 0.8))) > 30


def test_tau_per_walker(chains):
    tau = integrated_autocorrelation_time(chains, pooled=False)
    assert tau.shape == (128,)
    assert abs(z_score(tau, TAU_EXACT)) <= 5
    assert abs(z_score(tau, 9.0)) > 20
    # The pooled estimate is a float and close to the average of the per-walker ones.
    pooled = integrated_autocorrelation_time(chains)
    assert isinstance(pooled, float)
    assert abs(pooled - tau.mean()) < 0.05 * TAU_EXACT


def test_tau_agrees_with_emcee(chains):
    # Same estimator (biased FFT autocovariance, Sokal window c = 5) for a single chain:
    # agreement to rounding.
    for w in range(3):
        ours = integrated_autocorrelation_time(chains[:, w])
        theirs = emcee.autocorr.integrated_time(chains[:, w], c=5, quiet=True)[0]
        assert ours == pytest.approx(theirs, rel=1e-8)
    # Several walkers: emcee averages normalised autocorrelations, we average
    # autocovariances; with walkers of one law the two agree to well under 1 %.
    ours = integrated_autocorrelation_time(chains)
    theirs = emcee.autocorr.integrated_time(chains, c=5, quiet=True)[0]
    assert ours == pytest.approx(theirs, rel=0.01)


def test_ess_and_rhat_agree_with_arviz(chains):
    ess = effective_sample_size(chains)
    assert ess == pytest.approx(chains.size / integrated_autocorrelation_time(chains), rel=1e-12)
    # arviz truncates the sum of ρ with Geyer's initial monotone sequence (a random window,
    # often much longer than Sokal's M ≈ 5τ) and normalises by a variance that includes the
    # between-chain part. Both estimate the same τ; they differ by the noise of ρ̂ between
    # the two windows, about 2·sqrt(L τ)·sqrt(τ/N)/τ for L extra lags: ≈ 1 % for these
    # N = 2.56e6 samples (≈ 4 % with 16 walkers). Agreement within 5 % is expected.
    assert ess == pytest.approx(float(arviz.ess(chains.T, method="mean")), rel=0.05)
    assert ess == pytest.approx(float(arviz.ess(chains.T)), rel=0.05)  # rank-normalised bulk
    # R-hat: the same algorithm (split, rank-normalised, max of bulk and folded).
    x = chains[:, :16]
    shifted = x + np.r_[np.zeros(8), np.full(8, 0.5)]
    for data in (x, shifted, x[:-1], x[:-1, :2]):  # also odd length, two walkers
        assert rhat(data) == pytest.approx(float(arviz.rhat(data.T)), rel=1e-10)


def test_ess_per_walker(chains):
    ess = effective_sample_size(chains[:, :4], pooled=False)
    tau = integrated_autocorrelation_time(chains[:, :4], pooled=False)
    np.testing.assert_allclose(ess, chains.shape[0] / tau)
    assert effective_sample_size(chains[:, 0]) == pytest.approx(
        chains.shape[0] / integrated_autocorrelation_time(chains[:, 0]))


# ------------------------------------------------------------------------- R-hat and MCSE
def test_rhat_near_one_for_mixed_walkers(chains):
    assert rhat(chains[:, :8]) < 1.01


def test_rhat_large_for_walkers_in_different_modes(chains):
    x = chains[:, :8].copy()
    x[:, 4:] += 3.0  # half the walkers sit in another mode
    assert rhat(x) > 1.1


def test_rhat_folded_catches_different_scales(chains):
    x = chains[:, :8].copy()
    x[:, 4:] *= 3.0  # same location, different spread: only the folded R-hat sees it
    assert rhat(x) > 1.1


def test_rhat_catches_drift_in_one_walker(chains):
    x = chains[:, 0] + np.linspace(0.0, 3.0, chains.shape[0])
    assert rhat(x) > 1.1


def test_mcse_matches_spread_of_walker_means(chains):
    predicted = mcse(chains, pooled=False)  # per-walker standard errors, shape (128,)
    assert predicted.shape == (128,)
    observed = chains.mean(axis=0).std(ddof=1)
    # ratio of an SD estimate from 128 walkers: relative SE ≈ 1 / sqrt(2 · 127)
    se_ratio = 1 / np.sqrt(2 * (chains.shape[1] - 1))
    assert abs(observed / predicted.mean() - 1) <= 5 * se_ratio
    # The i.i.d. formula sqrt(var / n) is wrong by sqrt(τ) ≈ 4.4.
    naive = np.sqrt(chains.var(axis=0, ddof=1) / chains.shape[0]).mean()
    assert abs(observed / naive - 1) > 20 * se_ratio
    # Pooled: sqrt(Var / ESS) with the exact Var = 1 and τ = 19.
    assert mcse(chains) == pytest.approx(np.sqrt(TAU_EXACT / chains.size), rel=0.05)


# ------------------------------------------------------------------------- equilibration
def test_detect_equilibration_removes_a_decaying_transient():
    rng = np.random.default_rng(7)
    n = 50_000
    x = ar1(A, n, 1, rng)[:, 0] + 10.0 * np.exp(-np.arange(n) / 1000.0)
    result = detect_equilibration(x)
    assert isinstance(result, Equilibration)
    t0, tau, ess = result
    # The transient is 10 sd at t = 0 and 1 sd at t ≈ 2300: it must be dropped, without
    # discarding most of the run.
    assert 2000 <= t0 <= n // 2
    # τ of the kept part against the exact τ, with Sokal's standard error (≈ 9 % here);
    # the same estimate rejects τ = 1 (treating the chain as independent draws).
    se = sokal_tau_standard_error(TAU_EXACT, n - t0)
    assert abs(tau - TAU_EXACT) / se <= 5
    assert abs(tau - 1.0) / se >= 8
    assert ess == pytest.approx((n - t0) / tau)
    # The kept mean agrees with the exact mean 0 (exact SE sqrt(τ/n)); keeping everything
    # is biased by many standard errors.
    assert abs(x[t0:].mean()) / np.sqrt(TAU_EXACT / (n - t0)) <= 5
    assert abs(x.mean()) / np.sqrt(TAU_EXACT / n) > 8


def test_detect_equilibration_finds_a_step_transient():
    rng = np.random.default_rng(8)
    n, t_end, k = 50_000, 10_000, 24
    x = ar1(A, n, 1, rng)[:, 0]
    x[:t_end] += 3.0
    t0 = detect_equilibration(x, n_candidates=k).t0
    # Located to within the refined grid spacing 2n/K².
    assert t_end - 2 * n / k**2 <= t0 <= t_end + 0.05 * n
    assert detect_equilibration(x[t_end:]).t0 < 0.1 * n  # nothing to remove without it


def test_detect_equilibration_with_walkers():
    rng = np.random.default_rng(9)
    n = 10_000
    x = ar1(A, n, 16, rng) + (10.0 * np.exp(-np.arange(n) / 500.0))[:, None]
    t0, tau, ess = detect_equilibration(x)
    # transient < 1 sd from t ≈ 1150
    assert 1150 <= t0 <= n // 2
    assert ess == pytest.approx(16 * (n - t0) / tau)


@pytest.mark.timeout(60)
def test_detect_equilibration_on_a_million_points():
    rng = np.random.default_rng(10)
    n = 1_000_000
    x = ar1(A, n, 1, rng)[:, 0]
    x[:100_000] += 3.0 * np.exp(-np.arange(100_000) / 20_000)
    start = time.perf_counter()
    t0, tau, _ = detect_equilibration(x)
    elapsed = time.perf_counter() - start
    print(f"detect_equilibration on 1e6 points: {elapsed:.2f} s")  # measured in benchmarks/
    assert 20_000 <= t0 <= 200_000
    # Sokal's standard error is ≈ 2 % of τ for ~9e5 kept steps; τ of a = 0.8 (9) is rejected.
    se = sokal_tau_standard_error(TAU_EXACT, n - t0)
    assert abs(tau - TAU_EXACT) / se <= 5
    assert abs(tau - (1 + 0.8) / (1 - 0.8)) / se >= 20


# ------------------------------------------------------------------------- circular
S_ANGLE = 0.8  # stationary sd of the angle about its mean, rad


@pytest.fixture(scope="module")
def angles() -> np.ndarray:
    """Angles fluctuating about π (AR(1), sd 0.8 rad), wrapped into [-π, π): they cross ±π."""
    rng = np.random.default_rng(314)
    return wrap(np.pi + S_ANGLE * ar1(A, 20_000, 128, rng))


def tau_of_unit_vector(a: float, s: float) -> float:
    """Exact τ of z = exp(iθ) for θ = μ + s·(unit AR(1)):
    Re Cov(z_t, z_0) ∝ exp(s² aᵗ) − 1, so ρ(t) = (exp(s² aᵗ) − 1)/(exp(s²) − 1)."""
    t = np.arange(1, 5000)
    return 1 + 2 * np.sum(np.expm1(s * s * a**t) / np.expm1(s * s))


def test_circular_mean_across_the_cut(angles):
    assert np.mean(angles > 0) == pytest.approx(0.5, abs=0.05)  # really straddles ±π
    mu = circular_mean(angles)
    se = circular_standard_error(angles)
    assert abs(wrap(mu - np.pi)) <= 5 * se
    # The naive linear mean is near 0, half a period from the truth.
    assert abs(wrap(np.mean(angles) - np.pi)) > 3.0
    # Degrees give the same answer in degrees.
    assert circular_mean(np.degrees(angles), period=360.0) == pytest.approx(np.degrees(mu))


def test_circular_tau_matches_exact_and_naive_is_wrong(angles):
    exact = tau_of_unit_vector(A, S_ANGLE)  # ≈ 16.1
    per_group = np.array([integrated_autocorrelation_time(g, period=TWO_PI)
                          for g in groups(angles)])
    assert abs(z_score(per_group, exact)) <= 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        naive = np.array([integrated_autocorrelation_time(g) for g in groups(angles)])
    # The linear treatment sees jumps of 2π at the cut and gets τ badly wrong (≈ 10).
    assert abs(z_score(per_group, naive.mean())) > 20
    # Rotation invariance and units.
    x = angles[:, :8]
    tau = integrated_autocorrelation_time(x, period=TWO_PI)
    assert integrated_autocorrelation_time(wrap(x + 1.234), period=TWO_PI) == pytest.approx(tau)
    assert integrated_autocorrelation_time(np.degrees(x), period=360.0) == pytest.approx(tau)
    assert effective_sample_size(x, period=TWO_PI) == pytest.approx(x.size / tau)


def test_circular_standard_error_matches_spread_of_walker_means(angles):
    predicted = circular_standard_error(angles, pooled=False)
    assert predicted.shape == (128,)
    walker_means = circular_mean(angles, pooled=False)
    observed = wrap(walker_means - circular_mean(angles)).std(ddof=1)
    se_ratio = 1 / np.sqrt(2 * (angles.shape[1] - 1))
    assert abs(observed / predicted.mean() - 1) <= 5 * se_ratio
    np.testing.assert_allclose(mcse(angles, pooled=False, period=TWO_PI), predicted)
    # The linear MCSE describes the linear mean (≈ 0 here), a different and wrong quantity:
    # its size is set by the ±π jumps, not by the angle's spread.
    assert abs(mcse(angles, pooled=False).mean() / observed - 1) > 10 * se_ratio


def test_circular_rhat(angles):
    assert rhat(angles[:, :8], period=TWO_PI) < 1.01
    # Walkers stuck on either side of the cut, at ±0.9π: distinct modes.
    rng = np.random.default_rng(5)
    stuck = 0.1 * ar1(A, 4000, 8, rng) + np.r_[np.full(4, 0.9 * np.pi), np.full(4, -0.9 * np.pi)]
    assert rhat(wrap(stuck), period=TWO_PI) > 1.1


# ------------------------------------------------------------------------- warnings and errors
def test_short_chain_warns():
    x = ar1(0.99, 2000, 1, np.random.default_rng(3))[:, 0]  # τ = 199, n < 50 τ
    with pytest.warns(ShortChainWarning, match="fewer than 50"):
        integrated_autocorrelation_time(x)
    with pytest.warns(ShortChainWarning):
        effective_sample_size(x)


def test_long_chain_does_not_warn(chains):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortChainWarning)
        integrated_autocorrelation_time(chains[:, :4])
        mcse(chains[:, :4])


@pytest.mark.parametrize("func", [
    autocorrelation, integrated_autocorrelation_time, effective_sample_size, rhat, mcse,
    detect_equilibration, circular_mean, circular_standard_error,
])
def test_bad_shapes_are_rejected(func):
    with pytest.raises(ValueError, match=r"\(5, 4, 3\)"):
        func(np.zeros((5, 4, 3)))
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*at least 4"):
        func(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"step 7, walker 2"):
        bad = np.random.default_rng(0).standard_normal((20, 3))
        bad[7, 2] = np.nan
        func(bad)
    with pytest.raises(ValueError, match=r"non-finite.*step 4"):
        bad = np.random.default_rng(0).standard_normal(20)
        bad[4] = np.inf
        func(bad)
    with pytest.raises(TypeError, match="complex"):
        func(np.ones(10, dtype=complex))
    with pytest.raises(TypeError, match="numeric"):
        func(np.array(["a", "b", "c", "d", "e"]))


def test_constant_series_are_rejected():
    x = np.random.default_rng(0).standard_normal((100, 3))
    x[:, 1] = 0.1
    with pytest.raises(ValueError, match=r"walker\(s\) \[1\]"):
        integrated_autocorrelation_time(x, pooled=False)
    with pytest.raises(ValueError, match="constant"):
        integrated_autocorrelation_time(np.full(100, 0.1))
    with pytest.raises(ValueError, match="constant"):
        rhat(np.full((100, 2), 3.0))
    assert rhat(np.r_[np.zeros(50), np.ones(50)]) == np.inf  # halves stuck apart


def test_bad_arguments_are_rejected(chains):
    x = chains[:100, :2]
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(x, max_lag=100)
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(x, max_lag=-1)
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(x, max_lag=2.5)
    with pytest.raises(ValueError, match="c must be"):
        integrated_autocorrelation_time(x, c=0)
    with pytest.raises(ValueError, match="period"):
        effective_sample_size(x, period=-1.0)
    with pytest.raises(ValueError, match="period"):
        circular_mean(x, period=float("nan"))
    with pytest.raises(ValueError, match="n_candidates"):
        detect_equilibration(x, n_candidates=2)
