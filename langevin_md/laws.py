"""Exact discrete-time laws of the sampling schemes: the one table that ``langevin-md validate``
and the statistical tests share.

Each function returns the exact answer of a scheme *as discretised* (not its continuous-time
limit) on a target where that answer is known in closed form. The derivations are in
``docs/exact_results.md``; the scheme conventions (ε as the ULA step, c = exp(−γh) in the
O step) are those of ``docs/conventions.md``.

Notation: a harmonic well U = k x²/2 per coordinate has Boltzmann variance σ² = kT/k and
angular frequency ω = sqrt(k/m); h is the timestep, γ the friction, ε the overdamped step size
(length²). Every argument is a positive float unless stated; the functions are pure numpy/
math and accept arrays where the formula is elementwise.

:data:`TABLE` lists the laws by name with the formula in words, for tables and reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "Law",
    "TABLE",
    "ula_contraction",
    "ula_stationary_variance",
    "ula_transient",
    "ula_integrated_autocorrelation_time",
    "preconditioned_ula_contraction",
    "preconditioned_ula_stationary_covariance",
    "baoab_position_variance",
    "baoab_step_end_velocity_variance",
    "obabo_position_variance",
    "obabo_velocity_variance",
    "brownian_mean_squared_displacement",
    "sgld_stationary_variance",
    "annealed_variance_step",
    "mala_acceptance_on_standard_normal",
]


def _positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return arr


def _as_float(arr: np.ndarray):
    return float(arr) if np.ndim(arr) == 0 else arr


# --------------------------------------------------------------------------- ULA
def ula_contraction(step_size, sigma2):
    """a = 1 − ε/σ²: ULA on a harmonic well is the AR(1) map x' = a x + sqrt(2ε) ξ.

    Raises
    ------
    ValueError
        Outside the stable range 0 < ε/σ² < 2 (the chain diverges there).
    """
    r = _positive("step_size", step_size) / _positive("sigma2", sigma2)
    if np.any(r >= 2.0):
        raise ValueError(f"ULA is unstable for step_size/sigma2 >= 2, got {_as_float(r)!r}")
    return _as_float(1.0 - r)


def ula_stationary_variance(step_size, sigma2):
    """Stationary variance of ULA on a harmonic well: σ² / (1 − ε/(2σ²)).

    The continuous-time answer σ² is the known-wrong value tests reject.
    """
    ula_contraction(step_size, sigma2)  # validates the stable range
    s2 = np.asarray(sigma2, dtype=np.float64)
    return _as_float(s2 / (1.0 - np.asarray(step_size, dtype=np.float64) / (2.0 * s2)))


def ula_transient(x0, step_size, sigma2, n_steps: int) -> tuple:
    """Mean and variance after ``n_steps`` ULA steps from the fixed point ``x0``.

    Returns
    -------
    mean, variance : float
        aⁿ x₀ and Var_∞ (1 − a²ⁿ), with a from :func:`ula_contraction`.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    a = ula_contraction(step_size, sigma2)
    var_inf = ula_stationary_variance(step_size, sigma2)
    return a ** n_steps * x0, var_inf * (1.0 - a ** (2 * n_steps))


def ula_integrated_autocorrelation_time(step_size, sigma2):
    """τ = (1 + a)/(1 − a) of x under ULA on a harmonic well (ρ(n) = aⁿ), in steps."""
    a = ula_contraction(step_size, sigma2)
    return (1.0 + a) / (1.0 - a)


# --------------------------------------------------------------------------- preconditioned ULA
def _spd(name: str, value) -> np.ndarray:
    """A symmetric positive-definite matrix; a 1-D array is read as a diagonal."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = np.diag(arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite (d, d) matrix or (d,) diagonal, got shape {arr.shape}")
    if not np.allclose(arr, arr.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite") from None
    return arr


def preconditioned_ula_contraction(step_size, covariance, metric):
    """A = I − ε M Σ⁻¹: preconditioned ULA on N(0, Σ) is x' = A x + sqrt(2ε) M^{1/2} ξ.

    Parameters
    ----------
    step_size : float
        ε.
    covariance : array, shape ``(d, d)`` or ``(d,)``
        Σ of the Gaussian target (Boltzmann covariance, kT included).
    metric : array, shape ``(d, d)`` or ``(d,)``
        The preconditioner M.

    Raises
    ------
    ValueError
        Outside the stable range: the eigenvalues of ε M Σ⁻¹ (real and positive, since it is
        similar to ε M^{1/2} Σ⁻¹ M^{1/2}) must all lie below 2.
    """
    eps = float(_positive("step_size", step_size))
    sigma = _spd("covariance", covariance)
    m = _spd("metric", metric)
    if sigma.shape != m.shape:
        raise ValueError(f"covariance and metric must have the same dimension, got {sigma.shape} and {m.shape}")
    b = eps * m @ np.linalg.inv(sigma)
    lam = np.linalg.eigvals(b).real
    if np.any(lam >= 2.0):
        raise ValueError(f"preconditioned ULA is unstable: the largest eigenvalue of ε M Σ⁻¹ is "
                         f"{lam.max():.6g} >= 2")
    return np.eye(len(m)) - b


def preconditioned_ula_stationary_covariance(step_size, covariance, metric):
    """Stationary covariance C of preconditioned ULA on N(0, Σ): C = A C Aᵀ + 2ε M.

    The discrete Lyapunov equation of the linear map x' = A x + sqrt(2ε) L ξ (M = L Lᵀ,
    A = I − ε M Σ⁻¹), solved by :func:`scipy.linalg.solve_discrete_lyapunov`. At M = I and
    d = 1 it is σ²/(1 − ε/(2σ²)). The target Σ is the known-wrong answer tests reject, and so
    is the C of noise scaled by M instead of M^{1/2} (replace 2εM by 2εM²).

    Returns
    -------
    numpy.ndarray, shape ``(d, d)``
    """
    from scipy.linalg import solve_discrete_lyapunov

    a = preconditioned_ula_contraction(step_size, covariance, metric)
    q = 2.0 * float(step_size) * _spd("metric", metric)
    c = solve_discrete_lyapunov(a, q)
    return 0.5 * (c + c.T)


# --------------------------------------------------------------------------- splittings
def _h_omega(timestep, omega):
    x = _positive("timestep", timestep) * _positive("omega", omega)
    if np.any(x >= 2.0):
        raise ValueError(f"the splitting schemes are unstable for timestep*omega >= 2, got {_as_float(x)!r}")
    return x


def baoab_position_variance(sigma2, timestep, omega):
    """BAOAB's ⟨x²⟩ on a harmonic well: exactly σ² = kT/k for every hω < 2."""
    _h_omega(timestep, omega)
    return _as_float(_positive("sigma2", sigma2))


def baoab_step_end_velocity_variance(kT, mass, timestep, omega):
    """BAOAB's ⟨v²⟩ at step ends on a harmonic well: (kT/m)(1 − h²ω²/4).

    Right after the O step it is kT/m; the final half kick biases it by O(h²).
    """
    hw = _h_omega(timestep, omega)
    return _as_float(_positive("kT", kT) / _positive("mass", mass) * (1.0 - hw * hw / 4.0))


def obabo_position_variance(sigma2, timestep, omega):
    """OBABO's ⟨x²⟩ on a harmonic well: σ² / (1 − h²ω²/4)."""
    hw = _h_omega(timestep, omega)
    return _as_float(_positive("sigma2", sigma2) / (1.0 - hw * hw / 4.0))


def obabo_velocity_variance(kT, mass, timestep, omega):
    """OBABO's ⟨v²⟩ at step ends on a harmonic well: exactly kT/m for every hω < 2."""
    _h_omega(timestep, omega)
    return _as_float(_positive("kT", kT) / _positive("mass", mass))


# --------------------------------------------------------------------------- Brownian
def brownian_mean_squared_displacement(kT, mass, friction, time):
    """⟨Δx²⟩ = 2Dt per coordinate of a free particle, D = kT/(mγ), at any timestep.

    Brownian dynamics with ε = kT h/(mγ) adds sqrt(2ε) ξ per step, so after n steps the
    variance is 2nε = 2D(nh) exactly (Ermak & McCammon 1978).
    """
    D = _positive("kT", kT) / (_positive("mass", mass) * _positive("friction", friction))
    return _as_float(2.0 * D * _positive("time", time))


# --------------------------------------------------------------------------- SGLD
def sgld_stationary_variance(step_size, sigma2, gradient_noise_sd):
    """SGLD (constant ε) on a harmonic well whose ∇log p carries unbiased N(0, s²) noise:
    σ² (1 + ε s²/2) / (1 − ε/(2σ²)).  At s = 0 it is :func:`ula_stationary_variance`."""
    ula_contraction(step_size, sigma2)
    s = np.asarray(gradient_noise_sd, dtype=np.float64)
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"gradient_noise_sd must be non-negative and finite, got {gradient_noise_sd!r}")
    eps = np.asarray(step_size, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    return _as_float(s2 * (1.0 + eps * s * s / 2.0) / (1.0 - eps / (2.0 * s2)))


# --------------------------------------------------------------------------- annealed
def annealed_variance_step(variance, alpha, s0_squared, sigma):
    """One annealed-Langevin step with the exact score of N(0, s₀²) noised by σ.

    The step x' = x + (α/2) s(x, σ) + sqrt(α) z with s = −x/(s₀² + σ²) is linear, so the
    variance maps exactly as v' = c² v + α with c = 1 − α/(2(s₀² + σ²)).
    """
    c = 1.0 - alpha / (2.0 * (s0_squared + sigma * sigma))
    return c * c * variance + alpha


# --------------------------------------------------------------------------- MALA
def mala_acceptance_on_standard_normal(step_size: float) -> float:
    """Mean MALA acceptance E[min(1, α)] on N(0, 1) at step ε, in stationarity.

    MALA is exact at every ε, so x ~ N(0, 1) and the proposal y = (1 − ε)x + sqrt(2ε) ξ; the
    expectation over (x, ξ) is a 2-d integral done by quadrature (about 1e-9 absolute).
    About 0.993, 0.921, 0.784, 0.633 at ε = 0.1, 0.5, 1.0, 1.5.
    """
    from scipy import integrate

    eps = float(_positive("step_size", step_size))

    def integrand(xi, x):
        y = (1.0 - eps) * x + math.sqrt(2.0 * eps) * xi
        # log α = −(y² − x²)/2 + log q(x|y) − log q(y|x); log q(y|x) = −ξ²/2 + const.
        log_alpha = -(y * y - x * x) / 2.0 - (x - (1.0 - eps) * y) ** 2 / (4.0 * eps) + xi * xi / 2.0
        return math.exp(-(x * x + xi * xi) / 2.0) / (2.0 * math.pi) * min(1.0, math.exp(min(log_alpha, 0.0)))

    value, _ = integrate.dblquad(integrand, -9.0, 9.0, -9.0, 9.0, epsabs=1e-9)
    return float(value)


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Law:
    """One entry of :data:`TABLE`: a named exact law and the function that evaluates it."""

    name: str
    formula: str
    evaluate: Callable
    reference: str = ""


TABLE: tuple = (
    Law("ULA stationary variance", "Var = σ²/(1 − ε/(2σ²)), stable iff 0 < ε/σ² < 2",
        ula_stationary_variance),
    Law("ULA transient", "mean aⁿx₀, Var_n = Var_∞(1 − a²ⁿ), a = 1 − ε/σ²", ula_transient),
    Law("ULA autocorrelation", "ρ(n) = aⁿ, τ = (1 + a)/(1 − a)", ula_integrated_autocorrelation_time),
    Law("preconditioned ULA covariance", "C = A C Aᵀ + 2εM, A = I − εMΣ⁻¹ (discrete Lyapunov)",
        preconditioned_ula_stationary_covariance, "Roberts & Stramer 2002"),
    Law("MALA exact", "the target is invariant at any ε; acceptance on N(0,1) by quadrature",
        mala_acceptance_on_standard_normal, "Roberts & Tweedie 1996"),
    Law("BAOAB positions", "⟨x²⟩ = kT/k for every hω < 2", baoab_position_variance,
        "Leimkuhler & Matthews 2013"),
    Law("BAOAB velocities", "⟨v²⟩ = (kT/m)(1 − h²ω²/4) at step ends", baoab_step_end_velocity_variance,
        "Leimkuhler & Matthews 2013"),
    Law("OBABO positions", "⟨x²⟩ = (kT/k)/(1 − h²ω²/4)", obabo_position_variance, "Bussi & Parrinello 2007"),
    Law("OBABO velocities", "⟨v²⟩ = kT/m", obabo_velocity_variance, "Bussi & Parrinello 2007"),
    Law("Brownian diffusion", "⟨Δx²⟩ = 2Dt, D = kT/(mγ), any h", brownian_mean_squared_displacement,
        "Ermak & McCammon 1978"),
    Law("SGLD stationary variance", "Var = σ²(1 + εs²/2)/(1 − ε/(2σ²))", sgld_stationary_variance),
    Law("annealed Langevin variance", "v ← c²v + α, c = 1 − α/(2(s₀² + σ²))", annealed_variance_step),
)
