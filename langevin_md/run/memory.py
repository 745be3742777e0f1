"""How much memory a run needs, and how much the device has: checked before a folder exists."""

from __future__ import annotations

from typing import Optional

from .. import checks

__all__ = ["memory_estimate", "available_memory", "gib"]


def available_memory(device: str) -> Optional[int]:
    """Bytes available on ``device`` (host RAM from /proc/meminfo, or CUDA's free memory)."""
    if str(device).startswith("cuda"):
        import torch  # lazy: only a CUDA device asks torch (this module stays light to import)

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


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
    recording = frames * n * (n_coordinates + 2) * itemsize
    # A checkpoint holds the state in float64 twice while it is serialised.
    checkpoints = 2 * 4 * n * n_coordinates * 8
    return {"walkers": walkers, "recording": recording, "checkpoints": checkpoints,
            "total": walkers + recording + checkpoints}


def gib(nbytes: int) -> str:
    """``nbytes`` as text in GiB, three significant digits."""
    return f"{nbytes / 2 ** 30:.3g} GiB"
