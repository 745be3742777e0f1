"""Autocorrelation functions, integrated autocorrelation times and effective sample sizes.

All functions take a series of shape ``(n_steps,)`` or ``(n_steps, n_walkers)``: steps first,
walkers (independent chains) second. Lags and autocorrelation times are in units of the
series' spacing (recorded frames, i.e. ``record_every`` sampler steps).

Estimator
---------
For each walker the series is centred on that walker's own mean and the biased
(divide-by-``n``) autocovariance ``C(t) = (1/n) Σ_s (x_s − x̄)(x_{s+t} − x̄)`` is computed by
FFT with zero padding (O(n log n)). The normalised autocorrelation is ``ρ(t) = C(t)/C(0)``.
The *pooled* estimate averages the autocovariances over walkers before normalising,
``ρ̄(t) = ⟨C_w(t)⟩_w / ⟨C_w(0)⟩_w``; it assumes the walkers sample the same stationary law
(check :func:`langevin_md.analysis.rhat` first).

The integrated autocorrelation time is ``τ = 1 + 2 Σ_{t=1}^{M} ρ(t)`` with Sokal's automatic
window: the smallest ``M`` with ``M ≥ c · τ(M)`` (Sokal 1997, c ≈ 5 for near-exponential
decay). This is the estimator of emcee's ``integrated_time`` (Foreman-Mackey et al. 2013),
except that emcee averages the *normalised* autocorrelations over walkers; both agree in
expectation when walkers share a stationary law.

Circular observables
--------------------
With ``period=P`` (``2π`` for radians, ``360`` for degrees) an angle ``θ`` is embedded on the
unit circle, ``z = exp(2πiθ/P)``, and the autocorrelation is that of the vector
``(cos φ, sin φ)``: ``ρ(t) = [C_cos(t) + C_sin(t)] / [C_cos(0) + C_sin(0)]``. This needs no cut
on the circle, is unchanged by rotating all angles, and reduces to the linear autocorrelation
of ``θ`` when the fluctuations are small compared with ``P``. A naive linear treatment of
angles that cross the cut (e.g. ±π) sees spurious jumps of one period.

References
----------
A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, Springer (1997), pp. 131–192.

D. Foreman-Mackey, D. W. Hogg, D. Lang, J. Goodman, "emcee: the MCMC hammer", PASP 125, 306
(2013).

A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-normalization, folding,
and localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16,
667–718 (2021) — source of the cap ESS ≤ N·log10(N) used here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import fft

from ._validation import as_steps_by_walkers, check_period, check_positive_number, components

__all__ = [
    "ShortChainWarning",
    "autocorrelation",
    "integrated_autocorrelation_time",
    "effective_sample_size",
]

#: A chain shorter than this many autocorrelation times gives an unreliable τ (emcee's ``tol``).
SHORT_CHAIN_FACTOR = 50.0

# Lags first tried for τ, as a fraction of n_steps: the window M ≈ cτ is almost always far
# below n, and lags ≤ L need an FFT of length n + L only (about half the cost of all lags).
# If the window is not reached the lag range grows by _LAG_GROWTH until it covers all lags.
_FIRST_LAG_FRACTION = 1 / 64
_MIN_FIRST_LAG = 256
_LAG_GROWTH = 8


class ShortChainWarning(UserWarning):
    """The series is shorter than ``SHORT_CHAIN_FACTOR`` (50) autocorrelation times.

    The estimate of τ (and so of ESS and MCSE) is then unreliable and usually too small:
    run longer, or record less often only after checking τ.
    """


# ----------------------------------------------------------------------------- core numerics
def _autocovariance(parts: list[np.ndarray], max_lag: int) -> np.ndarray:
    """Biased autocovariance for lags ``0..max_lag``, summed over the component series.

    parts : arrays of shape (n_steps, n_walkers); returns shape (max_lag + 1, n_walkers).
    """
    n = parts[0].shape[0]
    # Zero padding to n + max_lag makes the circular correlation exact for lags <= max_lag.
    n_fft = fft.next_fast_len(n + max_lag, real=True)
    total = None
    for x in parts:
        centred = x - x.mean(axis=0)
        f = fft.rfft(centred, n=n_fft, axis=0)
        power = f.real**2 + f.imag**2
        del f
        acov = fft.irfft(power, n=n_fft, axis=0)[: max_lag + 1] / n
        total = acov if total is None else total + acov
    return total


def _check_not_constant(parts: list[np.ndarray], pooled: bool) -> None:
    """Raise if a walker's series never changes: C(0) = 0 and ρ is undefined.

    Tested on the raw values, not on C(0): centring a constant series on its floating-point
    mean can leave rounding residue and a tiny spurious variance.
    """
    moving = np.zeros(parts[0].shape[1], dtype=bool)
    for x in parts:
        moving |= x.max(axis=0) > x.min(axis=0)
    if pooled and not moving.any():
        raise ValueError(
            "series is constant along steps in every walker: its autocorrelation is undefined"
        )
    if not pooled and not moving.all():
        stuck = np.flatnonzero(~moving).tolist()
        raise ValueError(
            f"series is constant along steps for walker(s) {stuck[:10]}"
            f"{' ...' if len(stuck) > 10 else ''}: the autocorrelation of a walker that never "
            "moves is undefined (is it stuck?)"
        )


def _normalised(acov: np.ndarray, pooled: bool) -> np.ndarray:
    if pooled:
        acov = acov.mean(axis=1, keepdims=True)
    return acov / acov[0]


def _sokal_window(rho: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """τ(M) at Sokal's window for each column of ``rho`` (shape (n_lags, k)).

    Returns ``(tau, found)``: ``found`` is False where no M ≤ n_lags − 1 satisfies
    ``M ≥ c τ(M)``; there τ is taken at the largest available lag.
    """
    taus = 2.0 * np.cumsum(rho, axis=0) - 1.0  # τ(M) = 1 + 2 Σ_{t=1}^{M} ρ(t)
    lags = np.arange(rho.shape[0])[:, None]
    reached = lags >= c * taus
    found = reached.any(axis=0)
    window = np.where(found, reached.argmax(axis=0), rho.shape[0] - 1)
    return taus[window, np.arange(rho.shape[1])], found


def sokal_tau(parts: list[np.ndarray], c: float, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sokal τ per walker (shape (n_walkers,)) or pooled (shape (1,)), plus ``found`` flags.

    Tries a short lag range first and widens it only when the window is not reached; the
    answer is identical to using all lags because lags <= max_lag are computed exactly.
    """
    n, n_walkers = parts[0].shape
    _check_not_constant(parts, pooled)
    max_lag = min(n - 1, max(_MIN_FIRST_LAG, int(n * _FIRST_LAG_FRACTION)))
    while True:
        rho = _normalised(_autocovariance(parts, max_lag), pooled)
        tau, found = _sokal_window(rho, c)
        if found.all() or max_lag == n - 1:
            break
        max_lag = min(n - 1, max_lag * _LAG_GROWTH)
    # Anticorrelated chains can give τ ≤ 0; cap ESS at N log10(N) as Vehtari et al. (2021) do.
    n_samples = n * (n_walkers if pooled else 1)
    tau = np.maximum(tau, 1.0 / math.log10(max(n_samples, 10)))
    return tau, found


def warn_if_short(n_steps: int, tau: np.ndarray, stacklevel: int) -> None:
    """Warn (:class:`ShortChainWarning`) when ``n_steps`` is under SHORT_CHAIN_FACTOR × max τ.

    Shared by the τ, ESS, MCSE and equilibration estimators; ``stacklevel`` counts from the
    caller so the warning points at user code.
    """
    worst = float(np.max(tau))
    if n_steps < SHORT_CHAIN_FACTOR * worst:
        warnings.warn(
            ShortChainWarning(
                f"the series has {n_steps} steps, fewer than {SHORT_CHAIN_FACTOR:g} x the "
                f"estimated integrated autocorrelation time ({worst:.4g} steps): the estimate "
                "is unreliable (usually too small); run longer"
            ),
            stacklevel=stacklevel + 1,
        )


def _as_result(values: np.ndarray, scalar: bool):
    return float(values[0]) if scalar else values


# ----------------------------------------------------------------------------- public API
def autocorrelation(series, max_lag: int | None = None, *, pooled: bool = False,
                    period: float | None = None) -> np.ndarray:
    """Normalised autocorrelation function ρ(t), with ρ(0) = 1, computed by FFT.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis), any unit.
    max_lag : int, optional
        Largest lag returned, in steps, ``0 <= max_lag <= n_steps - 1``. Default: all lags.
    pooled : bool, default False
        False: one ρ per walker, each from that walker's own autocovariance.
        True: a single ρ from the walker-averaged autocovariance,
        ``ρ̄(t) = ⟨C_w(t)⟩_w / ⟨C_w(0)⟩_w`` (walkers should sample the same law).
    period : float, optional
        Period of a circular observable (``2π`` for radians, ``360`` for degrees). The
        autocorrelation is then that of the unit vector ``(cos φ, sin φ)``,
        ``φ = 2π·series/period`` (see the module docstring). None: a linear observable.

    Returns
    -------
    numpy.ndarray
        Dimensionless. Shape ``(max_lag + 1,)`` for 1-D input or ``pooled=True``;
        ``(max_lag + 1, n_walkers)`` for 2-D input with ``pooled=False``.

    Notes
    -----
    Each walker is centred on its own mean and the biased (divide by ``n_steps``)
    autocovariance is used: it is positive semi-definite and has lower variance than the
    ``1/(n − t)`` one at large lags (Sokal 1997).
    """
    arr, was_1d = as_steps_by_walkers(series)
    period = check_period(period)
    n = arr.shape[0]
    if max_lag is None:
        max_lag = n - 1
    elif isinstance(max_lag, (bool, np.bool_)) or not isinstance(max_lag, (int, np.integer)):
        raise ValueError(f"max_lag must be an integer or None, got {max_lag!r}")
    elif not 0 <= max_lag <= n - 1:
        raise ValueError(
            f"max_lag must satisfy 0 <= max_lag <= n_steps - 1 = {n - 1} for a series of shape "
            f"{np.shape(series)}, got {max_lag}"
        )
    parts = components(arr, period)
    _check_not_constant(parts, pooled)
    rho = _normalised(_autocovariance(parts, int(max_lag)), pooled)
    return rho[:, 0] if (was_1d or pooled) else rho


def integrated_autocorrelation_time(series, c: float = 5.0, *, pooled: bool = True,
                                    period: float | None = None):
    """Integrated autocorrelation time τ = 1 + 2 Σ_{t=1}^{M} ρ(t), Sokal's automatic window.

    The window ``M`` is the smallest lag with ``M ≥ c·τ(M)`` (Sokal 1997). For an AR(1)
    process ``x' = a x + sqrt(1 − a²) ξ``, ``τ = (1 + a)/(1 − a)``. The variance of a mean
    of ``n`` correlated samples is ``τ · Var(x)/n``, so ``n/τ`` samples are effectively
    independent.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis).
    c : float, default 5.0
        Window constant; larger is less biased and noisier. 5 suits near-exponential decay.
    pooled : bool, default True
        True: one τ from the walker-averaged autocovariance (as emcee, which averages the
        normalised autocorrelations instead), returned as a float. False: one τ per walker.
        For 1-D input the two are the same.
    period : float, optional
        Period of a circular observable (``2π`` rad, ``360`` deg): τ of the unit-circle
        embedding, see :func:`autocorrelation`. None: a linear observable.

    Returns
    -------
    float or numpy.ndarray
        τ in steps of the series: a float for 1-D input or ``pooled=True``, otherwise shape
        ``(n_walkers,)``. Floored at ``1/log10(N)`` (N samples in the estimate) so that
        strongly anticorrelated chains give ESS ≤ N·log10(N), as in Vehtari et al. (2021).

    Warns
    -----
    ShortChainWarning
        When ``n_steps < 50 τ`` (for any walker), or the window is never reached.

    Raises
    ------
    ValueError
        Bad shape, fewer than 4 steps, non-finite values, a constant series, or ``c <= 0``.

    Notes
    -----
    Cost is a few real FFTs of length ≈ ``n_steps`` per walker: 10⁷ samples take well
    under a second. Lags are first computed up to ``n_steps/64`` and extended only if the
    window is not reached there, which gives the same answer as using all lags.
    """
    arr, was_1d = as_steps_by_walkers(series)
    period = check_period(period)
    c = check_positive_number("c", c)
    pooled = bool(pooled) or was_1d
    tau, _ = sokal_tau(components(arr, period), c, pooled)
    warn_if_short(arr.shape[0], tau, stacklevel=2)
    return _as_result(tau, pooled)


def effective_sample_size(series, *, pooled: bool = True, period: float | None = None):
    """Effective number of independent samples, ``N / τ``.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis).
    pooled : bool, default True
        True: the ESS of all walkers together, ``n_walkers · n_steps / τ`` with τ from the
        walker-averaged autocovariance (:func:`integrated_autocorrelation_time` with
        ``pooled=True``); a float. This counts walkers as independent chains of one law; if
        they have not mixed (R-hat > 1.01) it overstates the information about the mean.
        False: ``n_steps / τ_w`` for each walker, shape ``(n_walkers,)``.
    period : float, optional
        Period of a circular observable; τ of the unit-circle embedding. None: linear.

    Returns
    -------
    float or numpy.ndarray
        Dimensionless count; a float for 1-D input or ``pooled=True``, else ``(n_walkers,)``.

    Warns
    -----
    ShortChainWarning
        When ``n_steps < 50 τ``.
    """
    arr, was_1d = as_steps_by_walkers(series)
    period = check_period(period)
    pooled = bool(pooled) or was_1d
    tau, _ = sokal_tau(components(arr, period), 5.0, pooled)
    warn_if_short(arr.shape[0], tau, stacklevel=2)
    n_samples = arr.shape[0] * (arr.shape[1] if pooled else 1)
    return _as_result(n_samples / tau, pooled)
