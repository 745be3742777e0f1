"""Convergence diagnostics across walkers: split rank-normalised R-hat and the MCSE of a mean.

References
----------
A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-normalization, folding,
and localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16,
667–718 (2021).

A. Gelman, D. B. Rubin, "Inference from iterative simulation using multiple sequences",
Statistical Science 7, 457–472 (1992).

A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, Springer (1997), pp. 131–192.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ._validation import as_steps_by_walkers, check_period, unit_circle
from .autocorrelation import sokal_tau, warn_if_short
from .circular import circular_standard_error_of_array

__all__ = ["rhat", "mcse"]


def _split_halves(arr: np.ndarray) -> np.ndarray:
    """(n, W) -> (n // 2, 2W): first and second half of every walker; the middle step of an
    odd-length series is dropped (Vehtari et al. 2021)."""
    half = arr.shape[0] // 2
    return np.concatenate([arr[:half], arr[arr.shape[0] - half:]], axis=1)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank (scipy's "average").

    One unstable argsort plus O(n) tie handling; ~1.5x faster than ``scipy.stats.rankdata``
    on 10⁶ values, which matters because R-hat ranks every sample twice.
    """
    n = values.size
    order = np.argsort(values)
    ordered = values[order]
    starts_group = np.empty(n, dtype=bool)
    starts_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    starts = np.flatnonzero(starts_group)
    if starts.size == n:
        ranks_in_order = np.arange(1.0, n + 1.0)
    else:
        ends = np.append(starts[1:], n)
        # a group at sorted positions start..end-1 holds ranks start+1..end
        ranks_in_order = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(n)
    ranks[order] = ranks_in_order
    return ranks


def _rank_normalise(chains: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks: Φ⁻¹((r − 3/8)/(S + 1/4)), ties get average ranks."""
    ranks = _average_ranks(chains.ravel()).reshape(chains.shape)
    return special.ndtri((ranks - 0.375) / (chains.size + 0.25))


def _gelman_rubin(chains: np.ndarray) -> float:
    """Classic potential scale reduction sqrt(var⁺ / W) of chains of shape (n, m).

    ``inf`` when every chain is constant but they differ; NaN when all values are equal.
    """
    n = chains.shape[0]
    # Constancy is tested on the values: a variance of equal floats can be rounding residue.
    if np.all(chains.max(axis=0) == chains.min(axis=0)):
        return np.nan if chains.min() == chains.max() else np.inf
    within = chains.var(axis=0, ddof=1).mean()
    between_over_n = chains.mean(axis=0).var(ddof=1)
    var_plus = (n - 1) / n * within + between_over_n
    return float(np.sqrt(var_plus / within))


def _rank_rhat(arr: np.ndarray) -> float:
    """max(bulk, folded) split rank-normalised R-hat of one real series (n, W); NaN if the
    series is constant. The folded value alone can be undefined (all values equidistant
    from the median) and is then left out."""
    chains = _split_halves(arr)
    bulk = _gelman_rubin(_rank_normalise(chains))
    folded = _gelman_rubin(_rank_normalise(np.abs(chains - np.median(chains))))
    return float(np.fmax(bulk, folded))


def rhat(series, *, period: float | None = None) -> float:
    """Split, rank-normalised R-hat: the larger of the bulk and folded values.

    Each walker is split into halves (so a single walker is also checked for drift); all
    ``2·n_walkers`` half-chains are rank-normalised together, and the Gelman–Rubin ratio
    ``sqrt(var⁺/W)`` is computed on the normal scores ("bulk", sensitive to different
    locations) and on the normal scores of ``|x − median|`` ("folded", sensitive to different
    scales). Rank normalisation makes it valid for heavy tails. This is the R-hat of
    Vehtari et al. (2021), as in Stan and ``arviz.rhat(method="rank")``.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis).
    period : float, optional
        Period of a circular observable (``2π`` rad, ``360`` deg). R-hat is then computed for
        each coordinate of the embedding ``(cos φ, sin φ)``, ``φ = 2π·series/period``, and the
        larger is returned: no cut on the circle is needed, and two walkers in different
        places on the circle always differ in at least one coordinate. None: linear.

    Returns
    -------
    float
        Dimensionless, ≥ about 1. Values above 1.01 indicate that the walkers (or the halves
        of a walker) have not converged to one distribution. ``inf`` when the half-chains are
        constant at different values.

    Raises
    ------
    ValueError
        Bad shape, fewer than 4 steps, non-finite values, or a constant series.
    """
    arr, _ = as_steps_by_walkers(series)
    period = check_period(period)
    parts = [arr] if period is None else unit_circle(arr, period)
    # For an angle one embedding coordinate can be constant (angles fixed at 0 have
    # sin ≡ 0); the other still carries the information, so NaNs are skipped.
    value = np.fmax.reduce([_rank_rhat(part) for part in parts])
    if np.isnan(value):
        raise ValueError("series is constant: R-hat is undefined")
    return float(value)


def mcse(series, *, pooled: bool = True, period: float | None = None):
    """Monte Carlo standard error of the mean, ``sqrt(Var(x) / ESS)``.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis).
    pooled : bool, default True
        True: the error of the mean over all steps and walkers, with ``Var`` the sample
        variance of all values (it includes any spread between walkers' means) and ESS the
        pooled ``n_walkers · n_steps / τ``; a float. False: the error of each walker's own
        mean, ``sqrt(Var_w / (n_steps / τ_w))``, shape ``(n_walkers,)``.
    period : float, optional
        Period of a circular observable: the standard error of the *circular* mean, see
        :func:`circular_standard_error` (its ESS is that of the tangential component, which
        controls the error of the mean direction). None: linear.

    Returns
    -------
    float or numpy.ndarray
        Standard error in the unit of ``series``.

    Warns
    -----
    ShortChainWarning
        When ``n_steps < 50 τ``.

    Notes
    -----
    τ is Sokal's windowed estimate (:func:`integrated_autocorrelation_time`, c = 5).
    """
    arr, was_1d = as_steps_by_walkers(series)
    period = check_period(period)
    pooled = bool(pooled) or was_1d
    if period is not None:
        return circular_standard_error_of_array(arr, period, pooled, stacklevel=3)
    tau, _ = sokal_tau([arr], 5.0, pooled)
    warn_if_short(arr.shape[0], tau, stacklevel=2)
    if pooled:
        return float(np.sqrt(arr.var(ddof=1) * tau[0] / arr.size))
    return np.sqrt(arr.var(axis=0, ddof=1) * tau / arr.shape[0])
