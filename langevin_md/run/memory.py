"""How much memory a run needs, and how much the device has: checked before a folder exists."""

from __future__ import annotations

from .. import checks
from ..memory import available_memory, frames_bytes, gib  # noqa: F401 (available_memory, gib re-exported)

__all__ = ["memory_estimate", "available_memory", "gib"]


def memory_estimate(sampler: dict, n_coordinates: int) -> dict:
    """Bytes a run needs: walker state, buffered frames and checkpoint copies.

    Parameters
    ----------
    sampler : dict
        The resolved [sampler] table.
    n_coordinates : int
        Coordinates per walker (``prod(event_shape)``).

    Returns
    -------
    dict
        ``walkers``, ``recording``, ``checkpoints`` and ``total`` in bytes.
    """
    itemsize = 4 if checks.dtype(sampler.get("dtype")).itemsize == 4 else 8
    n = int(sampler["n_walkers"])
    # Positions, velocities, forces, proposals and scratch: about eight arrays per walker.
    walkers = 8 * n * n_coordinates * itemsize
    # Frames wait on the host until the next checkpoint (at most one checkpoint interval).
    frames = min(int(sampler["n_steps"]), int(sampler.get("checkpoint_every", sampler["n_steps"])))
    frames = max(1, frames // int(sampler["record_every"]))
    recording = frames_bytes(frames, n, n_coordinates, itemsize)
    # A checkpoint holds the state in float64 twice while it is serialised.
    checkpoints = 2 * 4 * n * n_coordinates * 8
    return {"walkers": walkers, "recording": recording, "checkpoints": checkpoints,
            "total": walkers + recording + checkpoints}
