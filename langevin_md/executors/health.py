"""End-of-run checks that a sampler moved: warnings a user sees without writing a report.

A sampler that never moves can still reproduce a target's statistics when its walkers started
at exact draws, so "the numbers look right" is no evidence; these checks look at the motion
itself.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Mean Metropolis acceptance below this is all but stuck (the step is far too large).
STUCK_ACCEPTANCE = 0.05


def stuck_messages(result) -> list[str]:
    """Plain-language problems with a finished run's motion (empty when it moved).

    Parameters
    ----------
    result : SampleResult
        ``positions`` ``(n_frames, n_walkers, *event_shape)``; ``acceptance_rate`` ``(n_walkers,)``
        for Metropolis-adjusted schemes.
    """
    out = []
    acc = result.acceptance_rate
    if acc is not None and len(acc) and float(np.mean(acc)) < STUCK_ACCEPTANCE:
        out.append(f"mean acceptance {float(np.mean(acc)):.3g} is below {STUCK_ACCEPTANCE}: the "
                   "walkers barely move, so their samples are (nearly) their starting points; "
                   "use a smaller step size (or target_accept= for adaptive MALA)")
    pos = result.positions
    if pos.shape[0] >= 2:
        flat = pos.reshape(pos.shape[0], pos.shape[1], -1)
        frozen = np.all(flat == flat[:1], axis=(0, 2))
        if frozen.any():
            out.append(f"{int(frozen.sum())} of {pos.shape[1]} walkers never moved over "
                       f"{pos.shape[0]} recorded frames (e.g. walker {int(np.flatnonzero(frozen)[0])}): "
                       "their samples are their starting points")
    return out


def warn_if_stuck(result) -> None:
    """Issue one ``RuntimeWarning`` per problem :func:`stuck_messages` finds."""
    for message in stuck_messages(result):
        warnings.warn(message, RuntimeWarning, stacklevel=3)


__all__ = ["STUCK_ACCEPTANCE", "stuck_messages", "warn_if_stuck"]
