"""Statistics of circular observables (angles, dihedrals): circular mean and its error.

An angle ``θ`` with period ``P`` is mapped to the unit vector ``z = exp(iφ)``,
``φ = 2πθ/P``. The circular mean is the direction of ``z̄ = ⟨z⟩`` and its length
``R̄ = |z̄|`` (the mean resultant length, 0 ≤ R̄ ≤ 1) measures concentration. Nothing depends
on where the circle is cut, so angles that wrap across ±π (or 0/360°) are handled correctly;
a linear mean of such angles can be off by up to half a period.

References
----------
N. I. Fisher, *Statistical Analysis of Circular Data*, Cambridge University Press (1993),
§4.4 (standard error of the mean direction).

K. V. Mardia, P. E. Jupp, *Directional Statistics*, Wiley (2000), §2.2 and §4.8.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_steps_by_walkers, check_positive_number, unit_circle
from .autocorrelation import sokal_tau, warn_if_short

__all__ = ["circular_mean", "circular_standard_error"]


def _resultant(arr: np.ndarray, period: float, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean direction (angle units, in [-P/2, P/2]) and mean resultant length, per walker or pooled."""
    cos, sin = unit_circle(arr, period)
    axis = None if pooled else 0
    c_bar = np.atleast_1d(cos.mean(axis=axis))
    s_bar = np.atleast_1d(sin.mean(axis=axis))
    mean = np.arctan2(s_bar, c_bar) * (period / (2 * np.pi))
    return mean, np.hypot(c_bar, s_bar)


def circular_mean(angles, period: float = 2 * np.pi, *, pooled: bool = True):
    """Circular mean direction of angles, ``arg⟨exp(2πiθ/P)⟩ · P/(2π)``.

    Parameters
    ----------
    angles : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Angles in the unit set by ``period`` (radians for ``2π``, degrees for ``360``).
    period : float, default 2π
        Period of the angle.
    pooled : bool, default True
        True: one mean over all steps and walkers (a float). False: one per walker, shape
        ``(n_walkers,)``. For 1-D input the two are the same.

    Returns
    -------
    float or numpy.ndarray
        Mean direction in ``[-period/2, period/2]``, in the unit of ``angles``. It is
        undefined (numerically arbitrary) when the mean resultant length is ~0, e.g. for
        uniformly spread angles; :func:`circular_standard_error` is then huge.
    """
    arr, was_1d = as_steps_by_walkers(angles, name="angles")
    period = check_positive_number("period", period)
    pooled = bool(pooled) or was_1d
    mean, _ = _resultant(arr, period, pooled)
    return float(mean[0]) if pooled else mean


def circular_standard_error(angles, period: float = 2 * np.pi, *, pooled: bool = True):
    """Monte Carlo standard error of the circular mean, allowing for autocorrelation.

    To first order the error of the mean direction ``μ̂`` is the mean of the tangential
    component ``s_t = sin(φ_t − μ̂)`` divided by the mean resultant length (delta method;
    Fisher 1993 §4.4): ``SE(μ̂) = sqrt(⟨s²⟩ / ESS_s) / R̄`` radians, where ``ESS_s`` is the
    effective sample size of ``s`` (:func:`effective_sample_size`, Sokal window). For
    independent samples (``ESS_s = N``) this is Fisher's ``sqrt((1 − m̄₂)/(2 N R̄²))`` with
    ``m̄₂ = ⟨cos 2(φ − μ̂)⟩``. The result is converted to the unit of ``angles``.

    Parameters
    ----------
    angles : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Correlated angle samples, steps first, in the unit set by ``period``.
    period : float, default 2π
        Period of the angle.
    pooled : bool, default True
        True: the error of the mean over all walkers (pooled ESS), a float. False: the error
        of each walker's own mean, shape ``(n_walkers,)``.

    Returns
    -------
    float or numpy.ndarray
        Standard error in the unit of ``angles``. Only meaningful when it is small compared
        with the period (a concentrated distribution); ``inf`` when ``R̄ = 0``.

    Warns
    -----
    ShortChainWarning
        When ``n_steps < 50 τ`` of the tangential component.
    """
    arr, was_1d = as_steps_by_walkers(angles, name="angles")
    period = check_positive_number("period", period)
    pooled = bool(pooled) or was_1d
    return circular_standard_error_of_array(arr, period, pooled, stacklevel=3)


def circular_standard_error_of_array(arr: np.ndarray, period: float, pooled: bool, stacklevel: int):
    """:func:`circular_standard_error` on an already-validated ``(n_steps, n_walkers)`` array
    (what :func:`langevin_md.analysis.mcse` uses for circular observables)."""
    mean, r_bar = _resultant(arr, period, pooled)
    # Tangential fluctuation about the (pooled or own) mean direction; its mean is exactly 0.
    tangent = np.sin((arr - mean) * (2 * np.pi / period))
    tau, _ = sokal_tau([tangent], 5.0, pooled)
    warn_if_short(arr.shape[0], tau, stacklevel=stacklevel)
    n_samples = arr.shape[0] * (arr.shape[1] if pooled else 1)
    mean_square = (tangent**2).mean(axis=None if pooled else 0)
    with np.errstate(divide="ignore"):
        se = np.sqrt(mean_square * tau / n_samples) / r_bar * (period / (2 * np.pi))
    return float(se[0]) if pooled else se
