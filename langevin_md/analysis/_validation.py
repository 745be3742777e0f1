"""Shared input checks and the circular embedding for the sampling statistics.

Every statistic in :mod:`langevin_md.analysis` takes a series of shape ``(n_steps,)`` or
``(n_steps, n_walkers)`` (steps first, walkers second). These helpers turn that into a float64
array of shape ``(n_steps, n_walkers)`` and fail early, with the shape in the message, on
anything else.
"""

from __future__ import annotations

import math

import numpy as np

#: Fewest steps any statistic accepts: split R-hat needs two halves of two steps each.
MIN_STEPS = 4


def as_steps_by_walkers(series, name: str = "series") -> tuple[np.ndarray, bool]:
    """Return ``(array of shape (n_steps, n_walkers) float64, input_was_1d)``.

    Raises
    ------
    TypeError
        If ``series`` is not a real numeric array.
    ValueError
        If the shape is not ``(n_steps,)`` / ``(n_steps, n_walkers)``, if there are fewer than
        :data:`MIN_STEPS` steps or no walkers, or if a value is NaN or infinite (the message
        gives the first offending step and walker).
    """
    raw = np.asarray(series)
    if np.iscomplexobj(raw):
        raise TypeError(f"{name} must be real-valued; got complex dtype {raw.dtype}")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a real numeric array of shape (n_steps,) or (n_steps, n_walkers); "
            f"got dtype {raw.dtype}"
        ) from None
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (n_steps,) or (n_steps, n_walkers), steps first; got shape "
            f"{arr.shape}. Reduce positions of shape (n_frames, n_walkers, *event_shape) to one "
            f"observable per walker first (e.g. positions[:, :, 0])."
        )
    was_1d = arr.ndim == 1
    if was_1d:
        arr = arr[:, None]
    n_steps, n_walkers = arr.shape
    if n_walkers == 0:
        raise ValueError(f"{name} has shape {arr.shape}: no walkers (axis 1 is empty)")
    if n_steps < MIN_STEPS:
        shape = (n_steps,) if was_1d else (n_steps, n_walkers)
        raise ValueError(
            f"{name} has shape {shape}: {n_steps} step(s) along axis 0, but at least "
            f"{MIN_STEPS} are needed (steps first: did you pass (n_walkers, n_steps)?)"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)
        step, walker = (int(i) for i in bad[0])
        where = f"step {step}" if was_1d else f"step {step}, walker {walker}"
        raise ValueError(
            f"{name} contains {len(bad)} non-finite value(s) (NaN or inf); the first is "
            f"{arr[step, walker]!r} at {where}"
        )
    return arr, was_1d


def check_positive_number(name: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not finite and positive."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def check_period(period) -> float | None:
    """``None`` (a linear observable) or the period as a positive float."""
    if period is None:
        return None
    return check_positive_number("period", period)


def unit_circle(angles: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The circular embedding ``(cos φ, sin φ)`` with ``φ = 2π · angles / period``."""
    phase = angles * (2.0 * np.pi / period)
    return np.cos(phase), np.sin(phase)


def components(arr: np.ndarray, period: float | None) -> list[np.ndarray]:
    """The real series whose autocovariances are summed: the series itself, or its embedding.

    For an angle the autocovariance of the unit vector ``z = exp(iφ)`` is
    ``Re E[(z_t − μ)(z_0 − μ)*] = C_cos(t) + C_sin(t)``, so the two embedding coordinates are
    treated as one vector observable.
    """
    if period is None:
        return [arr]
    return list(unit_circle(arr, period))
