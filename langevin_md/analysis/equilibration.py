"""Automatic burn-in (equilibration) detection by maximising the effective sample size.

Chodera (2016): discarding the first ``t0`` steps removes the initial transient but also
data. Choose the ``t0`` that maximises the effective sample size of what is kept,
``ESS(t0) = N(t0) / τ(t0)``: a transient inflates the variance and the apparent correlation
time of any window that contains it, so ESS rises while transient steps are dropped and falls
once only equilibrated steps are.

References
----------
J. D. Chodera, "A simple method for automated equilibration detection in molecular
simulations", J. Chem. Theory Comput. 12, 1799–1805 (2016).

A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, Springer (1997), pp. 131–192.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import MIN_STEPS, as_steps_by_walkers, check_period, components
from .autocorrelation import sokal_tau, warn_if_short

__all__ = ["Equilibration", "detect_equilibration"]


class Equilibration(NamedTuple):
    """Result of :func:`detect_equilibration`; unpacks as ``t0, tau, ess``.

    Attributes
    ----------
    t0 : int
        Number of initial steps to discard: keep ``series[t0:]``.
    tau : float
        Integrated autocorrelation time of ``series[t0:]``, in steps (pooled over walkers).
    ess : float
        Effective sample size of ``series[t0:]``, ``n_walkers · (n_steps − t0) / tau``.
    """

    t0: int
    tau: float
    ess: float


def detect_equilibration(series, *, n_candidates: int = 24,
                         period: float | None = None) -> Equilibration:
    """Find the burn-in ``t0`` that maximises the effective sample size of ``series[t0:]``.

    Parameters
    ----------
    series : array_like, shape ``(n_steps,)`` or ``(n_steps, n_walkers)``
        Observable along steps (first axis) for each walker (second axis), e.g. the potential
        energy. With several walkers one common ``t0`` is chosen from the pooled τ.
    n_candidates : int, default 24
        Grid size K (≥ 3). ``t0`` is first searched on ``K`` evenly spaced values in
        ``[0, n_steps)``, then on ``K`` values between the neighbours of the best one, so
        ``t0`` is located to within ``2·n_steps/K²`` steps at the cost of about ``1.5 K``
        τ evaluations of O(n log n) each (not one per possible ``t0``).
    period : float, optional
        Period of a circular observable; τ of its unit-circle embedding. None: linear.

    Returns
    -------
    Equilibration
        ``(t0, tau, ess)``: steps to discard, τ of the kept part in steps, and its pooled ESS.

    Warns
    -----
    ShortChainWarning
        When the kept part is shorter than 50 τ.

    Notes
    -----
    τ is Sokal's windowed estimate (c = 5) of the pooled autocorrelation, as in
    :func:`integrated_autocorrelation_time`; Chodera (2016) calls it the statistical
    inefficiency g. Candidate windows keep at least 4 steps.
    """
    arr, _ = as_steps_by_walkers(series)
    period = check_period(period)
    if isinstance(n_candidates, (bool, np.bool_)) or not isinstance(n_candidates, (int, np.integer)) \
            or n_candidates < 3:
        raise ValueError(f"n_candidates must be an integer >= 3, got {n_candidates!r}")
    n_steps, n_walkers = arr.shape
    parts = components(arr, period)
    last_t0 = n_steps - MIN_STEPS
    scores: dict[int, tuple[float, float]] = {}

    def evaluate(t0_values) -> None:
        for t0 in t0_values:
            t0 = int(t0)
            if t0 in scores:
                continue
            tail = [p[t0:] for p in parts]
            try:
                tau = float(sokal_tau(tail, 5.0, pooled=True)[0][0])
            except ValueError:
                # A constant tail (e.g. a walker stuck after t0) carries no information.
                scores[t0] = (np.nan, 0.0)
                continue
            scores[t0] = (tau, n_walkers * (n_steps - t0) / tau)

    def best() -> int:
        # Earliest t0 among equal ESS: keep as much data as possible.
        return max(sorted(scores), key=lambda t: scores[t][1])

    coarse = np.unique(np.minimum(np.arange(n_candidates) * n_steps // n_candidates, last_t0))
    evaluate(coarse)
    i = int(np.searchsorted(coarse, best()))
    lo = coarse[max(i - 1, 0)]
    hi = coarse[min(i + 1, len(coarse) - 1)]
    evaluate(np.unique(np.linspace(lo, hi, n_candidates).round().astype(int)))

    t0 = best()
    tau, ess = scores[t0]
    if ess == 0.0:
        raise ValueError("series is constant along steps: no equilibration can be detected")
    warn_if_short(n_steps - t0, np.array([tau]), stacklevel=2)
    return Equilibration(t0=t0, tau=tau, ess=ess)
